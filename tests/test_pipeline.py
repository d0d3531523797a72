"""The compression pipeline (lowres_jax/pipeline.py): stages chained as ordinary runs."""

import json
import os

import pytest

from conftest import DEFAULT_CONFIG, cli_flags, run_main
from lowres_jax import pipeline
from lowres_jax.config import ConfigError, load_module


def _tiny_pipeline(data_dir, cache_dir):
  config = load_module(str(DEFAULT_CONFIG)).get_config("tiny=1,init=scratch")
  config.data.data_dir = config.source.data.data_dir = data_dir
  config.cache_dir = config.source.cache_dir = cache_dir
  return config


def test_the_default_pipeline_runs_every_stage_from_the_one_before(data_dir, tmp_path):
  flags = ["--config=configs/default.py:tiny=1,init=scratch",
           *cli_flags(data_dir, str(tmp_path / "cache")), f"--workdir={tmp_path / 'pipe'}"]
  result = run_main(flags)
  assert result.returncode == 0, result.stderr[-2000:]
  rows = json.loads((tmp_path / "pipe" / "pipeline.json").read_text())["stages"]
  assert [r["stage"] for r in rows] == ["finetune", "distill", "prune", "quantize"]
  finetune, distill, pruned, quantized = rows
  assert distill["model/params"] < finetune["model/params"] / 4
  assert pruned["model/nonzero_params"] < pruned["model/params"] == distill["model/params"]
  # int8 weights: a byte per value plus float scales, under half the float32 stage's bytes.
  assert 0 < quantized["weight_bytes"] < pruned["weight_bytes"] / 2
  assert quantized["int8/test/float_agreement"] >= 0.9
  assert all(r["timing/latency_b1_ms"] > 0 and r["timing/latency_b256_ms"] > 0 for r in rows)
  for name in ("1_finetune", "2_distill", "3_prune", "4_quantize"):
    assert (tmp_path / "pipe" / name / "summary.json").exists()
  # The distilled student's teacher is stage 1; the prune stage starts from stage 2.
  config = json.loads((tmp_path / "pipe" / "3_prune" / "config.json").read_text())
  assert config["init"]["path"] == str(tmp_path / "pipe" / "2_distill")
  distill_config = json.loads((tmp_path / "pipe" / "2_distill" / "config.json").read_text())
  assert distill_config["distill"]["teachers"] == [str(tmp_path / "pipe" / "1_finetune")]
  assert "| quantize |" in result.stdout


def test_a_failing_stage_leaves_the_earlier_stages_intact(data_dir, tmp_path):
  config = _tiny_pipeline(data_dir, str(tmp_path / "cache"))
  config.pipeline = ("finetune", "prune", "quantize")
  del config.stages["distill"]
  config.stages.prune.prune = {"targets": "^nothing$"}  # Matches no parameter.
  workdir = str(tmp_path / "pipe")
  with pytest.raises(ConfigError, match="matches no parameter"):
    pipeline.run_pipeline(config, workdir, show_progress=False)
  finished = os.path.join(workdir, "1_finetune", "summary.json")
  before = (os.path.getmtime(finished), open(finished).read())
  config.stages.prune.prune = {"targets": pipeline_default_targets()}
  rows = pipeline.run_pipeline(config, workdir, show_progress=False)
  assert [r["stage"] for r in rows] == ["finetune", "prune", "quantize"]
  # The finished stage was read back, not trained again.
  assert (os.path.getmtime(finished), open(finished).read()) == before


def pipeline_default_targets():
  from lowres_jax.compress import prune
  return prune.DEFAULT_TARGETS


def test_pipeline_config_errors(data_dir, tmp_path):
  config = _tiny_pipeline(data_dir, str(tmp_path / "cache"))
  config.pipeline = ("finetune", "distil")
  with pytest.raises(ConfigError, match="stages are"):
    pipeline.stage_configs(config, str(tmp_path))
  config = _tiny_pipeline(data_dir, str(tmp_path / "cache"))
  config.stages.prune.prune = {"sparsty": 0.5}
  with pytest.raises(ConfigError, match="sparsty"):
    pipeline.stage_configs(config, str(tmp_path))
  config = _tiny_pipeline(data_dir, str(tmp_path / "cache"))
  config.pipeline = ("prune", "finetune")
  with pytest.raises(ConfigError, match="must start with 'finetune'"):
    pipeline.stage_configs(config, str(tmp_path))
  from lowres_jax.train import loop
  with pytest.raises(ConfigError, match="chain of runs"):
    loop.run(_tiny_pipeline(data_dir, str(tmp_path / "cache")), str(tmp_path / "one"),
             show_progress=False)


def test_a_stage_of_no_steps_is_measured_and_chained(data_dir, tmp_path):
  """A one-shot prune without retraining: the stage prunes at step 0, leaves its checkpoint,
  and the quantize stage after it starts from the pruned weights."""
  config = _tiny_pipeline(data_dir, str(tmp_path / "cache"))
  config.pipeline = ("finetune", "prune", "quantize")
  del config.stages["distill"]
  config.stages.prune.train = {"duration": "0 steps"}
  rows = pipeline.run_pipeline(config, str(tmp_path / "pipe"), show_progress=False)
  finetune, pruned, quantized = rows
  assert pruned["model/nonzero_params"] < 0.6 * pruned["model/params"]
  assert quantized["model/nonzero_params"] == pruned["model/nonzero_params"]
  assert pipeline.run_pipeline(config, str(tmp_path / "pipe"), show_progress=False) == rows
