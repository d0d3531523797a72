"""Penalties that keep a fine-tuned model close to what it was pretrained to know.

Pure functions of pytrees and arrays, so each is tested against a hand computation; the
methods registry (train/methods.py) reads their strengths from the traced hyperparameters.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def _squared_norm(tree: Any) -> jax.Array:
  return sum((jnp.sum(jnp.square(leaf.astype(jnp.float32))) for leaf in jax.tree.leaves(tree)),
             jnp.float32(0.0))


def l2_sp(params: Any, anchor: Any, anchored: Any, alpha: jax.Array,
          beta: jax.Array) -> jax.Array:
  """L2-SP (Li et al. 2018): ``alpha/2 ||w_S - w_S^0||^2 + beta/2 ||w_new||^2``.

  ``anchored`` is a pytree of bools like ``params``: True where the weight was loaded from the
  pretrained model (pulled toward ``anchor``), False where it is new (the head: plain L2).
  """
  toward = jax.tree.map(lambda p, a, m: (p - a) if m else jnp.zeros_like(p), params, anchor,
                        anchored)
  new = jax.tree.map(lambda p, m: jnp.zeros_like(p) if m else p, params, anchored)
  return 0.5 * alpha * _squared_norm(toward) + 0.5 * beta * _squared_norm(new)


def feature_distance(features: jax.Array, anchor_features: jax.Array) -> jax.Array:
  """DELTA's behavioural regulariser (Li et al. 2019; TLlib's ``BehavioralRegularization``):
  ``1/2 ||F(x) - F_0(x)||^2`` between the model's and the frozen pretrained model's features on
  the same batch, averaged over the batch. The paper's channel-attention weights (each
  channel's effect on the pretrained model's loss, from a separate pass over the data) are not
  computed: every feature counts equally."""
  difference = (features - jax.lax.stop_gradient(anchor_features)).astype(jnp.float32)
  return 0.5 * jnp.sum(jnp.square(difference)) / features.shape[0]


def smallest_singular_values_squared(features: jax.Array, k: int) -> jax.Array:
  """BSS (Chen et al. 2019): ``sum_{i=1..k} sigma_{-i}^2``, the k smallest squared singular
  values of the batch's (batch, dim) feature matrix.

  They are the k smallest eigenvalues of the smaller Gram matrix (batch x batch or dim x dim,
  whichever is smaller), whose ``eigvalsh`` has a stable gradient where an SVD's is not needed.
  """
  matrix = features.reshape(features.shape[0], -1).astype(jnp.float32)
  gram = matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix
  if k > gram.shape[0]:
    raise ValueError(f"BSS penalises the {k} smallest singular values, but the batch's feature "
                     f"matrix has only {gram.shape[0]}")
  return jnp.sum(jnp.linalg.eigvalsh(gram)[:k])  # Ascending order.
