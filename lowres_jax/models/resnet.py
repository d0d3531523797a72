"""A BiT-style pre-activation ResNet: GroupNorm and weight-standardised convolutions.

BiT's choice (Kolesnikov et al., 2020) suits low-resource transfer: no batch statistics, so
tiny fine-tuning batches behave like large ones and the model is a pure function of its params.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lowres_jax.models.inputs import prepare_images


class StdConv(nn.Conv):
  """Convolution whose kernel is standardised to zero mean, unit variance per output channel."""

  def param(self, name, *args, **kwargs):
    value = super().param(name, *args, **kwargs)
    if name == "kernel":
      mean = jnp.mean(value, axis=(0, 1, 2), keepdims=True)
      var = jnp.var(value, axis=(0, 1, 2), keepdims=True)
      value = (value - mean) / jnp.sqrt(var + 1e-10)
    return value


class PreActBlock(nn.Module):
  features: int
  strides: int = 1
  groups: int = 8

  @nn.compact
  def __call__(self, x):
    groups = min(self.groups, self.features)
    out = nn.relu(nn.GroupNorm(num_groups=min(groups, x.shape[-1]), name="norm1")(x))
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.features:
      shortcut = StdConv(self.features, (1, 1), (self.strides,) * 2, use_bias=False,
                         name="proj")(out)
    out = StdConv(self.features, (3, 3), (self.strides,) * 2, use_bias=False, name="conv1")(out)
    out = nn.relu(nn.GroupNorm(num_groups=groups, name="norm2")(out))
    out = StdConv(self.features, (3, 3), use_bias=False, name="conv2")(out)
    return out + shortcut


class ResNet(nn.Module):
  """``stage_sizes`` blocks per stage; stage i has ``width * 2**i`` channels."""
  num_classes: int
  width: int = 16
  stage_sizes: Sequence[int] = (1, 1, 1)
  groups: int = 8

  image_size: int = 0    # Resize inputs to this size; 0 keeps the data's size.
  channels: int = 0      # 0 takes the data's channels as they come.
  pixel_mean: float = 127.5  # Pixels to [-1, 1].
  pixel_std: float = 127.5

  @nn.compact
  def __call__(self, batch: Mapping[str, jax.Array], train: bool = False):
    del train
    images = prepare_images(batch["image"], size=self.image_size, channels=self.channels,
                            mean=self.pixel_mean, std=self.pixel_std)
    x = StdConv(self.width, (3, 3), use_bias=False, name="stem")(images)
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        strides = 2 if stage > 0 and block == 0 and min(x.shape[1:3]) >= 2 else 1
        x = PreActBlock(self.width * 2**stage, strides, self.groups,
                        name=f"stage{stage}_block{block}")(x)
    x = nn.relu(nn.GroupNorm(num_groups=min(self.groups, x.shape[-1]), name="norm_final")(x))
    pre_logits = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, name="head", kernel_init=nn.initializers.zeros)(pre_logits)
    return logits, {"pre_logits": pre_logits}


def layer_key(path: str) -> tuple[int, ...] | None:
  """Where a parameter sits from the bottom, for layer-wise learning-rate decay (sortable;
  None: the final norm and the head). The stem, then blocks in (stage, block) order."""
  match = re.match(r"stage(\d+)_block(\d+)/", path)
  if match:
    return (1, int(match.group(1)), int(match.group(2)))
  return (0,) if path.startswith("stem/") else None
