"""An exponential moving average of the weights, evaluated beside the final ones."""

from __future__ import annotations

from typing import Any, Mapping

import jax

from lowres_jax.train.adapt.base import AdaptSpec, Method


def _init(spec: AdaptSpec, params: Any) -> dict:
  return {"ema": jax.tree.map(lambda p: p, params)}


def _update(spec: AdaptSpec, extra: dict, params: Any, hparams: Mapping[str, jax.Array]) -> dict:
  """``ema <- d ema + (1 - d) params`` after each step."""
  decay = hparams["ema_decay"]
  return {**extra, "ema": jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p,
                                       extra["ema"], params)}


def _variants(spec: AdaptSpec, variables: dict, extra: dict, anchor: dict | None) -> dict:
  return {"ema": {**variables, "params": extra["ema"]}}


METHOD = Method("ema", traced={"ema_decay": 0.99}, init_extra=_init, update_extra=_update,
                eval_variants=_variants)
