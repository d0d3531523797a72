"""Classification losses used by the train step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array,
                          label_smoothing: jax.Array | float = 0.0) -> jax.Array:
  """Mean cross-entropy against (optionally smoothed) one-hot labels.

  ``label_smoothing`` may be a traced value, so sweeping it never recompiles.
  """
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return jnp.mean(optax.softmax_cross_entropy(logits, targets))
