"""DELTA (Li et al. 2019): keep the features close to the pretrained model's on the same batch."""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from lowres_jax.train.adapt.base import AdaptSpec, Method, PenaltyContext, Setting


def feature_distance(features: jax.Array, anchor_features: jax.Array) -> jax.Array:
  """TLlib's ``BehavioralRegularization``: ``1/2 ||F(x) - F_0(x)||^2`` between the model's and
  the frozen pretrained model's features on the same batch, averaged over the batch. The
  paper's channel-attention weights (each channel's effect on the pretrained model's loss,
  from a separate pass over the data) are not computed: every feature counts equally."""
  difference = (features - jax.lax.stop_gradient(anchor_features)).astype(jnp.float32)
  return 0.5 * jnp.sum(jnp.square(difference)) / features.shape[0]


def _output(outputs: Mapping[str, jax.Array], name: str) -> jax.Array:
  if name not in outputs:
    raise ValueError(f"config.adapt.delta_output = {name!r} is not an output of this model; "
                     f"it returns {sorted(outputs)}")
  return outputs[name]


def _loss(spec: AdaptSpec, ctx: PenaltyContext) -> jax.Array:
  name = spec.setting("delta_output")
  return ctx.hparams["delta"] * feature_distance(_output(ctx.outputs, name),
                                                 _output(ctx.anchor_outputs(), name))


METHOD = Method("delta", traced={"delta": 0.01},
                static={"delta_output": Setting("pre_logits", str)}, needs_anchor=True,
                loss=_loss)
