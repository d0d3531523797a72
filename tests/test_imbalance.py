"""Class imbalance: long-tail profiles, the imbalance losses against hand computations,
class-balanced sampling, post-hoc logit adjustment and the many/medium/few report."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowres_jax.config import ConfigError
from lowres_jax.data import fewshot
from lowres_jax.data.sources import Examples
from lowres_jax.eval import imbalance
from lowres_jax.train import losses, step as step_lib
from lowres_jax.train.plan import read_plan
from tests.conftest import tiny_config

HPARAMS = {"label_smoothing": 0.0, "cb_beta": 0.9, "la_tau": 1.0, "focal_gamma": 2.0}


def _pool(per_class: int = 120, classes: int = 5) -> Examples:
  labels = np.repeat(np.arange(classes), per_class).astype(np.int32)
  images = np.zeros((len(labels), 2, 2, 1), np.uint8)
  return Examples({"id": np.arange(len(labels), dtype=np.int64), "label": labels, "image": images})


@pytest.mark.parametrize("shots,ratio", [(100, 10.0), (100, 100.0), (50, 10.0)])
def test_long_tail_profile_has_the_requested_ratio_and_decays(shots, ratio):
  profile = fewshot.long_tail_profile(shots, 10, ratio)
  assert profile[0] == shots
  assert profile[0] / profile[-1] == pytest.approx(ratio, rel=0.05)
  assert all(a >= b for a, b in zip(profile, profile[1:]))
  # The exponential profile: n_i = shots * ratio^(-i/9), floored.
  assert profile == [int(np.floor(shots * ratio ** (-i / 9) + 1e-9)) for i in range(10)]


def test_long_tail_manifest_draws_the_profile_and_records_it():
  pool = _pool()
  manifest = fewshot.draw_manifest(pool, "toy", (0, 1, 2, 3, 4), 40, 5, seed=3, imbalance=8)
  labels = pool.labels[np.asarray(manifest.train_ids)]
  assert np.bincount(labels, minlength=5).tolist() == [40, 23, 14, 8, 5]
  record = manifest.to_json()
  assert record["imbalance"] == 8 and record["train_per_class"] == [40, 23, 14, 8, 5]
  # Deterministic, and the validation set is the balanced draw's.
  again = fewshot.draw_manifest(pool, "toy", (0, 1, 2, 3, 4), 40, 5, seed=3, imbalance=8)
  balanced = fewshot.draw_manifest(pool, "toy", (0, 1, 2, 3, 4), 40, 5, seed=3)
  assert again == manifest and balanced.val_ids == manifest.val_ids
  assert "imbalance" not in balanced.to_json()


def _context(logits, labels, counts, targets=None, **hparams):
  batch = {"label": jnp.asarray(labels)}
  if targets is not None:
    batch["target"] = jnp.asarray(targets, jnp.float32)
  return losses.LossContext(batch, jnp.asarray(logits, jnp.float32), {}, {},
                            {**HPARAMS, **hparams}, jnp.asarray(counts, jnp.float32))


def _log_softmax(logits):
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0], [0.0, 0.0, 2.0]])
LABELS = np.array([0, 2, 1, 2])
COUNTS = np.array([50.0, 10.0, 2.0])


def test_class_balanced_weights_and_loss_equal_the_hand_computation():
  beta = 0.9
  raw = (1 - beta) / (1 - beta ** COUNTS)
  weights = raw * 3 / raw.sum()
  np.testing.assert_allclose(losses.effective_number_weights(jnp.asarray(COUNTS), beta),
                             weights, rtol=1e-6)
  nll = -_log_softmax(LOGITS)[np.arange(4), LABELS]
  expected = np.mean(weights[LABELS] * nll)
  assert float(losses.class_balanced(_context(LOGITS, LABELS, COUNTS))) == pytest.approx(
      expected, rel=1e-5)
  # A class with no example gets weight 0 and the rest still sum to the classes present.
  w = np.asarray(losses.effective_number_weights(jnp.asarray([5.0, 0.0, 1.0]), beta))
  assert w[1] == 0 and w.sum() == pytest.approx(2.0)


def test_logit_adjusted_loss_equals_the_hand_computation():
  tau = 1.5
  adjusted = LOGITS + tau * np.log(COUNTS / COUNTS.sum())
  expected = np.mean(-_log_softmax(adjusted)[np.arange(4), LABELS])
  got = losses.logit_adjusted(_context(LOGITS, LABELS, COUNTS, la_tau=tau))
  assert float(got) == pytest.approx(expected, rel=1e-5)
  # tau 0 is plain cross-entropy.
  plain = losses.cross_entropy(_context(LOGITS, LABELS, COUNTS))
  assert float(losses.logit_adjusted(_context(LOGITS, LABELS, COUNTS, la_tau=0.0))) == \
      pytest.approx(float(plain), rel=1e-6)


def test_focal_loss_equals_the_hand_computation_and_gamma_zero_is_cross_entropy():
  log_p = _log_softmax(LOGITS)
  p = np.exp(log_p)[np.arange(4), LABELS]
  expected = np.mean(-((1 - p) ** 2.0) * log_p[np.arange(4), LABELS])
  assert float(losses.focal(_context(LOGITS, LABELS, COUNTS))) == pytest.approx(expected,
                                                                                rel=1e-5)
  assert float(losses.focal(_context(LOGITS, LABELS, COUNTS, focal_gamma=0.0))) == \
      pytest.approx(float(losses.cross_entropy(_context(LOGITS, LABELS, COUNTS))), rel=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_gradients_stay_finite_for_a_saturated_prediction(gamma):
  logits = jnp.asarray([[40.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
  grads = jax.grad(lambda l: losses.focal(_context(l, [0, 1], COUNTS, focal_gamma=gamma)))(
      logits)
  assert np.all(np.isfinite(np.asarray(grads)))


def test_losses_read_soft_targets_when_the_batch_has_them():
  """Mixup's soft labels: the loss is the targets' expected negative log-likelihood."""
  targets = np.array([[0.7, 0.3, 0.0], [0.0, 0.5, 0.5], [0.2, 0.8, 0.0], [0.0, 0.0, 1.0]])
  expected = np.mean(-(targets * _log_softmax(LOGITS)).sum(-1))
  got = losses.cross_entropy(_context(LOGITS, LABELS, COUNTS, targets=targets))
  assert float(got) == pytest.approx(expected, rel=1e-5)
  # Class-balanced weights of a soft target are the targets' mixture of the class weights.
  weights = np.asarray(losses.effective_number_weights(jnp.asarray(COUNTS), 0.9))
  expected_cb = np.mean((targets @ weights) * -(targets * _log_softmax(LOGITS)).sum(-1))
  got_cb = losses.class_balanced(_context(LOGITS, LABELS, COUNTS, targets=targets))
  assert float(got_cb) == pytest.approx(expected_cb, rel=1e-5)


def test_class_balanced_sampler_draws_every_class_equally_often():
  labels = jnp.asarray(np.repeat([0, 1, 2], [90, 9, 1]).astype(np.int32))
  index = step_lib.class_balanced_indices(jax.random.PRNGKey(0), labels, 3, 30000)
  drawn = np.bincount(np.asarray(labels)[np.asarray(index)], minlength=3) / 30000
  np.testing.assert_allclose(drawn, [1 / 3] * 3, atol=0.015)
  uniform = step_lib.sample_batch_indices(jax.random.PRNGKey(0), 100, 30000)
  assert np.mean(np.asarray(labels)[np.asarray(uniform)] == 0) > 0.85


def test_post_hoc_adjustment_and_shot_groups():
  counts = np.array([40.0, 20.0, 10.0, 5.0, 5.0, 2.0])
  logits = np.log(np.array([[0.5, 0.2, 0.1, 0.1, 0.05, 0.05]]))
  adjusted = imbalance.adjust_logits(logits, counts, 1.0)
  np.testing.assert_allclose(adjusted, logits - np.log(counts / counts.sum()))
  assert int(np.argmax(adjusted)) == 5  # The rarest class wins once the prior is removed.
  train_labels = np.repeat(np.arange(6), counts.astype(int))
  np.testing.assert_allclose(imbalance.as_predicted(logits, train_labels, 6, 1.0), adjusted)
  assert imbalance.as_predicted(logits, train_labels, 6, 0.0) is logits
  groups = imbalance.shot_groups(counts)
  assert [g.tolist() for g in groups.values()] == [[0, 1], [2, 3], [4, 5]]
  assert imbalance.shot_groups(np.array([5.0, 5.0, 5.0])) == {}
  # Group accuracy = the group's mean recall.
  labels = np.array([0, 0, 1, 2, 3, 4, 5, 5])
  preds = np.array([0, 1, 1, 2, 0, 4, 5, 0])
  report = imbalance.group_metrics(np.eye(6)[preds], labels, counts, "test")
  assert report == {"test/many_accuracy": pytest.approx((0.5 + 1.0) / 2),
                    "test/medium_accuracy": pytest.approx((1.0 + 0.0) / 2),
                    "test/few_accuracy": pytest.approx((1.0 + 0.5) / 2)}


@pytest.mark.parametrize("override,message", [
    ({"train.focal_gamma": 1.0}, "read by the 'focal' loss"),
    ({"data.imbalance": 0.5}, "must be >= 1"),
    ({"train.sampler": "balanced"}, "config.train.sampler"),
    ({"data.selection.strategy": "kcenter", "data.selection.budget": 10}, "shots = 0"),
    ({"data.selection.strategy": "kcentre", "data.selection.budget": 10,
      "data.shots": 0}, "kcenter"),
    ({"eval.logit_adjust": -1.0}, "logit_adjust"),
    ({"train.loss": "logit_adjusted", "eval.logit_adjust": 1.0}, "correct twice"),
    ({"train.loss": "class_balanced", "train.sampler": "class_balanced"}, "correct twice"),
    ({"train.loss": "class_balanced", "train.cb_beta": 1.0}, r"must be in \[0, 1\)"),
    ({"augment.mixup": 0.5}, r"read by \['mixup'\], none of which"),
    ({"train.augment": ("trivialaugment",), "augment.magnitude": 1.5}, r"in \[0.0, 1.0\]"),
    ({"data.selection.budget": 10}, "strategy is ''"),
    ({"data.shots": 0, "data.selection.strategy": "kcenter", "data.selection.budget": 10,
      "data.selection.rounds": 2}, "chooses in one pass"),
    ({"data.shots": 0, "data.selection.strategy": "random", "data.selection.budget": 10,
      "head_init": "class_means"}, "need an example of every class"),
])
def test_bad_imbalance_and_selection_settings_are_refused(tmp_path, override, message):
  config = tiny_config(str(tmp_path), str(tmp_path))
  for key, value in override.items():
    node = config
    *parents, last = key.split(".")
    for part in parents:
      node = getattr(node, part)
    setattr(node, last, value)
  with pytest.raises(ConfigError, match=message):
    read_plan(config)
