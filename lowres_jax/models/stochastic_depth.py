"""Stochastic depth (Huang et al. 2016), shared by the models with residual branches."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def drop_branch(module: nn.Module, branch: jax.Array, rate: float, train: bool) -> jax.Array:
  """A residual branch zeroed for each example with probability ``rate`` and scaled by
  ``1 / (1 - rate)`` otherwise, so its expectation is unchanged; the identity outside training.
  Draws from ``module``'s ``dropout`` rng."""
  if not train or rate <= 0:
    return branch
  keep = 1.0 - rate
  mask = jax.random.bernoulli(module.make_rng("dropout"), keep,
                              (branch.shape[0],) + (1,) * (branch.ndim - 1))
  return jnp.where(mask, branch / keep, 0).astype(branch.dtype)


def block_rate(rate: float, index: int, count: int) -> float:
  """The usual linear rule: 0 for the first block, ``rate`` for the last."""
  return rate * index / max(count - 1, 1)
