"""BSS (Chen et al. 2019): penalise the smallest singular values of the batch's features."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lowres_jax.train.adapt.base import AdaptSpec, Method, PenaltyContext, Setting


def smallest_singular_values_squared(features: jax.Array, k: int) -> jax.Array:
  """``sum_{i=1..k} sigma_{-i}^2``, the k smallest squared singular values of the batch's
  (batch, dim) feature matrix.

  They are the k smallest eigenvalues of the smaller Gram matrix (batch x batch or dim x dim,
  whichever is smaller), whose ``eigvalsh`` has a stable gradient where an SVD's is not needed.
  """
  matrix = features.reshape(features.shape[0], -1).astype(jnp.float32)
  gram = matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix
  if k > gram.shape[0]:
    raise ValueError(f"BSS penalises the {k} smallest singular values, but the batch's feature "
                     f"matrix has only {gram.shape[0]}")
  return jnp.sum(jnp.linalg.eigvalsh(gram)[:k])  # Ascending order.


def _loss(spec: AdaptSpec, ctx: PenaltyContext) -> jax.Array:
  return ctx.hparams["bss"] * smallest_singular_values_squared(ctx.outputs["pre_logits"],
                                                               spec.setting("bss_k"))


METHOD = Method("bss", traced={"bss": 0.001}, static={"bss_k": Setting(1, int)}, loss=_loss)
