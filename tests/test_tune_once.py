"""Tune once, then test on fresh seeds: search spaces, edge growth, equal trials, records."""

import json

import pytest

from conftest import REPO
from lowres_jax import records, report, search, sweep, tune_once
from lowres_jax.config import ConfigError

TINY_TUNED = str(REPO / "tests" / "configs" / "tiny_tuned.py")


def test_log_grid_and_choices_values_and_steps_outward():
  grid = search.log_grid(1e-5, 1e-3, 5)
  assert grid.values == (1e-05, 3.16e-05, 0.0001, 0.000316, 0.001)
  assert grid.beyond(0.001, grid.values) == 0.00316
  assert grid.beyond(1e-5, grid.values) == 3.16e-06
  assert grid.beyond(1e-4, grid.values) is None  # Inside: nothing to grow.
  listed = search.choices(3e-4, 1e-5, 3e-5, 1e-4)  # Sorted; ratio of the outermost pair.
  assert listed.values == (1e-5, 3e-5, 1e-4, 3e-4)
  assert listed.beyond(3e-4, listed.values) == 0.0009
  ranks = search.choices(4, 8, 16)
  assert ranks.beyond(16, ranks.values) == 32 and ranks.beyond(4, ranks.values) == 2
  linear = search.choices(-1.0, 0.0, 1.0)  # Not all positive: steps by the difference.
  assert linear.beyond(1.0, linear.values) == 2.0
  assert search.choices("a", "b").beyond("b", ["a", "b"]) is None
  with pytest.raises(ConfigError, match="lo < hi"):
    search.log_grid(1e-3, 1e-5, 3)


def test_a_bounded_space_never_grows_past_what_its_key_means():
  decay = search.choices(0.9, 0.95, within=(0.0, 0.999))
  assert decay.beyond(0.9, decay.values) == 0.853  # Down by the ratio 0.95 / 0.9.
  assert decay.beyond(0.95, decay.values) is None  # 1.003: not a decay; the edge stays.
  assert decay.is_edge(0.95, decay.values)
  with pytest.raises(ConfigError, match="outside within"):
    search.choices(0.5, 1.5, within=(0.0, 1.0))


def test_extensions_grow_only_edge_keys_from_the_pick():
  spaces = {"a": search.choices(1.0, 2.0), "b": search.choices(10.0, 20.0, 40.0)}
  tried = search.grid(spaces)
  assert search.extensions(spaces, (("a", 2.0), ("b", 20.0)), tried) == [(("a", 4.0), ("b", 20.0))]
  assert search.extensions(spaces, (("a", 1.0), ("b", 40.0)), tried) == [
      (("a", 0.5), ("b", 40.0)), (("a", 1.0), ("b", 80.0))]
  assert search.edges(spaces, (("a", 2.0), ("b", 20.0)), tried) == ["a"]


class _Module:
  """An ablation-like namespace for protocol declaration checks."""

  def __init__(self, **attributes):
    self.__dict__.update(attributes)


def test_protocol_refuses_unequal_trials_overlapping_seeds_and_unknown_methods():
  spaces = {"a": {"optim.lr": search.choices(1.0, 2.0)},
            "b": {"optim.lr": search.choices(1.0, 2.0, 4.0)}}
  with pytest.raises(ConfigError, match="same number of trials"):
    tune_once.read_protocol(_Module(SEARCH=spaces, TUNE={"cell": {}, "seeds": (9,), "trials": 2}))
  protocol = tune_once.read_protocol(_Module(SEARCH={"a": spaces["a"]},
                                             TUNE={"cell": {"shots": 1}, "seeds": (0,),
                                                   "trials": 2}))
  runs = [{"method": "a", "shots": 1, "seed": 0}]
  with pytest.raises(ConfigError, match="overlap"):
    tune_once.tuning_groups(protocol, runs, lambda bases: ["g"] * len(bases))
  with pytest.raises(ConfigError, match="never runs"):
    tune_once.tuning_groups(protocol, [{"method": "c", "shots": 1, "seed": 5}],
                            lambda bases: ["g"] * len(bases))
  with pytest.raises(ConfigError, match="no run at the tuning cell"):
    tune_once.tuning_groups(protocol, [{"method": "a", "shots": 2, "seed": 5}],
                            lambda bases: ["g"] * len(bases))
  with pytest.raises(ConfigError, match="SEARCH is not"):
    tune_once.read_protocol(_Module(TUNE={}))


@pytest.fixture
def tuned_sweep(tmp_path, data_dir, monkeypatch):
  monkeypatch.setenv("LOWRES_TEST_DATA_DIR", data_dir)
  monkeypatch.setenv("LOWRES_TEST_CACHE_DIR", str(tmp_path / "cache"))
  module = sweep.load_ablation(TINY_TUNED)
  workdir = tmp_path / "sweep"
  record = sweep.run_sweep(module, TINY_TUNED, str(workdir), show_progress=False)
  return module, workdir, record


def test_tuned_sweep_picks_on_validation_grows_edges_and_tests_on_fresh_seeds(tuned_sweep):
  module, workdir, record = tuned_sweep
  runs = record["runs"]
  tuning = [r for r in runs if r["phase"] == "tune"]
  table = [r for r in runs if r["phase"] == "eval"]
  assert {r["overrides"]["seed"] for r in tuning} == {10, 11}
  assert {r["overrides"]["seed"] for r in table} == {0, 1}
  assert all(r["overrides"]["data.shots"] == 2 for r in tuning)
  assert len(table) == 8  # 2 methods x 2 shots x 2 seeds, each at its method's pick.
  for group in {r["tuning_group"] for r in tuning}:
    mine = [r for r in tuning if r["tuning_group"] == group]
    settings = sorted({r["overrides"]["optim.lr"] for r in mine})
    means = {lr: sum(json.loads((workdir / r["name"] / "summary.json").read_text())[
        "val/accuracy"] for r in mine if r["overrides"]["optim.lr"] == lr) / 2 for lr in settings}
    best = max(sorted(means), key=lambda lr: means[lr])  # First of equal means, as the report.
    picked = {r["overrides"]["optim.lr"] for r in table if r["tuning_group"] == group}
    assert picked == {best}
    # Two values were searched first; one extension (TUNE) is taken whenever the pick of
    # those two was an edge, which with two values it always is.
    assert len(settings) == 3
  again = sweep.run_sweep(module, TINY_TUNED, str(workdir), show_progress=False)
  assert again["runs_trained"] == 0 and again["runs_skipped_finished"] == len(runs)


def test_report_is_a_pure_function_of_the_records(tuned_sweep, tmp_path):
  _, workdir, _ = tuned_sweep
  paths = report.write_sweep_report(str(workdir), str(tmp_path / "out" / "table"))
  first = {k: open(paths[k]).read() for k in ("markdown", "csv")}
  rows, meta = records.read_runs(paths["runs"])
  assert {r["phase"] for r in rows} == {"tune", "eval"}
  assert all("code_commit" in r and "timing/wall_s" in r for r in rows)
  again = report.report_from_runs(paths["runs"], str(tmp_path / "again" / "table"))
  assert {k: open(again[k]).read() for k in ("markdown", "csv")} == first
  assert "## Tuning" in first["markdown"] and "Protocol: tune once" in first["markdown"]
  # A mean in the table is the mean of its rows in the records.
  table = records.table_records(rows)
  scratch = [r["test/accuracy"] for r in table if r["method"] == "scratch" and r["shots"] == 5]
  assert f"{100 * sum(scratch) / len(scratch):.1f} ±" in first["markdown"]


def test_records_round_trip_values_exactly(tmp_path):
  rows = [records.row("eval", "r", {"optim.lr": 3e-05, "freeze": "^(?!head/)"},
                      {"dataset": "d", "method": "m", "shots": 1, "seed": 0,
                       "val/accuracy": 0.1 + 0.2, "classes": [1, 2], "diverged_at_step": None},
                      setting="")]
  path = str(tmp_path / "t.runs.csv")
  records.write_runs(path, rows, {"title": "t"})
  back, meta = records.read_runs(path)
  assert meta == {"title": "t"}
  assert back[0]["val/accuracy"] == 0.1 + 0.2 and back[0]["classes"] == [1, 2]
  assert back[0]["set:freeze"] == "^(?!head/)" and back[0]["setting"] == ""
  assert back[0]["diverged_at_step"] is None
