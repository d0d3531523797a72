"""Augmentation that runs inside the jitted train step, on batch dicts.

The k-shot training set lives on the accelerator; augmenting there keeps the host out of the
hot loop. Ops are looked up by name from ``config.train.augment`` and applied in order. Each op
is ``(key, batch, hparams) -> batch``: it may change any entry (mixup will change labels too)
and read traced hyperparameters (a mixup alpha swept without recompiling). Static settings that
shape the program (the crop padding) are bound when the op is built.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

Batch = dict[str, jax.Array]
AugmentOp = Callable[[jax.Array, Batch, Mapping[str, jax.Array]], Batch]


@dataclasses.dataclass(frozen=True)
class AugmentSettings:
  """The static part of augmentation: changing it changes the compiled step."""
  names: tuple[str, ...] = ()
  crop_pad: int = 0


def _images(batch: Batch, op: str) -> jax.Array:
  if "image" not in batch:
    raise ValueError(f"augmentation {op!r} needs images; this batch has {sorted(batch)}")
  return batch["image"]


def random_pad_crop(key: jax.Array, batch: Batch, hparams, *, pad: int) -> Batch:
  """Zero-pads each image by ``pad`` pixels and crops back to size at a random offset."""
  del hparams
  images = _images(batch, "crop")
  if pad <= 0:
    return batch
  _, height, width, channels = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(key, (images.shape[0], 2), 0, 2 * pad + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

  return {**batch, "image": jax.vmap(crop)(padded, offsets)}


def random_flip(key: jax.Array, batch: Batch, hparams) -> Batch:
  """Mirrors each image left-right with probability 1/2."""
  del hparams
  images = _images(batch, "flip")
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
  return {**batch, "image": jnp.where(flip, images[:, :, ::-1, :], images)}


# name -> builder from the static settings to the op.
AUGMENTATIONS: dict[str, Callable[[AugmentSettings], AugmentOp]] = {
    "crop": lambda s: (lambda key, batch, hp: random_pad_crop(key, batch, hp, pad=s.crop_pad)),
    "flip": lambda s: random_flip,
}


def check_names(names: Sequence[str]) -> None:
  unknown = [n for n in names if n not in AUGMENTATIONS]
  if unknown:
    raise ValueError(f"unknown augmentation(s) {unknown}; known: {sorted(AUGMENTATIONS)}")


def augment(key: jax.Array, batch: Batch, hparams: Mapping[str, jax.Array],
            settings: AugmentSettings) -> Batch:
  """Applies the named ops in order, each with its own key."""
  for name, op_key in zip(settings.names, jax.random.split(key, max(len(settings.names), 1))):
    batch = AUGMENTATIONS[name](settings)(op_key, batch, hparams)
  return batch
