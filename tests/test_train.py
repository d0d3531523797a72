"""End-to-end behaviour of one run: files, metrics, transfer, loud failures, compile reuse."""

import json
import os

import numpy as np
import pytest

from conftest import tiny_config
from lowres_jax.config import ConfigError
from lowres_jax.data import builders, sources
from lowres_jax.train import embedding_cache, loop
from lowres_jax.weights import init as init_lib
from lowres_jax.train.compiled import CompileCache
from lowres_jax.train.writer import read_jsonl


def test_run_writes_its_workdir_and_learns(tmp_path, data_dir):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.train.duration = "60 steps"
  config.optim.lr = 0.05
  workdir = tmp_path / "run"
  summary = loop.run(config, str(workdir), show_progress=False)
  for name in ("config.json", "split.json", "metrics.jsonl", "summary.json"):
    assert (workdir / name).exists(), name
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir / "tensorboard"))
  split = json.loads((workdir / "split.json").read_text())
  assert split["num_train"] == 50 and split["num_val"] == 50
  assert summary["test/num_examples"] == summary["num_test"] > 200
  assert summary["test/accuracy"] > 0.5  # Chance is 0.2 on five classes.
  assert len(summary["test/per_class_recall"]) == 5
  assert summary["model/trainable_params"] == summary["model/params"] > 0
  records = read_jsonl(str(workdir / "metrics.jsonl"))
  assert [r["step"] for r in records if "train/loss" in r] == [10, 20, 30, 40, 50, 60]
  assert records[0]["train/loss"] > records[-2]["train/loss"]
  assert any("val/accuracy" in r and r["step"] == 20 for r in records)


def test_rerunning_a_finished_run_reads_its_summary(tmp_path, data_dir):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  first = loop.run(config, str(tmp_path / "run"), show_progress=False)
  cache = CompileCache()
  second = loop.run(config, str(tmp_path / "run"), cache=cache, show_progress=False)
  assert second == json.loads(json.dumps(first))
  assert cache.compiles == 0


def test_nan_loss_stops_and_names_the_step(tmp_path, data_dir):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.optim.lr = 1e30
  config.optim.warmup = 0.0
  with pytest.raises(loop.NonFiniteLossError, match=r"at step \d+ of the run in"):
    loop.run(config, str(tmp_path / "run"), show_progress=False)
  assert not (tmp_path / "run" / "summary.json").exists()


def test_changing_traced_hyperparameters_does_not_recompile(tmp_path, data_dir):
  cache = CompileCache()
  # An earlier identical run in this process would serve run a's features from the cache,
  # and run b would then be the first to compile the feature function.
  embedding_cache.FEATURES.clear()
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  loop.run(config, str(tmp_path / "a"), cache=cache, show_progress=False)
  compiles = cache.compiles
  config.optim.lr, config.optim.weight_decay, config.seed = 0.1, 0.0, 3
  config.train.label_smoothing = 0.1
  loop.run(config, str(tmp_path / "b"), cache=cache, show_progress=False)
  assert cache.compiles == compiles
  config.train.batch_size = 16  # A shape change must compile anew.
  loop.run(config, str(tmp_path / "c"), cache=cache, show_progress=False)
  assert cache.compiles > compiles


def test_transfer_pretrains_once_then_reuses_the_cached_source(tmp_path, data_dir):
  cache_dir = tmp_path / "cache"
  config = tiny_config(data_dir, str(cache_dir), arg="tiny=1,init=source")
  loop.run(config, str(tmp_path / "a"), show_progress=False)
  (source_dir,) = [d for d in cache_dir.iterdir() if d.name.startswith("source-")]
  source_summary = json.loads((source_dir / "summary.json").read_text())
  assert source_summary["classes"] == [0, 1, 2, 3, 4]
  stamp = (source_dir / "summary.json").stat().st_mtime_ns
  config.seed = 1
  summary = loop.run(config, str(tmp_path / "b"), show_progress=False)
  assert (source_dir / "summary.json").stat().st_mtime_ns == stamp
  assert summary["init"]["kind"] == "source"


def test_init_from_a_workdir_with_another_model_fails_with_a_diff(tmp_path, data_dir):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  loop.run(config, str(tmp_path / "pretrained"), show_progress=False)
  config.model.width = 4
  config.init.kind, config.init.path = "workdir", str(tmp_path / "pretrained")
  with pytest.raises(init_lib.InitError, match=r"conv0_a/kernel: checkpoint \(3, 3, 1, 8\) vs model \(3, 3, 1, 4\)"):
    loop.run(config, str(tmp_path / "run"), show_progress=False)


def test_merge_pretrained_keeps_reinit_params_and_loads_the_rest():
  fresh = {"body": {"w": np.zeros((2, 2))}, "head": {"w": np.zeros((2, 3))}}
  loaded = {"body": {"w": np.ones((2, 2))}, "head": {"w": np.ones((2, 7))}}
  spec = init_lib.InitSpec(reinit="^head/")
  merged = init_lib.merge({"params": fresh}, init_lib.Loaded(init_lib.flatten({"params": loaded})), spec)
  assert (merged["params"]["body"]["w"] == 1).all() and (merged["params"]["head"]["w"] == 0).all()
  with pytest.raises(init_lib.InitError, match=r"missing from checkpoint: \['params/extra/b'\]"):
    init_lib.merge({"params": {**fresh, "extra": {"b": np.zeros(1)}}},
                   init_lib.Loaded(init_lib.flatten({"params": loaded})), spec)


def test_missing_fashion_mnist_files_name_the_install_command(tmp_path, monkeypatch):
  monkeypatch.setenv(builders.FASHION_MNIST_DIR_ENV, str(tmp_path / "empty"))
  with pytest.raises(builders.DatasetMissingError, match="apt-get install dataset-fashion-mnist"):
    sources.load_split("fashion_mnist", "train", str(tmp_path / "tfds"))


def test_unknown_dataset_lists_the_offline_ones(tmp_path):
  with pytest.raises(sources.DatasetError, match="digits, fashion_mnist"):
    sources.load_split("no_such_dataset_xyz", "train", str(tmp_path))


def test_a_workdir_of_another_config_is_refused(tmp_path, data_dir):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  loop.run(config, str(tmp_path / "run"), show_progress=False)
  config.optim.lr = 0.5
  with pytest.raises(ConfigError, match=r"different config \(differs in optim\.lr\)"):
    loop.run(config, str(tmp_path / "run"), show_progress=False)


def test_any_prepared_tfds_dataset_trains_end_to_end(tmp_path, data_dir):
  import tensorflow_datasets as tfds
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.data.name = "mnist"  # A catalogue name, served here by TFDS's mock data.
  config.data.data_dir = str(tmp_path / "tfds")
  config.data.classes = (0, 1, 2)
  config.data.shots, config.data.val_per_class = 2, 1
  sources.load_split.cache_clear()
  try:
    with tfds.testing.mock_data(num_examples=300):
      summary = loop.run(config, str(tmp_path / "run"), show_progress=False)
  finally:
    sources.load_split.cache_clear()  # Keep mock arrays out of other tests.
  assert summary["dataset"] == "mnist" and summary["num_train"] == 6
  assert 0 < summary["test/num_examples"] < 300


def test_no_validation_examples_is_allowed(tmp_path, data_dir):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.data.val_per_class = 0
  summary = loop.run(config, str(tmp_path / "run"), show_progress=False)
  assert summary["num_val"] == 0 and "val/accuracy" not in summary
  assert "test/accuracy" in summary


@pytest.mark.parametrize("field, value, message", [
    ("data.shots", 0, "positive count"),
    ("data.test_split", "train", "test set would hold the training examples"),
    ("optim.name", "adagrad", "known: \\['adamw', 'sgd'\\]"),
    ("source.data.classes", (3, 4, 5), "overlap the task's classes"),
    ("init", "/no/such/workdir", "must be a field group"),
    ("init.kind", "chekpoint", "unknown \\(did you mean 'checkpoint'\\?\\)"),
    ("init.reinit", "head(", "not a regex"),
])
def test_bad_values_are_config_errors(tmp_path, data_dir, field, value, message):
  config = tiny_config(data_dir, str(tmp_path / "cache"), arg="tiny=1,init=source")
  section, key = field.rsplit(".", 1) if "." in field else ("", field)
  node = config
  for part in filter(None, section.split(".")):
    node = node[part]
  with node.ignore_type():
    node[key] = value
  with pytest.raises(ConfigError, match=message):
    loop.run(config, str(tmp_path / "run"), show_progress=False)


def test_a_run_that_failed_before_any_checkpoint_can_rerun_with_a_new_config(tmp_path, data_dir):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.optim.lr, config.optim.warmup = 1e30, 0.0
  with pytest.raises(loop.NonFiniteLossError):
    loop.run(config, str(tmp_path / "run"), show_progress=False)
  config.optim.lr = 0.05
  assert "test/accuracy" in loop.run(config, str(tmp_path / "run"), show_progress=False)


@pytest.mark.parametrize("kind, path, message", [
    ("workdir", "/no/such/workdir", "'/no/such/workdir' does not exist; config.init.kind = "
     "'workdir' starts from the checkpoints of an earlier lowres_jax run"),
    ("checkpoint", "/no/such/file.pth", "no checkpoint file or directory at '/no/such/file.pth'"),
    ("checkpoint", "", "needs config.init.path"),
    ("checkpoint", "package:efficientnet_lite9", "unknown packaged weights"),
    ("checkpoint", "hf:just-a-name", "expected hf:ORG/NAME"),
    ("scratch", "/some/file.pth", "is not read when config.init.kind = 'scratch'"),
])
def test_bad_init_paths_are_config_errors(tmp_path, data_dir, kind, path, message):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.init.kind, config.init.path = kind, path
  with pytest.raises(ConfigError, match=message):
    loop.run(config, str(tmp_path / "run"), show_progress=False)


def test_unknown_init_field_is_a_config_error(tmp_path, data_dir):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.init.dontload = "pooler"
  with pytest.raises(ConfigError, match="unknown field\\(s\\) \\['dontload'\\]"):
    loop.run(config, str(tmp_path / "run"), show_progress=False)


def test_a_model_without_a_converter_cannot_load_a_checkpoint(tmp_path, data_dir):
  config = tiny_config(data_dir, str(tmp_path / "cache"))  # The CNN: no foreign checkpoints.
  config.init.kind, config.init.path = "checkpoint", "package:efficientnet_lite0"
  with pytest.raises(ConfigError, match="'cnn' has no checkpoint converter"):
    loop.run(config, str(tmp_path / "run"), show_progress=False)


def test_bad_model_fields_and_an_empty_source_are_config_errors(tmp_path, data_dir):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.model = {"name": "vit", "variant": "X/16"}
  with pytest.raises(ConfigError, match="config.model is not a valid 'vit'.*X/16"):
    loop.run(config, str(tmp_path / "run"), show_progress=False)
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.init.kind, config.source = "source", {}
  with pytest.raises(ConfigError, match="config.source, which is empty"):
    loop.run(config, str(tmp_path / "run2"), show_progress=False)


def test_weights_that_predict_non_finite_logits_stop_the_run_like_a_nan_loss(tmp_path, data_dir):
  """Finite weights so large that the logits overflow: zero steps of training, so only the
  evaluation loss can tell (accuracy from inf logits would look like a result)."""
  import orbax.checkpoint as ocp
  from lowres_jax import checkpoint
  source = tiny_config(data_dir, str(tmp_path / "cache"))
  source.train.duration = "10 steps"
  loop.run(source, str(tmp_path / "source"), show_progress=False)
  manager = checkpoint.make_manager(str(tmp_path / "source"))
  step = manager.latest_step()
  state = manager.restore(step, args=ocp.args.StandardRestore())
  state["params"]["head"]["kernel"] = np.full_like(state["params"]["head"]["kernel"], 3e38)
  checkpoint.save(manager, step + 1, state)
  manager.wait_until_finished()
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.init.kind, config.init.path, config.init.reinit = "workdir", str(tmp_path / "source"), ""
  config.train.duration = "0 steps"
  with pytest.raises(loop.NonFiniteLossError, match=r"val/loss is nan after step 0"):
    loop.run(config, str(tmp_path / "run"), show_progress=False)
  assert not (tmp_path / "run" / "summary.json").exists()
