"""The sweep: naming, grouping, restart, vmapped == sequential, --list and --shard."""

import json
import pathlib
import shlex
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, cpu_env
from lowres_jax import report, sweep, sweep_dir
from lowres_jax.config import ConfigError
from lowres_jax.train.loop import TIMING_PREFIX

TINY_SWEEP = str(REPO / "tests" / "configs" / "tiny_sweep.py")


@pytest.fixture
def ablation(tmp_path, data_dir, monkeypatch):
  monkeypatch.setenv("LOWRES_TEST_DATA_DIR", data_dir)
  monkeypatch.setenv("LOWRES_TEST_CACHE_DIR", str(tmp_path / "cache"))
  module = sweep.load_ablation(TINY_SWEEP)
  seeds_only = sweep.product([{"method": "finetune", "init.kind": "source"}],
                             sweep.axis("optim.lr", (0.02, 0.05)), sweep.axis("seed", range(2)))
  monkeypatch.setattr(module, "get_sweep", lambda: seeds_only)
  return module


def test_product_zip_and_names():
  runs = sweep.product(sweep.axis("a.x", (1, 2)), sweep.zip_axes(
      [{"data.name": "d1", "source.data.name": "d1"}, {"data.name": "d2", "source.data.name": "d2"}],
      sweep.axis("seed", (0, 1))))
  assert len(runs) == 4 and runs[1] == {"a.x": 1, "data.name": "d2", "source.data.name": "d2",
                                        "seed": 1}
  # source.data.name and seed only repeat data.name (zipped), so they do not lengthen names.
  assert sweep.run_names(runs) == ["x=1,name=d1", "x=1,name=d2", "x=2,name=d1", "x=2,name=d2"]
  assert sweep.run_names(runs, name_keys=("data.name", "seed")) == [
      "name=d1,seed=0", "name=d2,seed=1", "name=d1,seed=0", "name=d2,seed=1"]
  with pytest.raises(ValueError, match="equal length"):
    sweep.zip_axes(sweep.axis("a", (1, 2)), sweep.axis("b", (1,)))


def test_groups_stack_seeds_and_learning_rates_but_not_shapes(tmp_path, data_dir, monkeypatch):
  monkeypatch.setenv("LOWRES_TEST_DATA_DIR", data_dir)
  monkeypatch.setenv("LOWRES_TEST_CACHE_DIR", str(tmp_path))
  runs = sweep.expand(sweep.load_ablation(TINY_SWEEP))
  groups = sweep.group_runs(runs, use_vmap=True)
  # Methods differ in init, shots in shapes: 2 x 2 groups of (2 learning rates x 3 seeds).
  assert len(runs) == 24 and sorted(len(g) for g in groups) == [6, 6, 6, 6]
  assert len(sweep.group_runs(runs, use_vmap=False)) == 24
  shards = [sweep.shard(groups, i, 3) for i in range(3)]
  names = sorted(r.name for s in shards for g in s for r in g)
  assert names == sorted(r.name for r in runs)


def test_restart_skips_finished_runs(tmp_path, ablation):
  first = sweep.run_sweep(ablation, TINY_SWEEP, str(tmp_path / "sweep"), show_progress=False)
  assert first["runs_trained"] == 4 and first["groups"] == 1
  # One compiled train step serves the 4 stacked runs, plus the source run's and evaluation's.
  assert first["compilations"] < first["runs_trained"] + 3
  again = sweep.run_sweep(ablation, TINY_SWEEP, str(tmp_path / "sweep"), show_progress=False)
  assert again["runs_trained"] == 0 and again["runs_skipped_finished"] == 4
  assert again["compilations"] == 0
  saved = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
  assert saved["runs_skipped_finished"] == 4


def test_vmapped_runs_equal_sequential_runs(tmp_path, ablation):
  sweep.run_sweep(ablation, TINY_SWEEP, str(tmp_path / "vmap"), use_vmap=True,
                  show_progress=False)
  sweep.run_sweep(ablation, TINY_SWEEP, str(tmp_path / "seq"), use_vmap=False,
                  show_progress=False)
  _, stacked = sweep_dir.collect_records(str(tmp_path / "vmap"))
  _, sequential = sweep_dir.collect_records(str(tmp_path / "seq"))
  assert len(stacked) == len(sequential) == 4
  for a, b in zip(stacked, sequential):
    assert a["run"] == b["run"] and a["timing/runs_in_group"] == 4
    assert a["train_sha256"] == b["train_sha256"]
    for key in ("test/loss", "val/loss", "test/accuracy"):
      np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_listed_command_reproduces_the_sweep_run(tmp_path, ablation, data_dir):
  workdir = tmp_path / "sweep"
  sweep.run_sweep(ablation, TINY_SWEEP, str(workdir), show_progress=False)
  runs = sweep.expand(ablation)
  command = sweep.main_command(TINY_SWEEP, str(tmp_path / "alone"), runs[3])
  args = shlex.split(command)[3:]  # Drop 'python -m lowres_jax.main'.
  env = cpu_env()
  env.update(LOWRES_TEST_DATA_DIR=data_dir, LOWRES_TEST_CACHE_DIR=str(tmp_path / "cache"))
  result = subprocess.run([sys.executable, "-m", "lowres_jax.main", *args, "--progress=false"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  alone = json.loads((tmp_path / "alone" / runs[3].name / "summary.json").read_text())
  in_sweep = json.loads((workdir / runs[3].name / "summary.json").read_text())
  for key, value in in_sweep.items():
    if not key.startswith(TIMING_PREFIX) and isinstance(value, float):
      np.testing.assert_allclose(alone[key], value, rtol=1e-4, atol=1e-6, err_msg=key)


def test_report_cli_writes_tables_from_a_sweep_dir(tmp_path, ablation, monkeypatch):
  methods = [{"method": "scratch", "init.kind": "scratch"}, {"method": "finetune", "init.kind": "source"}]
  monkeypatch.setattr(ablation, "get_sweep",
                      lambda: sweep.product(methods, sweep.axis("seed", range(2))))
  sweep.run_sweep(ablation, TINY_SWEEP, str(tmp_path / "sweep"), show_progress=False)
  result = subprocess.run([sys.executable, "-m", "lowres_jax.report", str(tmp_path / "sweep"),
                           str(tmp_path / "out" / "table")], cwd=REPO, env=cpu_env(),
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[:3000]
  markdown = (tmp_path / "out" / "table.md").read_text()
  assert "python -m lowres_jax.report" in markdown
  assert "| scratch |" in markdown and "| finetune |" in markdown and "Δ" in markdown
  assert "train examples per run (10-shot: 50); validation 50 per run" in markdown
  assert (tmp_path / "out" / "table.png").stat().st_size > 1000
  # Another metric of the same runs: the ablation's title and notes (about its own metric)
  # are not carried over to it.
  other = report.write_sweep_report(str(tmp_path / "sweep"), str(tmp_path / "out" / "few"),
                                   metric="test/balanced_accuracy")
  text = pathlib.Path(other["markdown"]).read_text()
  assert ": test/balanced_accuracy of the same runs\n" in text.splitlines()[0] + "\n"
  assert "tabled by test/balanced_accuracy; what they show is written in that table's notes" in text


def test_a_diverging_setting_is_recorded_and_not_selected(tmp_path, ablation, monkeypatch):
  monkeypatch.setattr(ablation, "get_sweep", lambda: sweep.product(
      [{"method": "scratch", "init.kind": "scratch", "optim.warmup": 0.0}],
      sweep.axis("optim.lr", (0.02, 1e30)), sweep.axis("seed", range(2))))
  record = sweep.run_sweep(ablation, TINY_SWEEP, str(tmp_path / "sweep"), show_progress=False)
  assert record["runs_trained"] == 4 and record["groups"] == 1
  _, records = sweep_dir.collect_records(str(tmp_path / "sweep"))
  by_lr = {}
  for r in records:
    by_lr.setdefault(r["hparams"]["lr"], []).append(r)
  assert all(r["diverged_at_step"] is not None and "test/accuracy" not in r
             for r in by_lr[1e30])
  assert all(r["diverged_at_step"] is None and np.isfinite(r["test/loss"]) for r in by_lr[0.02])
  from lowres_jax import report
  assert set(report.select_settings(records).values()) == {"optim.lr=0.02"}


def test_local_launcher_runs_shards_in_parallel_then_reports(tmp_path, data_dir):
  env = cpu_env()
  env.update(LOWRES_TEST_DATA_DIR=data_dir, LOWRES_TEST_CACHE_DIR=str(tmp_path / "cache"))
  config = tmp_path / "two_groups.py"
  config.write_text(
      "import importlib.util\n"
      f"spec = importlib.util.spec_from_file_location('tiny', {TINY_SWEEP!r})\n"
      "tiny = importlib.util.module_from_spec(spec); spec.loader.exec_module(tiny)\n"
      "from lowres_jax.sweep import axis, product\n"
      "get_config, TITLE, BASELINE = tiny.get_config, 'two groups', 'scratch'\n"
      "def get_sweep():\n"
      "  return product([{'method': 'scratch', 'init.kind': 'scratch'}], axis('data.shots', (2, 3)),\n"
      "                 axis('seed', range(2)))\n")
  result = subprocess.run(["bash", "launch/local_shards.sh", str(config), str(tmp_path / "sweep"),
                           "2", str(tmp_path / "report")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  shard_files = sorted(p.name for p in (tmp_path / "sweep").glob("sweep-shard*.json"))
  assert shard_files == ["sweep-shard0of2.json", "sweep-shard1of2.json"]
  trained = sum(json.loads((tmp_path / "sweep" / f).read_text())["runs_trained"]
                for f in shard_files)
  assert trained == 4
  assert "| scratch |" in (tmp_path / "report.md").read_text()


def test_a_bad_run_fails_the_sweep_before_anything_trains(tmp_path, ablation, monkeypatch):
  monkeypatch.setattr(ablation, "get_sweep", lambda: sweep.product(
      sweep.axis("data.shots", (2, 0)), sweep.axis("seed", range(2))))
  with pytest.raises(ValueError, match=r"sweep run shots=0,seed=0: .*positive count"):
    sweep.run_sweep(ablation, TINY_SWEEP, str(tmp_path / "sweep"), show_progress=False)
  assert not (tmp_path / "sweep").exists()


def test_a_refused_sweep_changes_nothing_in_its_directory(tmp_path, ablation, monkeypatch):
  workdir = tmp_path / "sweep"
  sweep.run_sweep(ablation, TINY_SWEEP, str(workdir), show_progress=False)
  before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file() and "lock" not in p.name}
  original = ablation.get_config

  def changed():
    config = original()
    config.train.duration = "30 steps"  # Not what the finished runs trained with.
    return config
  monkeypatch.setattr(ablation, "get_config", changed)
  monkeypatch.setattr(ablation, "TITLE", "another table", raising=False)  # Would show in sweep.json.
  with pytest.raises(ConfigError):
    sweep.run_sweep(ablation, TINY_SWEEP, str(workdir), show_progress=False)
  after = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file() and "lock" not in p.name}
  assert after == before
