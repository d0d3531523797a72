"""A small convolutional network for 8x8 to 32x32 images."""

from __future__ import annotations

import re
from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from lowres_jax.models.inputs import prepare_images


def _windows(x: jax.Array) -> jax.Array:
  """(n, h, w, c) -> (n, h/2, w/2, c, 4): each 2x2 window's values in row-major order."""
  n, height, width, channels = x.shape
  windows = x.reshape(n, height // 2, 2, width // 2, 2, channels)
  return windows.transpose(0, 1, 3, 5, 2, 4).reshape(n, height // 2, width // 2, channels, 4)


@jax.custom_vjp
def _pool_even(x: jax.Array) -> jax.Array:
  n, height, width, channels = x.shape
  return x.reshape(n, height // 2, 2, width // 2, 2, channels).max(axis=(2, 4))


def _pool_forward(x):
  return _pool_even(x), x


def _pool_backward(x, cotangent):
  """All of a window's gradient to its first maximum in row-major order, as
  select-and-scatter's ``>=`` gives it (a plain ``max`` would split a tie)."""
  windows = _windows(x)
  first_max = jax.nn.one_hot(jnp.argmax(windows, axis=-1), 4, dtype=x.dtype)
  n, height, width, channels = x.shape
  grad = (first_max * cotangent[..., None]).reshape(n, height // 2, width // 2, channels, 2, 2)
  return (grad.transpose(0, 1, 4, 2, 5, 3).reshape(x.shape),)


_pool_even.defvjp(_pool_forward, _pool_backward)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """``nn.max_pool(x, (2, 2), strides=(2, 2))`` (odd edges dropped, as 'VALID' does): the same
  values and the same gradient, ties included (8x8 digits tie often), computed as a reshape
  and a max forward and a compare-and-select backward. XLA:CPU fuses both, where
  ``reduce_window``'s gradient (select-and-scatter) cost about 16 of the CNN's ~60 ms per
  step (results/bench_cpu.md)."""
  height, width = x.shape[1:3]
  return _pool_even(x[:, :height - height % 2, :width - width % 2])


class SmallCNN(nn.Module):
  """``depth`` conv blocks (conv-relu, conv-relu, 2x2 max-pool) doubling width, a hidden
  layer on the flattened features (``pre_logits``), then the head."""
  num_classes: int
  width: int = 32
  depth: int = 2
  hidden: int = 128
  batch_norm: bool = False  # BatchNorm after each conv (statistics in ``batch_stats``).
  image_size: int = 0    # Resize inputs to this size; 0 keeps the data's size.
  channels: int = 0      # 0 takes the data's channels as they come.
  pixel_mean: float = 127.5  # Pixels to [-1, 1].
  pixel_std: float = 127.5

  @nn.compact
  def __call__(self, batch: Mapping[str, jax.Array], train: bool = False):
    x = prepare_images(batch["image"], size=self.image_size, channels=self.channels,
                       mean=self.pixel_mean, std=self.pixel_std)
    for block in range(self.depth):
      features = self.width * 2**block
      for part in ("a", "b"):
        x = nn.Conv(features, (3, 3), name=f"conv{block}_{part}")(x)
        if self.batch_norm:
          x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                           name=f"bn{block}_{part}")(x)
        x = nn.relu(x)
      if min(x.shape[1:3]) >= 2:
        x = max_pool_2x2(x)
    x = x.reshape(x.shape[0], -1)  # Flatten: at 8x8 to 28x28, where a stroke is matters.
    pre_logits = nn.relu(nn.Dense(self.hidden, name="pre_logits")(x))
    logits = nn.Dense(self.num_classes, name="head")(pre_logits)
    return logits, {"pre_logits": pre_logits}


def layer_key(path: str) -> tuple[int, ...] | None:
  """Where a parameter sits from the bottom, for layer-wise learning-rate decay (sortable;
  None: the hidden layer and the head). Each conv is a layer: ``conv{block}_{a|b}``."""
  match = re.match(r"(?:bn|conv)(\d+)_([ab])/", path)
  return (int(match.group(1)), match.group(2) == "b") if match else None
