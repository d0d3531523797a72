"""The traced hyperparameters: one table of which config keys enter the step as values.

Which keys exist is static (it shapes the compiled program); their values are traced, so runs
that differ only in them share one compiled step and can train stacked under ``jax.vmap``.
Grouping (``RunPlan.static_part``) and the step's ``hparams`` dict derive from this table. A
method that reads a new hyperparameter adds one line here (and the key to the configs).
"""

from __future__ import annotations

import numpy as np

# name in the step's ``hparams`` dict -> dotted config key it is read from.
TRACED: dict[str, str] = {
    "lr": "optim.lr",
    "weight_decay": "optim.weight_decay",
    "label_smoothing": "train.label_smoothing",
}


def config_keys() -> tuple[str, ...]:
  return tuple(TRACED.values())


def as_arrays(values: dict[str, float]) -> dict[str, np.ndarray]:
  """Host float32 scalars, the form the step receives (stacked over runs by the trainer)."""
  return {name: np.float32(values[name]) for name in TRACED}


def placeholder() -> dict[str, np.ndarray]:
  """Any values will do where only the structure matters (initialising optimizer state)."""
  return {name: np.float32(0.0) for name in TRACED}
