"""Turns the errors a user can cause into one clear line instead of a traceback."""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable


def user_error_types() -> tuple[type[BaseException], ...]:
  """Exceptions whose message already says what is wrong and how to fix it."""
  from lowres_jax.user_error import UserError
  return (UserError,)


def run_with_clear_errors(entry: Callable[[], None]) -> None:
  """Runs ``entry``: a user error exits 2 with one line; a run stopped by SIGINT/SIGTERM
  exits 128 + the signal's number with one line saying what was saved."""
  from lowres_jax.train import interrupt
  try:
    entry()
  except user_error_types() as error:
    print(f"lowres_jax: error: {error}", file=sys.stderr)
    if getattr(error, "exit_at_once", False):  # Whatever the error left running is broken.
      logging.shutdown()
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(2)
    sys.exit(2)
  except interrupt.Interrupted as stop:
    print(f"lowres_jax: {stop}", file=sys.stderr)
    sys.exit(stop.exit_code)
