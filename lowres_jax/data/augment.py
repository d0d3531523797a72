"""Image augmentation that runs inside the jitted train step.

The k-shot training set lives on the accelerator; augmenting there keeps the host out of the
hot loop. Ops are looked up by name from ``config.train.augment`` and applied in order.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

AugmentOp = Callable[[jax.Array, jax.Array, int], jax.Array]  # (key, images NHWC, pad) -> images


def random_pad_crop(key: jax.Array, images: jax.Array, pad: int) -> jax.Array:
  """Zero-pads each image by ``pad`` pixels and crops back to size at a random offset."""
  if pad <= 0:
    return images
  _, height, width, _ = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(key, (images.shape[0], 2), 0, 2 * pad + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0),
                                 (height, width, image.shape[-1]))

  return jax.vmap(crop)(padded, offsets)


def random_flip(key: jax.Array, images: jax.Array, pad: int) -> jax.Array:
  """Mirrors each image left-right with probability 1/2."""
  del pad
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1, :], images)


AUGMENTATIONS: dict[str, AugmentOp] = {
    "crop": random_pad_crop,
    "flip": random_flip,
}


def check_names(names: Sequence[str]) -> None:
  unknown = [n for n in names if n not in AUGMENTATIONS]
  if unknown:
    raise ValueError(f"unknown augmentation(s) {unknown}; known: {sorted(AUGMENTATIONS)}")


def augment(key: jax.Array, images: jax.Array, names: Sequence[str], pad: int) -> jax.Array:
  """Applies the named ops in order, each with its own key."""
  for name, op_key in zip(names, jax.random.split(key, max(len(names), 1))):
    images = AUGMENTATIONS[name](op_key, images, pad)
  return images
