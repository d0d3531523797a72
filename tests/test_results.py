"""The published tables stay reproducible: every committed table regenerates byte for byte from
its per-run records, and every ablation config behind a published command still plans."""

import pathlib

import pytest

from conftest import REPO
from lowres_jax import pipeline, report, sweep
from lowres_jax.config import load_module
from lowres_jax.train.plan import read_plan

RESULTS = REPO / "results"
ABLATIONS = sorted((REPO / "configs" / "ablations").glob("*.py"))


# Sweep tables (lowres_jax.report); the peers' records have their own table script, below.
SWEEP_RECORDS = sorted(p for p in RESULTS.glob("*.runs.csv") if p.name != "peers.runs.csv")


@pytest.mark.parametrize("runs", SWEEP_RECORDS, ids=lambda p: p.name)
def test_committed_table_regenerates_from_its_records(runs: pathlib.Path, tmp_path, monkeypatch):
  monkeypatch.chdir(REPO)  # The table names its records by their path from the repository.
  prefix = str(runs).removesuffix(".runs.csv")
  relative = str(runs.relative_to(REPO))
  paths = report.report_from_runs(relative, str(tmp_path / "table"))
  for kind, suffix in (("markdown", ".md"), ("csv", ".csv")):
    committed = pathlib.Path(prefix + suffix)
    assert committed.exists(), f"{committed} is missing beside its records"
    assert pathlib.Path(paths[kind]).read_text() == committed.read_text(), (
        f"{committed.name} differs from what its records give: rerun `python -m "
        f"lowres_jax.report --runs {relative} {relative.removesuffix('.runs.csv')}`")


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.name)
def test_ablation_config_still_plans(path: pathlib.Path, tmp_path):
  """What `--list` does for a sweep (every starting run read and validated), or a compression
  pipeline's stages built from their overrides and its first stage read."""
  module = load_module(str(path))
  if hasattr(module, "get_sweep"):
    runs = sweep.list_runs(module)
    assert runs and all(run.plan is not None for run in runs)
    return
  config = module.get_config()
  stages = pipeline.stage_configs(config, str(tmp_path))
  assert [name for name, _, _ in stages] == list(config.pipeline)
  read_plan(stages[0][1])  # Later stages read their predecessor's workdir, which needs a run.


def test_the_peers_table_regenerates_from_its_records():
  """results/peers.md is a function of the peers' records and lowres_jax's records of the same
  runs (launch/peers/peers_table.py), which also checks that both trained on the same examples."""
  import sys
  sys.path.insert(0, str(REPO / "launch" / "peers"))
  import peer_records
  import peers_table
  records = peer_records.read(str(RESULTS / "peers.runs.csv"))
  assert records, "results/peers.runs.csv is missing: run the commands in results/peers.md"
  assert peers_table.format_table(records, "python launch/peers/peers_table.py") == (
      RESULTS / "peers.md").read_text(), "rerun `python launch/peers/peers_table.py`"
