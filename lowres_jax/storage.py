"""Files a run trusts on restart: written whole or not at all, owned by one process.

- ``replacing``/``write_text``/``write_json``: write to a unique temporary name beside the
  target, then ``os.replace`` it (atomic on POSIX): a kill leaves the old file or the new one,
  never half of one that a restart would read as finished.
- ``owner``: an exclusive, non-blocking ``flock`` on a lock file in a directory for as long as
  a process works there. The kernel drops it when the process dies, however it dies, so a
  stale lock never blocks a restart; flock is honoured across hosts on NFSv4 and Lustre.
- ``WorkdirError``: what a user sees when a directory cannot be created, written, or is busy.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import uuid
from typing import IO, Any, Callable, Iterator

from lowres_jax.user_error import UserError
from lowres_jax import failpoints


class WorkdirError(UserError):
  """A workdir (or a file in it) cannot be used; the message says why and what to do."""


def describe_os_error(error: OSError) -> str:
  return error.strerror or str(error)


def ensure_directory(directory: str, flag: str = "--workdir") -> None:
  """Creates ``directory`` (and parents), or says in one line why it cannot."""
  blocking = _existing_file_on_the_way(directory)
  if blocking is not None:
    raise WorkdirError(f"{flag}={directory} cannot be a directory: {blocking} is a file. "
                       f"Move that file away or choose another {flag}.")
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as error:
    raise WorkdirError(f"cannot create {flag}={directory}: {describe_os_error(error)}. "
                       f"Choose a writable directory for {flag}.") from None
  if not os.access(directory, os.W_OK | os.X_OK):
    raise WorkdirError(f"{flag}={directory} is not writable by this user. Choose a writable "
                       f"directory for {flag}.")


def _existing_file_on_the_way(directory: str) -> str | None:
  """The path (``directory`` or one of its parents) that exists and is not a directory."""
  path = os.path.abspath(directory)
  while path and path != os.path.dirname(path):
    if os.path.exists(path):
      return None if os.path.isdir(path) else path
    path = os.path.dirname(path)
  return None


@contextlib.contextmanager
def replacing(path: str, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
  """Yields a file to write; on success it atomically becomes ``path``."""
  tmp = f"{path}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
  try:
    with open(tmp, mode.replace("w", "x"), **open_kwargs) as handle:
      yield handle
    failpoints.hit("file.replace")
    os.replace(tmp, path)
  except OSError as error:
    _remove_quietly(tmp)
    raise WorkdirError(f"could not write {path}: {describe_os_error(error)}. The previous "
                       "version, if any, is unchanged; fix the cause (a full disk?) and rerun "
                       "the same command.") from None
  except BaseException:
    _remove_quietly(tmp)
    raise


def _remove_quietly(path: str) -> None:
  with contextlib.suppress(OSError):
    os.remove(path)


def write_text(path: str, text: str) -> None:
  with replacing(path) as handle:
    handle.write(text)


def write_json(path: str, record: Any, default: Callable | None = None, **kwargs: Any) -> None:
  with replacing(path) as handle:
    json.dump(record, handle, default=default, **kwargs)


def read_json(path: str, what: str) -> Any:
  """``path`` parsed, or a WorkdirError naming the damaged file (``what`` says whose it is)."""
  try:
    with open(path) as handle:
      return json.load(handle)
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise WorkdirError(f"{path} ({what}) is not valid JSON ({error}): it was edited by hand or "
                       "damaged. Restore it, or delete the workdir to start that run over.") from None
  except IsADirectoryError:
    raise WorkdirError(f"{path} ({what}) is a directory, not a file: something else wrote "
                       "there. Move it away, or delete the workdir to start that run over.") from None
  except OSError as error:
    raise WorkdirError(f"cannot read {path} ({what}): {describe_os_error(error)}. Fix its "
                       "permissions, or use another --workdir.") from None


@contextlib.contextmanager
def owner(directory: str, name: str = "owner", enabled: bool = True,
          flag: str = "--workdir", wait: bool = False) -> Iterator[None]:
  """Holds ``directory/.{name}.lock`` exclusively, or raises WorkdirError naming the holder.

  With ``wait`` it blocks until the holder is done instead (parallel sweep shards that need
  the same cached source model: one pretrains it, the others wait and reuse it).
  """
  if not enabled:
    yield
    return
  ensure_directory(directory, flag)
  path = os.path.join(directory, f".{name}.lock")
  handle = open(path, "a+")
  try:
    try:
      fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.seek(0)
      holder = handle.read().strip() or "another process"
      raise WorkdirError(
          f"{directory} is in use by {holder}. Two processes in one workdir would mix their "
          "checkpoints and logs: wait for that one to finish (or stop it; a killed holder "
          f"releases the lock at once), or use another {flag}.") from None
    handle.seek(0)
    handle.truncate()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    handle.write(f"PID {os.getpid()} on host {socket.gethostname()} (since {started})\n")
    handle.flush()
    yield
  finally:
    handle.close()  # Closing releases the flock.
