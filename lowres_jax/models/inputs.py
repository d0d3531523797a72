"""Turning a batch's raw inputs into what a model's first layer expects, inside jit.

Models own their input handling: the k-shot set stays on device as raw uint8
pixels and each model, configured from its checkpoint's conventions, converts a batch itself.
So the train step and evaluation know nothing about images, and a text batch passes the same
step untouched.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

Stat = float | Sequence[float]


def prepare_images(images: jax.Array, *, size: int = 0, channels: int = 0,
                   mean: Stat = 127.5, std: Stat = 127.5,
                   dtype: jnp.dtype = jnp.float32) -> jax.Array:
  """NHWC pixels (uint8 or float on the 0-255 scale) to normalised floats.

  ``size``: resize (bilinear, antialiased when shrinking) to ``size`` x ``size``; 0 keeps the
  size. ``channels``: 3 repeats a grey channel to RGB, 1 keeps grey; 0 keeps what comes.
  ``mean`` and ``std`` are in pixel units (0-255), per channel or one for all: the defaults
  map pixels to [-1, 1]; EfficientNet-Lite's conversions use 127 and 128, ImageNet-normalised
  checkpoints (0.485, 0.456, 0.406) x 255 and (0.229, 0.224, 0.225) x 255.
  """
  x = images.astype(jnp.float32)
  if channels and x.shape[-1] != channels:
    if x.shape[-1] == 1 and channels == 3:
      x = jnp.repeat(x, 3, axis=-1)
    else:
      raise ValueError(f"images have {x.shape[-1]} channels; the model takes {channels} "
                       "(only grey to RGB is converted)")
  if size and x.shape[1:3] != (size, size):
    x = jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), method="bilinear",
                         antialias=True)
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return ((x - mean) / std).astype(dtype)
