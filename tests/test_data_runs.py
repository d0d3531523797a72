"""The data issue's pieces inside real (seconds-long) runs: long-tail sets with the imbalance
losses and reports, label-budget selection recorded in split.json and reused on resume, mixup
and cutmix soft targets, and EDA ops on token ids."""

from __future__ import annotations

import json
import os

import pytest

from conftest import tiny_config
from test_text_data import fake_data_dir, fake_tree  # noqa: F401 (fixtures)
from test_text_methods import fake_fortunes_config, needs_minilm
from lowres_jax.config import ConfigError
from lowres_jax.train import loop


def _read(workdir: str, name: str) -> dict:
  with open(os.path.join(workdir, name)) as f:
    return json.load(f)


@pytest.mark.parametrize("settings", [
    {"train.loss": "focal", "train.sampler": "class_balanced"},
    {"train.loss": "logit_adjusted"},
    {"eval.logit_adjust": 1.0}])
def test_long_tail_run_records_its_profile_and_reports_shot_groups(data_dir, tmp_path,
                                                                    settings):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.data.shots, config.data.imbalance = 20, 10.0
  for key, value in settings.items():
    group, name = key.split(".")
    setattr(getattr(config, group), name, value)
  summary = loop.run(config, str(tmp_path / "run"))
  split = _read(str(tmp_path / "run"), "split.json")
  assert split["train_per_class"] == [20, 11, 6, 3, 2]
  assert summary["num_train"] == 42 and summary["imbalance"] == 10.0
  for group in ("many", "medium", "few"):
    assert 0.0 <= summary[f"test/{group}_accuracy"] <= 1.0
  assert summary["diverged_at_step"] is None and 0.0 <= summary["test/balanced_accuracy"] <= 1


def test_selection_run_labels_the_budget_and_reuses_it_on_resume(data_dir, tmp_path,
                                                                  monkeypatch):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.data.shots, config.data.val_per_class = 0, 0
  config.data.selection.update(dict(strategy="kcenter", budget=12, pool_size=150))
  workdir = str(tmp_path / "run")
  summary = loop.run(config, workdir)
  split = _read(workdir, "split.json")
  assert len(split["train_ids"]) == len(set(split["train_ids"])) == 12
  assert split["selection"]["strategy"] == "kcenter" and split["selection"]["pool_size"] == 150
  assert summary["budget"] == 12 and summary["num_train"] == 12 and summary["num_val"] == 0
  # A second run of the same config draws the same labels (features and k-center are
  # deterministic), and a finished workdir's choice is read back without embedding anything.
  again = str(tmp_path / "again")
  loop.run(config, again)
  assert _read(again, "split.json")["train_ids"] == split["train_ids"]
  from lowres_jax.data import select
  monkeypatch.setattr(select, "choose", lambda *a, **k: pytest.fail("re-selected on resume"))
  loop.run(config, workdir)


def test_max_entropy_and_typiclust_runs_choose_distinct_candidates(data_dir, tmp_path):
  for strategy, rounds in (("max_entropy", 3), ("typiclust", 1), ("stratified", 1)):
    config = tiny_config(data_dir, str(tmp_path / "cache"))
    config.data.shots = 0
    config.data.selection.update(dict(strategy=strategy, budget=10, rounds=rounds,
                                      pool_size=100))
    loop.run(config, str(tmp_path / strategy))
    split = _read(str(tmp_path / strategy), "split.json")
    assert len(set(split["train_ids"])) == 10
    assert not set(split["train_ids"]) & set(split["val_ids"])


def test_a_budget_above_the_candidates_is_refused_before_training(data_dir, tmp_path):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.data.shots = 0
  config.data.selection.update(dict(strategy="random", budget=50, pool_size=20))
  with pytest.raises(ConfigError, match="pool_size = 20 is below budget = 50"):
    loop.run(config, str(tmp_path / "run"))


@pytest.mark.parametrize("ops", [("crop", "mixup"), ("flip", "cutmix", "mixup"),
                                 ("randaugment",), ("trivialaugment", "resized_crop")])
def test_image_augmentation_runs_train_with_soft_targets(data_dir, tmp_path, ops):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.train.augment = ops
  summary = loop.run(config, str(tmp_path / "run"))
  assert 0.0 <= summary["test/accuracy"] <= 1.0 and summary["diverged_at_step"] is None


def test_text_ops_are_refused_for_images_and_image_ops_for_text(data_dir, fake_data_dir,
                                                                 tmp_path):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.train.augment = ("token_delete",)
  with pytest.raises(ConfigError, match="text augmentations, for an image dataset"):
    loop.run(config, str(tmp_path / "image"))
  text = fake_fortunes_config(fake_data_dir, "finetune")
  text.train.augment = ("flip",)
  with pytest.raises(ConfigError, match="image augmentations, for a text dataset"):
    loop.run(text, str(tmp_path / "text"))


@needs_minilm
def test_eda_ops_train_a_text_run(fake_data_dir, tmp_path):
  config = fake_fortunes_config(fake_data_dir, "finetune")
  config.train.augment = ("token_delete", "token_swap", "token_insert", "token_mask")
  config.augment.update(dict(delete=0.2, swap=0.2, insert=0.2, mask=0.2))
  summary = loop.run(config, str(tmp_path / "run"))
  assert 0.0 <= summary["test/accuracy"] <= 1.0 and summary["diverged_at_step"] is None
