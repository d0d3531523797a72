"""The training state: a plain pytree, checkpointed whole."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import numpy as np


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes. ``rng`` is a raw uint32 key so orbax can save it."""
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def stack(states: list[Any]) -> Any:
  """Stacks per-run pytrees along a new leading axis: the axis a group of runs is vmapped over."""
  return jax.tree.map(lambda *leaves: np.stack([np.asarray(l) for l in leaves]), *states)


def unstack(tree: Any, index: int) -> Any:
  return jax.tree.map(lambda leaf: leaf[index], tree)
