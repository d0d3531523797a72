"""L2-SP (Li et al. 2018): pull the loaded weights toward their pretrained values."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lowres_jax.train.adapt.base import AdaptSpec, Method, PenaltyContext, anchored


def squared_norm(tree: Any) -> jax.Array:
  return sum((jnp.sum(jnp.square(leaf.astype(jnp.float32))) for leaf in jax.tree.leaves(tree)),
             jnp.float32(0.0))


def l2_sp(params: Any, anchor: Any, is_anchored: Any, alpha: jax.Array,
          beta: jax.Array) -> jax.Array:
  """``alpha/2 ||w_S - w_S^0||^2 + beta/2 ||w_new||^2``.

  ``is_anchored`` is a pytree of bools like ``params``: True where the weight was loaded from
  the pretrained model (pulled toward ``anchor``), False where it is new (the head: plain L2).
  """
  toward = jax.tree.map(lambda p, a, m: (p - a) if m else jnp.zeros_like(p), params, anchor,
                        is_anchored)
  new = jax.tree.map(lambda p, m: jnp.zeros_like(p) if m else p, params, is_anchored)
  return 0.5 * alpha * squared_norm(toward) + 0.5 * beta * squared_norm(new)


def _loss(spec: AdaptSpec, ctx: PenaltyContext) -> jax.Array:
  return l2_sp(ctx.params, ctx.frozen["anchor"]["params"], anchored(spec, ctx.params),
               ctx.hparams["l2sp"], ctx.hparams["l2sp_head"])


# alpha for the loaded weights, beta (plain L2) for the new ones.
METHOD = Method("l2sp", traced={"l2sp": 0.01, "l2sp_head": 0.0}, needs_anchor=True, loss=_loss)
