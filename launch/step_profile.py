"""Where a jitted step's time goes on XLA:CPU: the JAX profiler's trace of a few steps, its
compiled-op events summed by kind.

XLA:CPU names each executed op after its fusion kind and a counter (``ynn_fusion.17``,
``wrapped_broadcast.3``); dropping the counter groups them: ``ynn_fusion`` is a YNNPACK library
call (the convolutions and matmuls), ``wrapped_*`` a single op, the rest XLA's own loop fusions
of elementwise work. Used by ``launch/bench_cpu.py``.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import tempfile
from typing import Callable

import jax

# Trace events that are not compiled ops: executor bookkeeping and Python frames.
_NOT_OPS = ("ThunkExecutor", "SlinkyThreadPool", "$")


def op_milliseconds(step: Callable[[], None], finish: Callable[[], None],
                    steps: int) -> dict[str, float]:
  """Milliseconds per step spent in each kind of compiled op, over ``steps`` traced steps."""
  with tempfile.TemporaryDirectory(prefix="step_profile_") as directory:
    jax.profiler.start_trace(directory, create_perfetto_trace=True)
    try:
      for _ in range(steps):
        step()
      finish()
    finally:
      jax.profiler.stop_trace()
    paths = glob.glob(os.path.join(directory, "**", "*.trace.json.gz"), recursive=True)
    if not paths:
      raise RuntimeError(f"the JAX profiler wrote no perfetto trace under {directory}")
    with gzip.open(paths[0]) as f:
      trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  totals: collections.Counter = collections.Counter()
  for event in events:
    name = event.get("name", "")
    if event.get("ph") == "X" and not name.startswith(_NOT_OPS):
      totals[name.split(".")[0]] += event.get("dur", 0) / 1e3  # Microseconds to ms.
  return {kind: ms / steps for kind, ms in totals.most_common()}


def table(profiles: dict[str, dict[str, float]], top: int = 8) -> list[str]:
  """Markdown: per model, the ``top`` op kinds by time, the rest summed, and the total."""
  lines = ["| model | op kind | ms per step | share |", "|---|---|---|---|"]
  for model, kinds in profiles.items():
    total = sum(kinds.values())
    shown = list(kinds.items())[:top]
    rest = total - sum(ms for _, ms in shown)
    for kind, ms in shown + [("(all other kinds)", rest)]:
      lines.append(f"| {model} | `{kind}` | {ms:.2f} | {ms / total:.0%} |")
    lines.append(f"| {model} | **all compiled ops** | **{total:.2f}** | 100% |")
  return lines
