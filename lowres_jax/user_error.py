"""The one base class of every error a user can cause and fix (a bad config key, a missing
dataset, a damaged checkpoint, a NaN loss): the command line prints its message as one line
and exits 2 instead of showing a traceback. A new such error derives from ``UserError``, so
none can be forgotten in a hand-kept list."""


class UserError(Exception):
  """An error whose message says what is wrong and how to fix it."""


class MissingInputError(UserError, FileNotFoundError):
  """A file or directory a command reads does not exist (or holds nothing to read yet)."""


class DatasetMissingError(MissingInputError):
  """A dataset's raw files are not on this machine; the message names the install command."""
