"""Layer-wise learning-rate decay: updates scaled by ``decay ** depth`` below the top layer.

Each model names its layers in ``models.LAYER_KEYS``.
"""

from __future__ import annotations

from typing import Any

import jax

from lowres_jax.models import LAYER_KEYS
from lowres_jax.train.adapt.base import AdaptSpec, Method, map_paths, paths


def layer_depths(spec: AdaptSpec, params: Any) -> Any:
  """Per parameter, how many layers it sits below the top (the head and anything above the
  model's last named layer: 0)."""
  layer_key = LAYER_KEYS[spec.model_name]
  keys = {path: layer_key(path) for path in ("/".join(p) for p in paths(params))}
  ranks = {key: i for i, key in enumerate(sorted({k for k in keys.values() if k is not None}))}
  return map_paths(params, lambda path: 0 if keys[path] is None
                   else len(ranks) - ranks[keys[path]])


def _multipliers(spec: AdaptSpec, hparams, params: Any, step, total_steps: int) -> Any:
  return jax.tree.map(lambda depth: hparams["layer_decay"] ** depth, layer_depths(spec, params))


def _validate(spec: AdaptSpec) -> None:
  if spec.model_name not in LAYER_KEYS:
    raise ValueError(f"model {spec.model_name!r} names no layers for 'llrd'; models that do: "
                     f"{sorted(LAYER_KEYS)}")


METHOD = Method("llrd", traced={"layer_decay": 0.75}, multipliers=_multipliers,
                validate=_validate)
