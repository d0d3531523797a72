"""Training losses by name (``config.train.loss``), each reading a context of the step.

A loss is ``(context) -> scalar`` where the context holds the batch, the model's logits and
intermediate outputs, the params and the traced hyperparameters: enough for plain
cross-entropy and for losses on representations (SetFit's pair loss) alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class LossContext:
  batch: Mapping[str, jax.Array]
  logits: jax.Array
  outputs: Mapping[str, jax.Array]  # The model's named intermediates ("pre_logits", ...).
  params: Any
  hparams: Mapping[str, jax.Array]


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array,
                          label_smoothing: jax.Array | float = 0.0) -> jax.Array:
  """Mean cross-entropy against (optionally smoothed) one-hot labels.

  ``label_smoothing`` may be a traced value, so sweeping it never recompiles.
  """
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return jnp.mean(optax.softmax_cross_entropy(logits, targets))


def cross_entropy(ctx: LossContext) -> jax.Array:
  return softmax_cross_entropy(ctx.logits, ctx.batch["label"], ctx.hparams["label_smoothing"])


def cosine_pair_loss(embeddings: jax.Array, labels: jax.Array) -> jax.Array:
  """SetFit's contrastive objective on every pair of distinct examples in the batch: the
  squared error between their cosine similarity and 1 (same class) or 0 (other classes).

  SetFit draws pairs from the k-shot set on the host; all pairs of a sampled batch are the
  in-jit equivalent (a batch of 32 holds 496 pairs).
  """
  unit = embeddings / jnp.maximum(jnp.linalg.norm(embeddings, axis=-1, keepdims=True), 1e-12)
  cosine = unit @ unit.T
  same = (labels[:, None] == labels[None, :]).astype(cosine.dtype)
  off_diagonal = 1.0 - jnp.eye(labels.shape[0], dtype=cosine.dtype)
  return jnp.sum(off_diagonal * (cosine - same) ** 2) / jnp.sum(off_diagonal)


def setfit(ctx: LossContext) -> jax.Array:
  """SetFit in one run: the encoder learns from the pair loss only, while the head (a Dense
  named ``head``, the codebase's contract) learns cross-entropy on the stop-gradient
  embeddings, so it always sits on the current tuned embeddings and never pulls the encoder.
  """
  features = jax.lax.stop_gradient(ctx.outputs["pre_logits"])
  head = ctx.params["head"]
  head_logits = features.astype(jnp.float32) @ head["kernel"] + head["bias"]
  return (cosine_pair_loss(ctx.outputs["pre_logits"].astype(jnp.float32), ctx.batch["label"])
          + softmax_cross_entropy(head_logits, ctx.batch["label"],
                                  ctx.hparams["label_smoothing"]))


LOSSES: dict[str, Callable[[LossContext], jax.Array]] = {
    "cross_entropy": cross_entropy,
    "setfit": setfit,
}
