"""Probes fitted on a run's final embeddings (train/probes.py), against a hand fit."""

import numpy as np
import pytest

from conftest import tiny_config
from lowres_jax.config import ConfigError
from lowres_jax.train import head_init, loop, probes
from lowres_jax.train.plan import read_plan


def test_ridge_probe_picks_its_l2_on_validation_and_reports_test_there():
  rng = np.random.default_rng(0)
  centres = rng.standard_normal((3, 5)) * 2
  make = lambda n: (lambda y: (centres[y] + rng.standard_normal((n, 5)), y))(np.arange(n) % 3)
  train, val, test = make(12), make(30), make(60)
  result = probes.probe_metrics("ridge", train, val, test, 3)
  accuracy = {}
  for l2 in probes.RIDGE_L2_GRID:
    kernel, bias = head_init.ridge_head(train[0], train[1], 3, l2)
    accuracy[l2] = np.mean(np.argmax(val[0] @ kernel + bias, -1) == val[1])
  best = max(probes.RIDGE_L2_GRID, key=lambda l2: accuracy[l2])
  assert result["probe_ridge/l2"] == best
  assert result["probe_ridge/val/accuracy"] == pytest.approx(accuracy[best])
  kernel, bias = head_init.ridge_head(train[0], train[1], 3, best)
  assert result["probe_ridge/test/accuracy"] == pytest.approx(
      np.mean(np.argmax(test[0] @ kernel + bias, -1) == test[1]))
  means = probes.probe_metrics("class_means", train, val, test, 3)
  rows = head_init.class_mean_rows(train[0], train[1], 3)
  assert means["probe_class_means/test/accuracy"] == pytest.approx(
      np.mean(np.argmax(test[0] @ rows.T, -1) == test[1]))


def test_a_trained_run_reports_probes_on_its_final_embeddings(data_dir, tmp_path):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.eval.probes = ("ridge", "class_means")
  summary = loop.run(config, str(tmp_path / "run"), show_progress=False)
  for kind in probes.PROBES:
    assert 0.0 <= summary[f"probe_{kind}/test/accuracy"] <= 1.0
    assert f"probe_{kind}/val/accuracy" in summary
  assert summary["probe_ridge/l2"] in probes.RIDGE_L2_GRID
  config.eval.probes = ("knn",)
  with pytest.raises(ConfigError, match="config.eval.probes = 'knn' is unknown"):
    read_plan(config)
