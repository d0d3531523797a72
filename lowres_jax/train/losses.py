"""Training losses by name (``config.train.loss``), each reading a context of the step.

A loss is ``(context) -> scalar`` where the context holds the batch, the model's logits and
intermediate outputs, the params, the traced hyperparameters and the training set's class
counts: enough for plain cross-entropy, for losses on representations (SetFit's pair loss) and
for the class-imbalance losses alike.

Every classification loss reads soft targets: ``batch["target"]`` (mixup and cutmix write one,
data/augment.py) or else the one-hot labels, then label smoothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from lowres_jax.eval import imbalance


@dataclasses.dataclass(frozen=True)
class LossContext:
  batch: Mapping[str, jax.Array]
  logits: jax.Array
  outputs: Mapping[str, jax.Array]  # The model's named intermediates ("pre_logits", ...).
  params: Any
  hparams: Mapping[str, jax.Array]
  # Training examples per class (float, (classes,)): the k-shot or long-tail set's profile.
  class_counts: jax.Array | None = None

  def targets(self) -> jax.Array:
    """The batch's soft targets (mixup/cutmix) or one-hot labels, label-smoothed."""
    num_classes = self.logits.shape[-1]
    targets = self.batch.get("target")
    if targets is None:
      targets = jax.nn.one_hot(self.batch["label"], num_classes)
    return optax.smooth_labels(targets.astype(jnp.float32), self.hparams["label_smoothing"])

  def counts(self) -> jax.Array:
    if self.class_counts is None:
      raise ValueError("this loss reads the training set's class counts; the step passes "
                       "them in LossContext.class_counts")
    return self.class_counts


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array,
                          label_smoothing: jax.Array | float = 0.0) -> jax.Array:
  """Mean cross-entropy against (optionally smoothed) one-hot labels.

  ``label_smoothing`` may be a traced value, so sweeping it never recompiles.
  """
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return jnp.mean(optax.softmax_cross_entropy(logits, targets))


def cross_entropy(ctx: LossContext) -> jax.Array:
  return jnp.mean(optax.softmax_cross_entropy(ctx.logits.astype(jnp.float32), ctx.targets()))


def effective_number_weights(counts: jax.Array, beta: jax.Array | float) -> jax.Array:
  """Class-balanced weights (Cui et al. 2019): (1 - beta) / (1 - beta^n_c), normalised to sum
  to the number of classes present; 0 for a class with no training example (no loss term
  ever carries its label, and its infinite weight would poison the normalisation)."""
  present = counts > 0
  safe = jnp.where(present, counts, 1.0)
  raw = jnp.where(present, (1.0 - beta) / (1.0 - jnp.power(beta, safe)), 0.0)
  return raw * jnp.sum(present) / jnp.sum(raw)


def class_balanced(ctx: LossContext) -> jax.Array:
  """Cross-entropy with each example weighted by its target's effective-number weight."""
  weights = ctx.targets() @ effective_number_weights(ctx.counts(), ctx.hparams["cb_beta"])
  return jnp.mean(weights * optax.softmax_cross_entropy(ctx.logits.astype(jnp.float32),
                                                        ctx.targets()))


def logit_adjusted(ctx: LossContext) -> jax.Array:
  """Logit-adjusted cross-entropy (Menon et al. 2021): the logits plus tau * log prior during
  training, so the raw logits learn the balanced posterior."""
  adjusted = ctx.logits.astype(jnp.float32) + ctx.hparams["la_tau"] * imbalance.log_prior(ctx.counts(), jnp)
  return jnp.mean(optax.softmax_cross_entropy(adjusted, ctx.targets()))


def focal(ctx: LossContext) -> jax.Array:
  """Focal loss (Lin et al. 2017) on soft targets: -sum_c t_c (1 - p_c)^gamma log p_c; gamma 0
  is cross-entropy."""
  log_probs = jax.nn.log_softmax(ctx.logits.astype(jnp.float32))
  # 1 - p as -expm1(log p) keeps its precision near p = 1, and the floor keeps the gradient of
  # x^gamma finite there for gamma < 1 (where it is gamma x^(gamma - 1)).
  modulating = jnp.power(jnp.clip(-jnp.expm1(log_probs), 1e-7, 1.0), ctx.hparams["focal_gamma"])
  return jnp.mean(-jnp.sum(ctx.targets() * modulating * log_probs, axis=-1))


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
    "class_balanced": class_balanced,
    "logit_adjusted": logit_adjusted,
    "focal": focal,
    "setfit": setfit,
}
# The traced hyperparameter each loss reads beyond label smoothing (a value set for another
# loss would silently do nothing: train/plan.py refuses it).
LOSS_HPARAMS = {"class_balanced": "train.cb_beta", "logit_adjusted": "train.la_tau",
                "focal": "train.focal_gamma"}
