"""Where the default CNN's step time goes: each 3x3 convolution timed alone, forward and backward,
in XLA:CPU and in PyTorch (oneDNN), with the convolution strategies tried in JAX to close the gap.

Imported by ``launch/bench_cpu.py``, which puts the table in ``results/bench_cpu.md``. The
strategies below are kept here, not in ``lowres_jax/models``, because none beat XLA's own
convolution on this CPU; the table re-measures them on every run, so the claim stays checked.
Each is asserted equal to ``lax.conv_general_dilated`` (outputs and both gradients) before it
is timed.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

Conv = Callable[[jax.Array, jax.Array], jax.Array]


def xla_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """What flax's ``nn.Conv`` lowers to: NHWC input, HWIO kernel, stride 1, 'SAME'."""
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def im2col_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The nine shifted copies concatenated along channels, then one matmul with K = 9 C."""
  height, width = x.shape[1:3]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  patches = jnp.concatenate([padded[:, i:i + height, j:j + width] for i in range(3)
                             for j in range(3)], axis=-1)
  return patches @ kernel.reshape(-1, kernel.shape[-1])


def tap_sum_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Nine matmuls (one per kernel tap, K = C) on shifted views, summed: no patch buffer."""
  height, width = x.shape[1:3]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(padded[:, i:i + height, j:j + width] @ kernel[i, j] for i in range(3)
             for j in range(3))


# Winograd F(2x2, 3x3) (Lavin & Gray 2016): 16 multiplies per 2x2 output tile instead of 36.
_WINOGRAD_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)


def _tiles_along(x: jax.Array, axis: int, count: int) -> list[jax.Array]:
  """The four rows (or columns) of every 4-wide input tile at stride 2, transformed by B^T."""
  d0, d1, d2, d3 = (jax.lax.slice_in_dim(x, i, i + 2 * count - 1, 2, axis) for i in range(4))
  return [d0 - d2, d1 + d2, d2 - d1, d1 - d3]


def _outputs_along(m: Sequence[jax.Array]) -> list[jax.Array]:
  """A^T: four transformed products to the two outputs of a tile along one axis."""
  return [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]


def winograd_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Input tiles transformed with adds, 16 batched matmuls (K = C), outputs transformed back."""
  n, height, width, channels = x.shape
  tiles_h, tiles_w = -(-height // 2), -(-width // 2)
  padded = jnp.pad(x, ((0, 0), (1, 2 * tiles_h + 1 - height), (1, 2 * tiles_w + 1 - width),
                       (0, 0)))
  inputs = [t for row in _tiles_along(padded, 1, tiles_h) for t in _tiles_along(row, 2, tiles_w)]
  inputs = jnp.stack(inputs).reshape(16, n * tiles_h * tiles_w, channels)
  filters = jnp.einsum("ai,ijcd,bj->abcd", _WINOGRAD_G, kernel, _WINOGRAD_G).reshape(
      16, channels, -1)
  products = jax.lax.dot_general(inputs, filters, (((2,), (1,)), ((0,), (0,))))
  products = products.reshape(4, 4, n, tiles_h, tiles_w, -1)
  columns = _outputs_along([products[:, j] for j in range(4)])
  quads = [[_outputs_along([column[i] for i in range(4)])[a] for column in columns]
           for a in range(2)]
  out = jnp.stack([jnp.stack(quads[a], axis=3) for a in range(2)], axis=2)
  return out.reshape(n, 2 * tiles_h, 2 * tiles_w, -1)[:, :height, :width]


STRATEGIES: dict[str, Conv] = {"im2col": im2col_conv, "per-tap matmuls": tap_sum_conv,
                               "Winograd F(2x2,3x3)": winograd_conv}


def _seconds_per_call(call: Callable[[], object], budget: float) -> float:
  call()
  start, calls = time.perf_counter(), 0
  while time.perf_counter() - start < budget or calls < 3:
    call()
    calls += 1
  return (time.perf_counter() - start) / calls


def _jax_timer(fn: Callable, *args) -> Callable[[], object]:
  jitted = jax.jit(fn)
  return lambda: jax.block_until_ready(jitted(*args))


def _check_equal(conv: Conv, x, kernel, cotangent) -> None:
  """Outputs and both gradients of ``conv`` equal XLA's convolution (float32 rounding)."""
  want = jax.vjp(xla_conv, x, kernel)
  got = jax.vjp(conv, x, kernel)
  for a, b in zip((want[0], *want[1](cotangent)), (got[0], *got[1](cotangent))):
    scale = float(jnp.max(jnp.abs(a)))
    if float(jnp.max(jnp.abs(a - b))) > 1e-4 * scale:
      raise AssertionError(f"{conv.__name__} differs from lax.conv_general_dilated")


def layer_shapes(model, image_shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
  """(size, in channels, out channels) of each 3x3 conv of models/cnn.py's SmallCNN."""
  size, channels, shapes = image_shape[0], image_shape[2], []
  for block in range(model.depth):
    features = model.width * 2**block
    for _ in ("a", "b"):
      shapes.append((size, channels, features))
      channels = features
    if size >= 2:
      size //= 2
  return shapes


def measure(shapes: Sequence[tuple[int, int, int]], batch: int, budget: float,
            strategies: dict[str, Conv] | None = None, with_torch: bool = True) -> list[dict]:
  """Milliseconds per call for each layer: forward, and forward + backward (both gradients,
  the input's too, except in the first layer where training never asks for it)."""
  rows, rng = [], np.random.default_rng(0)
  for index, (size, c_in, c_out) in enumerate(shapes):
    x = jnp.asarray(rng.standard_normal((batch, size, size, c_in)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, c_in, c_out)) * 0.1, jnp.float32)
    cotangent = jnp.ones((batch, size, size, c_out), jnp.float32)
    first = index == 0
    row = {"shape": (size, c_in, c_out), "mflop": 2 * batch * size * size * 9 * c_in * c_out
           / 1e6, "ms": {}}

    def train(conv: Conv):
      if first:  # The kernel's gradient only.
        return lambda x, k, g: jax.vjp(lambda k: conv(x, k), kernel)[1](g)
      return lambda x, k, g: jax.vjp(conv, x, k)[1](g)

    for name, conv in {"XLA conv": xla_conv, **(STRATEGIES if strategies is None
                                                else strategies)}.items():
      if conv is not xla_conv:
        _check_equal(conv, x, kernel, cotangent)
      row["ms"][(name, "forward")] = 1e3 * _seconds_per_call(_jax_timer(conv, x, kernel), budget)
      row["ms"][(name, "forward+backward")] = 1e3 * _seconds_per_call(
          _jax_timer(train(conv), x, kernel, cotangent), budget)
    if not with_torch:
      rows.append(row)
      continue
    tx = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).requires_grad_(not first)
    tk = torch.from_numpy(np.asarray(kernel).transpose(3, 2, 0, 1).copy()).requires_grad_()
    tg = torch.from_numpy(np.asarray(cotangent).transpose(0, 3, 1, 2).copy())
    wrt = (tk,) if first else (tx, tk)
    with torch.no_grad():
      row["ms"][("PyTorch", "forward")] = 1e3 * _seconds_per_call(
          lambda: F.conv2d(tx, tk, padding=1), budget)
    row["ms"][("PyTorch", "forward+backward")] = 1e3 * _seconds_per_call(
        lambda: torch.autograd.grad(F.conv2d(tx, tk, padding=1), wrt, tg), budget)
    rows.append(row)
  return rows


def table(rows: list[dict], batch: int) -> list[str]:
  """Markdown: ms per layer and in total, and GFLOP/s of each forward."""
  ways = list(rows[0]["ms"])
  lines = ["| layer (size, in -> out) | MFLOP fwd | " + " | ".join(
      f"{name} {part} ms" for name, part in ways) + " |", "|---|---|" + "---|" * len(ways)]
  for row in rows:
    size, c_in, c_out = row["shape"]
    lines.append(f"| {size}x{size}, {c_in} -> {c_out} | {row['mflop']:.0f} | " + " | ".join(
        f"{row['ms'][way]:.2f}" for way in ways) + " |")
  totals = {way: sum(row["ms"][way] for row in rows) for way in ways}
  mflop = sum(row["mflop"] for row in rows)
  lines.append(f"| **all convs, batch {batch}** | {mflop:.0f} | " + " | ".join(
      f"**{totals[way]:.2f}**" for way in ways) + " |")
  lines.append("| forward GFLOP/s | | " + " | ".join(
      f"{mflop / totals[way]:.0f}" if part == "forward" else "" for (_, part), way
      in zip(ways, ways)) + " |")
  return lines


def pool_shapes(model, image_shape: tuple[int, int, int]) -> list[tuple[int, int]]:
  """(size, channels) at each 2x2 max-pool of SmallCNN."""
  return [(size, c_out) for (size, _, c_out) in layer_shapes(model, image_shape)[1::2]
          if size >= 2]


def measure_pools(shapes: Sequence[tuple[int, int]], batch: int, budget: float) -> list[dict]:
  """Forward + backward ms of the 2x2 max-pool as ``nn.max_pool`` (``reduce_window``) and as
  models/cnn.py's reshape-and-max, asserted equal (values and gradient) first."""
  import flax.linen as nn
  from lowres_jax.models.cnn import max_pool_2x2
  ways = {"nn.max_pool (reduce_window)": lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)),
          "reshape and max (models/cnn.py)": max_pool_2x2}
  rows, rng = [], np.random.default_rng(0)
  for size, channels in shapes:
    x = jnp.asarray(rng.standard_normal((batch, size, size, channels)), jnp.float32)
    cotangent = jnp.ones((batch, size // 2, size // 2, channels), jnp.float32)
    grads = [jax.vjp(pool, x)[1](cotangent)[0] for pool in ways.values()]
    if not bool(jnp.array_equal(grads[0], grads[1])):
      raise AssertionError("the two max-pools' gradients differ")
    rows.append({"shape": (size, channels), "ms": {
        name: 1e3 * _seconds_per_call(_jax_timer(
            lambda x, g, pool=pool: jax.vjp(pool, x)[1](g), x, cotangent), budget)
        for name, pool in ways.items()}})
  return rows


def pool_table(rows: list[dict], batch: int) -> list[str]:
  ways = list(rows[0]["ms"])
  lines = ["| max-pool input (size, channels), batch " + str(batch) + " | " + " | ".join(
      f"{way} forward+backward ms" for way in ways) + " |", "|---|" + "---|" * len(ways)]
  for row in rows:
    size, channels = row["shape"]
    lines.append(f"| {size}x{size}, {channels} | " + " | ".join(
        f"{row['ms'][way]:.2f}" for way in ways) + " |")
  return lines


# XLA:CPU options of the pinned jaxlib that pick another convolution library or change codegen;
# each is measured in its own process (XLA_FLAGS is read once, at backend start).
XLA_FLAG_SETTINGS = (
    "",
    "--xla_cpu_experimental_xnn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION",
    "--xla_cpu_experimental_onednn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION",
    "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
    "--xla_cpu_use_thunk_runtime=false",
    "--xla_cpu_enable_fast_math=true",
)


def xla_conv_totals(shapes, batch: int, budget: float) -> dict[str, float]:
  """Milliseconds of all layers' XLA convolutions, forward and forward + backward."""
  rows = measure(shapes, batch, budget, strategies={}, with_torch=False)
  return {part: sum(row["ms"][("XLA conv", part)] for row in rows)
          for part in ("forward", "forward+backward")}


def flag_sweep(shapes, batch: int, budget: float) -> dict[str, dict[str, float]]:
  """``xla_conv_totals`` under each of XLA_FLAG_SETTINGS, each in a fresh process."""
  import subprocess
  import sys
  results = {}
  for flags in XLA_FLAG_SETTINGS:
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, os.path.abspath(__file__), json.dumps(
        {"shapes": shapes, "batch": batch, "budget": budget})], env=env, capture_output=True,
        text=True, check=False)
    lines = done.stdout.strip().splitlines()
    results[flags] = (json.loads(lines[-1]) if done.returncode == 0 and lines else
                      {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]})
  return results


def flag_table(results: dict[str, dict], batch: int) -> list[str]:
  lines = [f"| XLA_FLAGS | all convs forward ms (batch {batch}) | forward+backward ms |",
           "|---|---|---|"]
  for flags, found in results.items():
    if "error" in found:
      lines.append(f"| `{flags or '(none)'}` | failed: {found['error'][:120]} | |")
    else:
      lines.append(f"| `{flags or '(none)'}` | {found['forward']:.2f} | "
                   f"{found['forward+backward']:.2f} |")
  return lines


if __name__ == "__main__":  # One flag setting's totals, as JSON (see flag_sweep).
  import sys
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  request = json.loads(sys.argv[1])
  torch.set_num_threads(os.cpu_count())
  print(json.dumps(xla_conv_totals([tuple(s) for s in request["shapes"]], request["batch"],
                                   request["budget"])))
