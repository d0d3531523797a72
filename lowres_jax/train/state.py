"""The training state: a plain pytree, checkpointed whole."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import numpy as np


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes. ``rng`` is a raw uint32 key so orbax can save it.

  ``model_state`` holds the model's variable collections other than params (BatchNorm's
  ``batch_stats``; later quantisation statistics), updated by the forward pass in training and
  read in evaluation. ``extra`` is the slot for a method's own state (EMA weights, pruning
  masks); both are ``{}`` when unused.
  """
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  rng: jax.Array
  extra: Any

  def variables(self) -> dict[str, Any]:
    """What ``model.apply`` takes: params plus the other collections."""
    return {"params": self.params, **self.model_state}


def split_variables(variables: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
  """{'params': p, 'batch_stats': s, ...} -> (p, {'batch_stats': s, ...})."""
  rest = {k: v for k, v in variables.items() if k != "params"}
  return variables["params"], rest


def stack(states: list[Any]) -> Any:
  """Stacks per-run pytrees along a new leading axis: the axis a group of runs is vmapped over."""
  return jax.tree.map(lambda *leaves: np.stack([np.asarray(l) for l in leaves]), *states)


def unstack(tree: Any, index: int, keepdims: bool = False) -> Any:
  """Run ``index`` of a stacked pytree (as a stack of one with ``keepdims``)."""
  return jax.tree.map(lambda leaf: leaf[index:index + 1] if keepdims else leaf[index], tree)
