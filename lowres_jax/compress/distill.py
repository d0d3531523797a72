"""Knowledge distillation: frozen teachers' soft targets on the student's own batch.

``config.distill.teachers`` names finished lowres_jax runs (their workdirs). Each teacher is
loaded once, frozen, and enters the step as a shared pytree (``frozen["teachers"]``), never
stacked per run and never checkpointed with the student. In the step the teachers see exactly
the inputs the student sees (the same augmented view, the same mixup): function matching
(Beyer et al. 2022, "Knowledge distillation: a good teacher is patient and consistent").

The loss is ``labelled * CE(student, labels)`` on the k-shot batch plus, on the distillation
batch (the k-shot batch, and ``pool_batch`` unlabelled examples of the target training split
when ``pool_size`` > 0):

- ``kl * T^2 * KL(p_teacher^T || p_student^T)`` (Hinton et al. 2015: the T^2 keeps the
  gradient's scale independent of the temperature);
- ``hard * CE(student, argmax p_teacher)``: the teacher's pseudo-labels.

Several teachers are averaged in probability space. The weights, the temperature and the
mixup alpha of the pool inputs are traced (train/hparams.py): a grid over them compiles once.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# config.distill's static settings and their defaults (the traced ones are in hparams.DEFAULTS).
# pool_batch 0 means the labelled batch size.
STATIC_DEFAULTS = {"teachers": (), "pool_size": 0, "pool_batch": 0}


def config_defaults() -> dict:
  """Every ``config.distill`` key at its default (no teacher: distillation off)."""
  from lowres_jax.train.hparams import DEFAULTS
  traced = {key.split(".", 1)[1]: value for key, value in DEFAULTS.items()
            if key.startswith("distill.")}
  return {**STATIC_DEFAULTS, **traced}


@dataclasses.dataclass(frozen=True)
class DistillSpec:
  """The static part of distillation: the teachers' modules and the pool batch size."""
  teachers: tuple[nn.Module, ...] = ()
  pool_batch: int = 0  # Unlabelled pool examples per step (0: no pool).

  @property
  def active(self) -> bool:
    return bool(self.teachers)


def teacher_probabilities(teacher_logits: Sequence[jax.Array],
                          temperature: jax.Array) -> jax.Array:
  """The teachers' softened class probabilities, averaged over teachers."""
  return jnp.mean(jnp.stack([jax.nn.softmax(l.astype(jnp.float32) / temperature, axis=-1)
                             for l in teacher_logits]), axis=0)


def kl_distillation(student_logits: jax.Array, teacher_probs: jax.Array,
                    temperature: jax.Array) -> jax.Array:
  """``T^2 * mean_batch KL(teacher || student)`` at temperature ``T``."""
  log_student = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
  log_teacher = jnp.log(jnp.clip(teacher_probs, 1e-12, 1.0))
  kl = jnp.sum(teacher_probs * (log_teacher - log_student), axis=-1)
  return temperature ** 2 * jnp.mean(kl)


def pseudo_label_loss(student_logits: jax.Array, teacher_probs: jax.Array) -> jax.Array:
  """Cross-entropy against the teachers' top-1 class (hard pseudo-labels)."""
  labels = jnp.argmax(teacher_probs, axis=-1)
  log_student = jax.nn.log_softmax(student_logits.astype(jnp.float32), axis=-1)
  return -jnp.mean(jnp.take_along_axis(log_student, labels[:, None], axis=-1))


def distillation_loss(student_logits: jax.Array, teacher_logits: Sequence[jax.Array],
                      hparams) -> jax.Array:
  """The weighted KL and pseudo-label terms (train/hparams.py's ``distill_*`` values)."""
  temperature = hparams["distill_temperature"]
  soft = teacher_probabilities(teacher_logits, temperature)
  total = hparams["distill_kl"] * kl_distillation(student_logits, soft, temperature)
  # Pseudo-labels come from the unsoftened teachers (the argmax is the same at any T > 0).
  return total + hparams["distill_hard"] * pseudo_label_loss(student_logits, soft)


def mixup_inputs(key: jax.Array, batch: dict, alpha: jax.Array) -> dict:
  """Images mixed pairwise with a shuffled copy, ``lam ~ Beta(alpha, alpha)`` per example;
  ``alpha`` 0 leaves the batch unchanged. Unlabelled inputs only: labels are not mixed (the
  teachers label the mixed image)."""
  if "image" not in batch:
    raise ValueError(f"mixup mixes images; this batch has {sorted(batch)}")
  images = batch["image"].astype(jnp.float32)
  beta_key, perm_key = jax.random.split(key)
  lam = jax.random.beta(beta_key, jnp.maximum(alpha, 1e-3), jnp.maximum(alpha, 1e-3),
                        (images.shape[0], 1, 1, 1))
  lam = jnp.where(alpha > 0, lam, 1.0)
  shuffled = images[jax.random.permutation(perm_key, images.shape[0])]
  return {**batch, "image": lam * images + (1 - lam) * shuffled}


def agreement_metrics(student_logits: np.ndarray, teacher_logits: np.ndarray,
                      split: str) -> dict[str, float]:
  """Top-1 agreement and mean KL(teacher || student) at temperature 1 on a split."""
  student_log = jax.nn.log_softmax(jnp.asarray(student_logits, jnp.float32), axis=-1)
  teacher_log = jax.nn.log_softmax(jnp.asarray(teacher_logits, jnp.float32), axis=-1)
  kl = jnp.sum(jnp.exp(teacher_log) * (teacher_log - student_log), axis=-1)
  agree = np.argmax(student_logits, -1) == np.argmax(teacher_logits, -1)
  return {f"{split}/teacher_agreement": float(np.mean(agree)),
          f"{split}/teacher_kl": float(jnp.mean(kl))}
