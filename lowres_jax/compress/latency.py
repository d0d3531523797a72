"""Measured inference latency: the median of repeated timed calls, compilation excluded."""

from __future__ import annotations

import statistics
import time
from typing import Sequence

import flax.linen as nn
import jax
import numpy as np


def batch_of(inputs: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
  """``size`` examples of ``inputs``, repeating them when there are fewer."""
  num = len(next(iter(inputs.values())))
  return {k: np.take(v, np.arange(size) % num, axis=0) for k, v in inputs.items()}


def median_latency_ms(model: nn.Module, variables, inputs: dict[str, np.ndarray],
                      batch_size: int, repeats: int = 20, min_seconds: float = 0.5) -> float:
  """Milliseconds per forward pass (inference mode) of one batch of ``batch_size``: the
  median over at least ``repeats`` timed calls and ``min_seconds``, after a compiled warm-up
  call. Inputs are placed on the device before timing."""
  batch = jax.device_put(batch_of(inputs, batch_size))
  variables = jax.device_put(variables)
  compiled = jax.jit(lambda v, b: model.apply(v, b, train=False)[0]).lower(
      variables, batch).compile()
  jax.block_until_ready(compiled(variables, batch))  # Warm-up: first-call allocations.
  times: list[float] = []
  start = time.perf_counter()
  while len(times) < repeats or time.perf_counter() - start < min_seconds:
    begin = time.perf_counter()
    jax.block_until_ready(compiled(variables, batch))
    times.append(time.perf_counter() - begin)
  return 1000.0 * statistics.median(times)


def latencies_ms(model: nn.Module, variables, inputs: dict[str, np.ndarray],
                 batch_sizes: Sequence[int] = (1, 256)) -> dict[str, float]:
  return {f"latency_b{size}_ms": median_latency_ms(model, variables, inputs, size)
          for size in batch_sizes}
