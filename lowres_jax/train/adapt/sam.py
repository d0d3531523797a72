"""SAM (Foret et al. 2021): the gradient at the worst point of a small ball around the weights."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from lowres_jax.train.adapt.base import Method


def sam_gradients(grad_fn: Callable[[Any], tuple[Any, Any]], params: Any, rho: jax.Array,
                  trainable: Any) -> tuple[Any, Any]:
  """The gradient at ``w + rho g / ||g||``, ``g`` the gradient at ``w`` (same batch, same
  dropout). Returns (first evaluation's aux, the perturbed point's gradient).

  Written here rather than with ``optax.contrib.sam``, which spends one optimizer step on the
  ascent and one on the descent: that would halve the schedule's steps and make a SAM run's
  step count mean something different from every other run's.
  """
  aux, grads = grad_fn(params)
  grads = jax.tree.map(lambda g, t: g if t else jnp.zeros_like(g), grads, trainable)
  norm = optax.tree.norm(grads)
  scale = rho / jnp.maximum(norm, 1e-12)
  perturbed = jax.tree.map(lambda p, g: p + scale * g, params, grads)
  _, sharp_grads = grad_fn(perturbed)
  return aux, sharp_grads


METHOD = Method("sam", traced={"sam_rho": 0.05},
                gradients=lambda spec, grad_fn, params, hparams, trainable: sam_gradients(
                    grad_fn, params, hparams["sam_rho"], trainable))
