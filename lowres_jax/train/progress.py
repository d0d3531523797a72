"""Progress: a live bar (loss, steps/s, ETA) on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time

import tqdm


class Progress:

  def __init__(self, total_steps: int, start_step: int, description: str, enabled: bool = True):
    self._interactive = enabled and sys.stderr.isatty()
    self._enabled = enabled
    self._total = total_steps
    self._description = description
    self._start_time = time.perf_counter()
    self._start_step = start_step
    self._bar = (tqdm.tqdm(total=total_steps, initial=start_step, desc=description,
                           unit="step", dynamic_ncols=True) if self._interactive else None)

  def update(self, step: int, loss: float) -> None:
    if not self._enabled:
      return
    if self._bar is not None:
      self._bar.set_postfix_str(f"train/loss={loss:.4f}")
      self._bar.update(step - self._bar.n)
      return
    elapsed = time.perf_counter() - self._start_time
    rate = (step - self._start_step) / elapsed if elapsed > 0 else float("nan")
    eta = (self._total - step) / rate if rate > 0 else float("nan")
    print(f"{self._description} step {step}/{self._total} train/loss={loss:.4f} "
          f"steps/s={rate:.1f} eta_s={eta:.0f}", flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
