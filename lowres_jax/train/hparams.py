"""The traced hyperparameters: one table of which config keys enter the step as values.

Which keys exist is static (it shapes the compiled program); their values are traced, so runs
that differ only in them share one compiled step and can train stacked under ``jax.vmap``.
Grouping (``RunPlan.static_part``) and the step's ``hparams`` dict derive from this table. The
adaptation methods' keys come from their own declarations (train/adapt/); every other feature
that reads a new hyperparameter adds one line here (and the key to the configs).
"""

from __future__ import annotations

import numpy as np

from lowres_jax.train import adapt
from lowres_jax.train.adapt.base import GROUP_SCALES

# name in the step's ``hparams`` dict -> dotted config key it is read from.
TRACED: dict[str, str] = {
    "lr": "optim.lr",
    "weight_decay": "optim.weight_decay",
    "label_smoothing": "train.label_smoothing",
    # Adaptation methods (train/adapt/): each key under its own name in the step's hparams;
    # a config without ``adapt`` gets the defaults.
    **{key: f"adapt.{key}" for key in adapt.traced_defaults()},
    # Distillation (compress/distill.py).
    "distill_kl": "distill.kl",                    # Weight of T^2 KL(teacher || student).
    "distill_temperature": "distill.temperature",  # T.
    "distill_hard": "distill.hard",                # Weight of the teacher's pseudo-labels.
    "distill_labelled": "distill.labelled",        # Weight of the labelled cross-entropy.
    "distill_mixup": "distill.mixup",              # Mixup alpha of the unlabelled pool inputs.
    # Augmentation strengths (data/augment.py, data/text_augment.py).
    "aug_magnitude": "augment.magnitude",    # Fraction of each image op's maximum strength.
    "aug_crop_scale": "augment.crop_scale",  # Smallest area fraction of resized_crop.
    "aug_mixup": "augment.mixup",            # Mixup's Beta alpha.
    "aug_cutmix": "augment.cutmix",          # CutMix's Beta alpha.
    "aug_delete": "augment.delete",          # Text: per-token rates of the EDA-style ops.
    "aug_swap": "augment.swap",
    "aug_insert": "augment.insert",
    "aug_mask": "augment.mask",
    # Class-imbalance losses (train/losses.py).
    "cb_beta": "train.cb_beta",          # Class-balanced loss: effective-number beta.
    "la_tau": "train.la_tau",            # Logit-adjusted loss: tau of the log-prior offset.
    "focal_gamma": "train.focal_gamma",  # Focal loss: gamma.
}
# Values of the keys above that a config may leave out.
DEFAULTS: dict[str, float] = {
    **{f"adapt.{key}": value for key, value in adapt.traced_defaults().items()},
    "distill.kl": 1.0, "distill.temperature": 1.0, "distill.hard": 0.0, "distill.labelled": 1.0,
    "distill.mixup": 0.0,
    "augment.magnitude": 0.5, "augment.crop_scale": 0.35, "augment.mixup": 0.2,
    "augment.cutmix": 1.0, "augment.delete": 0.1, "augment.swap": 0.1, "augment.insert": 0.1,
    "augment.mask": 0.1,
    "train.cb_beta": 0.999, "train.la_tau": 1.0, "train.focal_gamma": 2.0,
}



def group_defaults(group: str) -> dict[str, float]:
  """The traced keys of one config group at their defaults: {'magnitude': 0.5, ...}."""
  prefix = group + "."
  return {key[len(prefix):]: value for key, value in DEFAULTS.items() if key.startswith(prefix)}


def config_keys() -> tuple[str, ...]:
  return tuple(TRACED.values())


def as_arrays(values: dict[str, float]) -> dict[str, np.ndarray]:
  """Host float32 arrays, the form the step receives (stacked over runs by the trainer)."""
  arrays = {name: np.float32(values[name]) for name in TRACED}
  if GROUP_SCALES in values:
    arrays[GROUP_SCALES] = np.asarray(values[GROUP_SCALES], np.float32)
  return arrays


def placeholder() -> dict[str, np.ndarray]:
  """Any values will do where only the structure matters (initialising optimizer state)."""
  return {name: np.float32(0.0) for name in TRACED}
