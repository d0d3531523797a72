"""Depthwise convolution that is fast on the CPU too.

XLA:CPU runs a grouped convolution with one channel per group (``feature_group_count`` =
channels) an order of magnitude slower than the same arithmetic written as a sum of k*k shifted,
per-channel-scaled slices, which it fuses into elementwise loops; the gradients behave the same.
Measured fwd+bwd, batch 32, 2 CPU cores: 3x3 on 16x16x96 63 ms vs 6.7 ms; 3x3 stride 2 on
16x16x96 43 vs 1.6 ms; 5x5 on 8x8x240 73 vs 21 ms; 5x5 stride 2 on 4x4x672 87 vs 3.0 ms, equal
outputs. Accelerators have good grouped-conv kernels, so ``impl='auto'`` keeps XLA's conv there.
The kernel has ``nn.Conv``'s layout and name, so checkpoints load either way.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("auto", "shift", "xla")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """TensorFlow/XLA "SAME": output ceil(size / stride), the larger half of the padding after."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def depthwise_shift_add(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """NHWC ``x`` convolved per channel with ``kernel`` (k, k, 1, C), "SAME" padding."""
  k_h, k_w = kernel.shape[:2]
  pads = (same_padding(x.shape[1], k_h, stride), same_padding(x.shape[2], k_w, stride))
  out_h, out_w = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
  padded = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  total = None
  for i in range(k_h):
    for j in range(k_w):
      window = jax.lax.slice(
          padded, (0, i, j, 0),
          (padded.shape[0], i + (out_h - 1) * stride + 1, j + (out_w - 1) * stride + 1,
           padded.shape[3]), (1, stride, stride, 1))
      term = window * kernel[i, j, 0]
      total = term if total is None else total + term
  return total


class DepthwiseConv(nn.Module):
  """A bias-free depthwise conv with "SAME" padding; the parameter is ``kernel`` (k, k, 1, C)."""
  kernel_size: int
  stride: int = 1
  impl: str = "auto"
  kernel_init: Any = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.impl not in IMPLEMENTATIONS:
      raise ValueError(f"depthwise impl {self.impl!r} is unknown; known: {IMPLEMENTATIONS}")
    channels = x.shape[-1]
    kernel = self.param("kernel", self.kernel_init,
                        (self.kernel_size, self.kernel_size, 1, channels), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    impl = self.impl
    if impl == "auto":
      impl = "shift" if jax.default_backend() == "cpu" else "xla"
    if impl == "shift":
      return depthwise_shift_add(x, kernel, self.stride)
    return jax.lax.conv_general_dilated(
        x, kernel, (self.stride, self.stride), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels)
