"""Errors of the weights layer: each message names the file and says what to do next."""

from __future__ import annotations

from lowres_jax.user_error import UserError


class WeightsError(UserError, ValueError):
  """A checkpoint can't be found or read (missing file, unknown format, missing package)."""


class UnsafeCheckpointError(WeightsError):
  """A pickled checkpoint asks for something other than tensors, so it was not loaded.

  Unpickling can run arbitrary code; a state dict only ever needs tensors, dicts and a few
  torch rebuild helpers, so anything else is refused before it can run.
  """
