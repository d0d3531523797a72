"""Ctrl-C (SIGINT) and a scheduler's preemption (SIGTERM) stop a run cleanly.

While ``watching()``, the first signal only records a request; the trainer checks it after
each chunk of steps, saves a checkpoint at that step and raises ``Interrupted``, which the
command line reports in one line, exiting with 128 + the signal number. A rerun resumes from
that checkpoint to the result an uninterrupted run gives. A second signal acts as if nothing
were installed (Ctrl-C twice stops at once, without the checkpoint).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_requested: list[int] = []  # Signals received while watching (the first one counts).
_depth = 0


class Interrupted(Exception):
  """A run (or sweep) stopped on a signal; ``exit_code`` is 128 + its number."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.exit_code = 128 + signum


def requested() -> int | None:
  return _requested[0] if _requested else None


def raise_if_requested(where: str) -> None:
  """Raises Interrupted if a signal came; ``where`` says what was saved and how to resume."""
  signum = requested()
  if signum is not None:
    raise Interrupted(f"stopped by {signal.Signals(signum).name}: {where}", signum)


@contextlib.contextmanager
def watching() -> Iterator[None]:
  """Installs the handlers (main thread only; nested uses share one installation)."""
  global _depth
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = {}
  if _depth == 0:
    _requested.clear()
    for signum in SIGNALS:
      previous[signum] = signal.signal(signum, _record)
  _depth += 1
  try:
    yield
  finally:
    _depth -= 1
    for signum, handler in previous.items():
      signal.signal(signum, handler)


def _record(signum, frame) -> None:
  del frame
  _requested.append(signum)
  signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT
                else signal.SIG_DFL)  # A second one stops at once.
