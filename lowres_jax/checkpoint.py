"""Orbax checkpoints for one run's TrainState, with fallback past a corrupt latest step."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import sys
from typing import Any

import orbax.checkpoint as ocp

from lowres_jax.user_error import UserError
from lowres_jax import failpoints, storage

log = logging.getLogger(__name__)


class NoUsableCheckpointError(UserError, RuntimeError):
  """Checkpoints exist but none could be restored."""


def make_manager(workdir: str, keep: int = 2) -> ocp.CheckpointManager:
  """A manager for ``workdir/checkpoints`` keeping the newest ``keep`` steps.

  Keeping at least two is what makes the fallback below possible. Saves are synchronous:
  a k-shot state is small, and a finished save must be on disk before the run moves on,
  otherwise a kill right after "saved" could still lose it.
  """
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max(keep, 2), create=True, enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
  """Saves ``state`` at ``step``, replacing a checkpoint already there.

  A step can exist already when a group of runs was killed while saving its members one by
  one: the group then resumes from the last step all members have and passes this one again.
  A save killed half-way leaves orbax's temporary folder, which would make the next save of
  that step fail; the process owns the workdir (storage.owner), so it is removed first. A
  failed write (a full disk) raises WorkdirError and leaves the earlier checkpoints usable.
  """
  directory = str(manager.directory)
  for leftover in glob.glob(os.path.join(directory, f"{step}.orbax-checkpoint-tmp*")):
    shutil.rmtree(leftover, ignore_errors=True)
  failpoints.hit("checkpoint.save")
  _ignore_closed_loop_callbacks()  # Before the write: its threads fail while save() waits.
  try:
    with _quiet_orbax_threads():
      if step in manager.all_steps():
        manager.delete(step)
      manager.save(step, args=ocp.args.StandardSave(state), force=True)
      manager.wait_until_finished()
  except Exception as error:  # Orbax reports a full disk as ValueError("RESOURCE_EXHAUSTED...").
    if not _is_storage_error(error):
      raise
    for partial in glob.glob(os.path.join(directory, f"{step}.orbax-checkpoint-tmp*")):
      shutil.rmtree(partial, ignore_errors=True)
    earlier = sorted(s for s in manager.all_steps() if s != step)
    kept = (f"the checkpoint of step {earlier[-1]} is intact" if earlier
            else "no earlier checkpoint exists")
    failure = storage.WorkdirError(
        f"could not save the checkpoint of step {step} in {directory}: "
        f"{_storage_cause(error)}; {kept}. Free space (or fix the cause) and rerun the same "
        "command to resume.")
    # Tensorstore's threads still hold callbacks into orbax's closed event loop, and the
    # interpreter's shutdown runs them (a traceback each): the command line exits at once.
    failure.exit_at_once = True
    raise failure from None


def _ignore_closed_loop_callbacks() -> None:
  """When a write fails, tensorstore's threads still complete the futures of orbax's
  per-save event loop, which orbax has closed; each prints 'RuntimeError: Event loop is
  closed' through sys.excepthook, dozens of tracebacks around the one line a user reads.
  That one error is dropped; every other one is printed as before."""
  previous = sys.excepthook
  if getattr(previous, "ignores_closed_loops", False):
    return

  def hook(kind, value, traceback):
    if kind is RuntimeError and str(value) == "Event loop is closed":
      return
    previous(kind, value, traceback)
  hook.ignores_closed_loops = True
  sys.excepthook = hook


def _is_storage_error(error: Exception) -> bool:
  """An OSError, or orbax/tensorstore's wrapping of one (its text carries the OS error)."""
  text = str(error)
  return isinstance(error, OSError) or any(
      marker in text for marker in ("os_error_code", "RESOURCE_EXHAUSTED", "No space left",
                                    "PERMISSION_DENIED", "Read-only file system"))


# Tensorstore's status codes and the OS texts inside its messages, as the cause a user acts
# on: its full message is a long path into orbax's temporary folders.
_STORAGE_CAUSES = (("No space left", "the disk is full (No space left on device)"),
                   ("RESOURCE_EXHAUSTED", "the disk is full (No space left on device)"),
                   ("Read-only file system", "the file system is read-only"),
                   ("PERMISSION_DENIED", "permission denied"))


def _storage_cause(error: Exception) -> str:
  if isinstance(error, OSError):
    return storage.describe_os_error(error)
  text = str(error)
  for marker, cause in _STORAGE_CAUSES:
    if marker in text:
      return cause
  return text.strip().splitlines()[0][:300]


class _OrbaxThreadErrors(logging.Filter):
  """Drops orbax's background-thread reports of a failed write (an ERROR record with its
  traceback per thread): the same error reaches save(), which reports it in one line."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not (record.levelno >= logging.ERROR and "orbax" in record.pathname
                and "raised an exception" in record.getMessage())


@contextlib.contextmanager
def _quiet_orbax_threads():
  absl_logger, dropped = logging.getLogger("absl"), _OrbaxThreadErrors()
  absl_logger.addFilter(dropped)
  try:
    yield
  finally:
    absl_logger.removeFilter(dropped)


def restore_latest(manager: ocp.CheckpointManager, template: Any,
                   at_most: int | None = None) -> tuple[int, Any] | None:
  """Restores the newest checkpoint that loads, warning about each one that does not.

  Returns ``(step, state)``, or None when there is no checkpoint. ``at_most`` skips newer steps
  (a sweep resuming several runs together restores them all at a step they share).
  """
  manager.reload()
  steps = sorted(manager.all_steps(), reverse=True)
  if at_most is not None:
    steps = [s for s in steps if s <= at_most]
  if not steps:
    return None
  errors = []
  for step in steps:
    try:
      return step, manager.restore(step, args=ocp.args.StandardRestore(template))
    except Exception as error:  # Orbax raises many types for truncated or missing files.
      message = f"checkpoint at step {step} in {manager.directory} is unreadable ({error!r:.300})"
      log.warning("%s; falling back to an earlier one", message)
      errors.append(message)
  raise NoUsableCheckpointError(
      "no checkpoint could be restored: " + "; ".join(errors)
      + ". Delete the checkpoints folder to start the run afresh.")


def load_variables(workdir: str) -> dict[str, Any]:
  """{'params': ..., other model collections} of a workdir's newest readable checkpoint."""
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{workdir} has no checkpoints/ folder to initialise from")
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False))
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      state = manager.restore(step, args=ocp.args.StandardRestore())
      return {"params": state["params"], **(state.get("model_state") or {})}
    except Exception as error:
      log.warning("checkpoint %d in %s is unreadable (%r); trying an earlier one",
                  step, directory, error)
  raise NoUsableCheckpointError(f"no readable checkpoint in {directory}")
