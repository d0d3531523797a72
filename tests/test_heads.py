"""Fitted heads (ridge, logistic) against scikit-learn; frozen features shared across runs;
SetFit's head refit; the models' head contract the feature cache rests on."""

import jax
import numpy as np
import pytest
from sklearn import linear_model

from conftest import tiny_config
from lowres_jax import checkpoint
from lowres_jax.config import ConfigError
from lowres_jax.models import MODELS, build_model
from lowres_jax.train import embedding_cache, head_init, loop


def _blobs(num: int = 60, dim: int = 5, classes: int = 3, seed: int = 0):
  rng = np.random.default_rng(seed)
  labels = np.arange(num) % classes
  centres = rng.normal(size=(classes, dim))
  return (centres[labels] + rng.normal(size=(num, dim))).astype(np.float32), labels


def test_ridge_head_equals_scikit_learn_ridge():
  x, y = _blobs()
  l2 = 0.05
  kernel, bias = head_init.ridge_head(x, y, 3, l2)
  # scikit-learn minimises the summed squared error + alpha ||W||^2: alpha = l2 * n.
  reference = linear_model.Ridge(alpha=l2 * len(x)).fit(x, np.eye(3)[y])
  np.testing.assert_allclose(kernel, reference.coef_.T, atol=1e-5)
  np.testing.assert_allclose(bias, reference.intercept_, atol=1e-5)


def test_logistic_head_equals_scikit_learn_logistic_regression():
  x, y = _blobs()
  l2 = 0.02
  kernel, bias = head_init.logistic_head(x, y, 3, l2, iterations=200)
  # scikit-learn minimises C * summed cross-entropy + ||W||^2 / 2 (bias unpenalised):
  # C = 1 / (l2 * n).
  reference = linear_model.LogisticRegression(C=1 / (l2 * len(x)), tol=1e-10,
                                              max_iter=10_000).fit(x, y)

  def objective(kernel, bias):  # Ours, in float64.
    logits = x.astype(np.float64) @ kernel + bias
    top = logits.max(1)
    log_sum = np.log(np.exp(logits - top[:, None]).sum(1)) + top
    return np.mean(log_sum - logits[np.arange(len(y)), y]) + 0.5 * l2 * np.sum(kernel ** 2)

  # Both at the same optimum (float32 L-BFGS vs float64): equal objectives; the objective is
  # flat enough there that probabilities agree to ~1e-4 only.
  np.testing.assert_allclose(objective(kernel, bias),
                             objective(reference.coef_.T, reference.intercept_), rtol=1e-6)
  logits = x @ kernel + bias
  probabilities = np.exp(logits - logits.max(1, keepdims=True))
  probabilities /= probabilities.sum(1, keepdims=True)
  np.testing.assert_allclose(probabilities, reference.predict_proba(x), atol=5e-4)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_ends_in_a_head_on_pre_logits(name):
  """The contract the feature cache's shortcut relies on: logits = head(pre_logits)."""
  if name == "bert":
    batch = {"input_ids": np.array([[101, 2023, 102, 0]]), "attention_mask": np.array([[1, 1, 1, 0]])}
    model = build_model(name, 3, hidden=16, depth=1, num_heads=2, mlp_dim=32, vocab_size=3000)
  else:
    batch = {"image": np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), np.uint8)}
    kwargs = {"vit": dict(variant="Ti/16", image_size=32),
              "efficientnet_lite": dict(image_size=32), "cnn": dict(image_size=32)}
    model = build_model(name, 3, **kwargs.get(name, {}))
  variables = model.init(jax.random.PRNGKey(0), batch, train=False)
  rng = np.random.default_rng(1)
  head = variables["params"]["head"]
  variables = head_init.with_head(jax.device_get(variables),
                                  rng.normal(size=head["kernel"].shape).astype(np.float32),
                                  rng.normal(size=head["bias"].shape).astype(np.float32))
  logits, outputs = model.apply(variables, batch, train=False)
  stacked = jax.tree.map(lambda leaf: np.asarray(leaf)[None], variables["params"])
  np.testing.assert_allclose(
      embedding_cache.head_logits(np.asarray(outputs["pre_logits"]), stacked)[0], logits,
      rtol=1e-4, atol=1e-4)


def test_shared_fingerprint_ignores_heads_and_sees_any_backbone_change():
  stacked = {"params": {"head": {"kernel": np.arange(4.0).reshape(2, 2)},
                        "body": {"kernel": np.ones((2, 3))}}, "batch_stats": {"m": np.zeros((2, 1))}}
  fingerprint = embedding_cache.shared_fingerprint(stacked)
  assert fingerprint is not None
  changed = jax.tree.map(np.copy, stacked)
  changed["batch_stats"]["m"][1] = 1.0
  assert embedding_cache.shared_fingerprint(changed) is None
  one_run = jax.tree.map(lambda leaf: leaf[:1], stacked)
  assert embedding_cache.shared_fingerprint(one_run) == fingerprint


def _frozen_config(data_dir, tmp_path, lr):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.train.duration = "0 steps"
  config.head_init = "logistic"
  config.optim.lr = lr  # Traced: two rates form one group with one shared backbone.
  return config


def test_frozen_runs_embed_each_example_once_and_match_plain_evaluation(data_dir, tmp_path,
                                                                        monkeypatch):
  configs = [_frozen_config(data_dir, tmp_path, lr) for lr in (0.1, 0.2)]
  embedding_cache.FEATURES.clear()
  cached = loop.train_group(configs, [str(tmp_path / "a0"), str(tmp_path / "a1")],
                            show_progress=False)
  # Both runs share seed and backbone: the test set and the k-shot/validation examples are
  # embedded once, not once per run.
  assert embedding_cache.FEATURES.computed == (cached[0]["num_test"] + cached[0]["num_train"]
                                           + cached[0]["num_val"])
  monkeypatch.setattr(embedding_cache, "shared_fingerprint", lambda variables: None)
  plain = loop.train_group(configs, [str(tmp_path / "b0"), str(tmp_path / "b1")],
                           show_progress=False)
  for a, b in zip(cached, plain):
    for key in ("test/accuracy", "test/loss", "val/accuracy", "val/loss"):
      np.testing.assert_allclose(a[key], b[key], rtol=1e-4, err_msg=key)


def test_head_refit_replaces_the_trained_head_in_the_last_checkpoint(data_dir, tmp_path):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  # A huge ridge penalty leaves no kernel: the refit head is the class frequencies alone.
  config.head_refit, config.head_l2 = "ridge", 1e9
  summary = loop.run(config, str(tmp_path / "run"), show_progress=False)
  head = checkpoint.load_variables(str(tmp_path / "run"))["params"]["head"]
  assert np.abs(head["kernel"]).max() < 1e-6
  num_classes = len(summary["classes"])
  np.testing.assert_allclose(head["bias"], np.full(num_classes, 1 / num_classes), atol=1e-6)


def test_ridge_without_penalty_is_a_config_error(data_dir, tmp_path):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.head_init, config.head_l2 = "ridge", 0.0
  with pytest.raises(ConfigError, match="head_l2"):
    loop.run(config, str(tmp_path / "run"), show_progress=False)


def test_scaled_head_has_random_rows_of_the_set_norm_drawn_from_the_seed(data_dir, tmp_path):
  heads = []
  for name, seed in (("a", 0), ("b", 0), ("c", 1)):
    config = tiny_config(data_dir, str(tmp_path / "cache"))
    # One step at rate 0 keeps the initial head and writes it to a checkpoint.
    config.train.duration, config.optim.lr = "1 steps", 0.0
    config.head_init, config.head_scale, config.seed = "scaled", 0.5, seed
    loop.run(config, str(tmp_path / name), show_progress=False)
    heads.append(checkpoint.load_variables(str(tmp_path / name))["params"]["head"])
  np.testing.assert_allclose(np.linalg.norm(heads[0]["kernel"], axis=0), 0.5, rtol=1e-5)
  np.testing.assert_array_equal(heads[0]["bias"], 0.0)
  np.testing.assert_array_equal(heads[0]["kernel"], heads[1]["kernel"])
  assert not np.allclose(heads[0]["kernel"], heads[2]["kernel"])
  # Distinct random directions: the rows are far from parallel.
  rows = heads[0]["kernel"].T / 0.5
  off_diagonal = rows @ rows.T - np.eye(len(rows))
  assert np.abs(off_diagonal).max() < 0.9
