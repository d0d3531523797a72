"""Ahead-of-time compilation, cached by static signature and argument shapes.

A sweep runs many groups; those whose static plan and shapes agree reuse one executable. The
cache also counts compilations and their seconds, which ``sweep.json`` and ``summary.json``
report, so "compile once per shape" is a measured claim.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Hashable

import jax


def shapes_key(args: Any) -> Hashable:
  leaves, treedef = jax.tree.flatten(args)
  return treedef, tuple((tuple(x.shape), str(x.dtype)) for x in leaves)


class CompileCache:
  """Compiled executables keyed by (name, static key, argument shapes)."""

  def __init__(self):
    self._executables: dict[Hashable, Any] = {}
    self.compiles = 0
    self.compile_seconds = 0.0

  def get(self, name: str, static_key: Hashable, jitted: Callable, *args: Any) -> Any:
    key = (name, static_key, shapes_key(args))
    if key not in self._executables:
      start = time.perf_counter()
      self._executables[key] = jitted.lower(*args).compile()
      self.compile_seconds += time.perf_counter() - start
      self.compiles += 1
    return self._executables[key]
