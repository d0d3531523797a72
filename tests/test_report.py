"""Tests for the sweep tables in lowres_jax.report, on hand-made run records (no training)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy import stats as sps

from lowres_jax.report import (
    build_table,
    format_markdown,
    plot_accuracy_vs_shots,
    select_settings,
    selected_records,
    write_csv,
    write_report,
)

COMMAND = "python -m lowres_jax.sweep --config=configs/sweep.py --out=reports/ablation"
TITLE = "Few-shot ablation"


def _run(method: str, setting: str, shots: int, seed: int, val: float, test: float,
         dataset: str = "digits") -> dict:
  """One finished-run record as the sweep would produce it (plus an unrelated key to ignore)."""
  return {"method": method, "dataset": dataset, "shots": shots, "seed": seed, "setting": setting,
          "val/accuracy": val, "test/accuracy": test, "test/ece": 0.05, "workdir": f"/tmp/{seed}"}


def _tuning_records() -> list[dict]:
  """'finetune' at 5 shots: lr=0.1 is better on test, lr=0.01 is better on validation."""
  records = []
  for seed in range(4):
    records.append(_run("finetune", "optim.lr=0.1", 5, seed, val=0.70 + 0.01 * seed, test=0.95))
    records.append(_run("finetune", "optim.lr=0.01", 5, seed, val=0.80 + 0.01 * seed,
                        test=0.60 + 0.02 * seed))
  return records


def _comparison_records() -> list[dict]:
  """Baseline plus a clearly better and a noisy, not-better method, seeds 0-5, shots 1 and 10."""
  rng = np.random.default_rng(0)
  records = []
  for shots in (10, 1):  # Deliberately not ascending: tables must sort shots.
    base = 0.5 + 0.03 * rng.standard_normal(6)
    for seed in range(6):
      records.append(_run("linear_probe", "", shots, seed, val=0.5, test=float(base[seed])))
      records.append(_run("finetune", "optim.lr=0.01", shots, seed, val=0.6,
                          test=float(base[seed] + 0.05 + 0.005 * rng.standard_normal())))
      records.append(_run("noisy", "optim.lr=0.1", shots, seed, val=0.55,
                          test=float(base[seed] + 0.05 * rng.standard_normal())))
  return records


def _test_values(records: list[dict], method: str, shots: int, setting: str | None = None) -> dict:
  """seed -> test accuracy for one method/shots (optionally one setting)."""
  return {r["seed"]: r["test/accuracy"] for r in records
          if r["method"] == method and r["shots"] == shots
          and (setting is None or r["setting"] == setting)}


def _row(rows: list[dict], method: str, shots: int) -> dict:
  (row,) = [r for r in rows if r["method"] == method and r["shots"] == shots]
  return row


def _markdown_cell(markdown: str, method: str, shots: int) -> str:
  """The results-table cell for (method, shots) of the first dataset in a rendered report."""
  lines = markdown.splitlines()
  header_index = next(i for i, line in enumerate(lines) if line.startswith("| method |"))
  header = [c.strip() for c in lines[header_index].strip("|").split("|")]
  for line in lines[header_index + 2:]:
    cells = [c.strip() for c in line.strip("|").split("|")]
    if cells[0] == method:
      return cells[header.index(f"{shots}-shot")]
  raise AssertionError(f"no row for {method} in\n{markdown}")


def test_selection_uses_validation_not_test() -> None:
  records = _tuning_records()
  assert select_settings(records) == {("digits", "finetune", 5): "optim.lr=0.01"}
  chosen = selected_records(records)
  assert len(chosen) == 4 and {r["setting"] for r in chosen} == {"optim.lr=0.01"}
  (row,) = build_table(records)
  assert row["setting"] == "optim.lr=0.01"
  assert row["mean"] == pytest.approx(np.mean([0.60, 0.62, 0.64, 0.66]))
  # Selecting on the test metric would have been the other setting; it is refused outright.
  with pytest.raises(ValueError, match="test"):
    select_settings(records, selection_metric="test/accuracy")


def test_selection_tie_takes_lexicographically_first_setting_regardless_of_order() -> None:
  records = [_run("m", setting, 5, seed, val=0.5, test=test)
             for setting, test in (("lr=0.2", 0.9), ("lr=0.1", 0.1)) for seed in range(3)]
  assert select_settings(records) == {("digits", "m", 5): "lr=0.1"}
  assert select_settings(records[::-1]) == {("digits", "m", 5): "lr=0.1"}


def test_selection_is_per_cell_on_mean_over_seeds() -> None:
  # Seed 0 favours "b" by a lot once, but "a" has the higher mean; at 10 shots "b" wins.
  records = [_run("m", "a", 5, s, val=v, test=0.5) for s, v in enumerate([0.6, 0.6, 0.6])]
  records += [_run("m", "b", 5, s, val=v, test=0.5) for s, v in enumerate([0.9, 0.4, 0.4])]
  records += [_run("m", "a", 10, s, val=0.5, test=0.5) for s in range(3)]
  records += [_run("m", "b", 10, s, val=0.7, test=0.5) for s in range(3)]
  assert select_settings(records) == {("digits", "m", 5): "a", ("digits", "m", 10): "b"}


def test_half_width_matches_scipy_t_interval() -> None:
  records = _comparison_records()
  rows = build_table(records, baseline="linear_probe")
  for method in ("linear_probe", "finetune", "noisy"):
    for shots in (1, 10):
      values = np.array(list(_test_values(records, method, shots).values()))
      mean = values.mean()
      low, high = sps.t.interval(0.95, len(values) - 1, loc=mean, scale=sps.sem(values))
      row = _row(rows, method, shots)
      assert row["n_seeds"] == 6
      assert row["mean"] == pytest.approx(mean, abs=1e-12)
      assert row["half_width"] == pytest.approx(high - mean, rel=1e-9)


def test_paired_difference_matches_scipy_ttest_rel_on_common_seeds() -> None:
  records = _comparison_records()
  # Baseline lost seed 5 at 1 shot; the rest is shuffled so pairing by position would be wrong.
  records = [r for r in records if not (r["method"] == "linear_probe" and r["shots"] == 1
                                        and r["seed"] == 5)]
  records = [records[i] for i in np.random.default_rng(1).permutation(len(records))]
  rows = build_table(records, baseline="linear_probe")
  for method in ("finetune", "noisy"):
    for shots, seeds in ((1, range(5)), (10, range(6))):
      ours, base = _test_values(records, method, shots), _test_values(records, "linear_probe", shots)
      a = np.array([ours[s] for s in seeds])
      b = np.array([base[s] for s in seeds])
      row = _row(rows, method, shots)
      assert row["n_pairs"] == len(seeds)
      assert row["diff_mean"] == pytest.approx(float(np.mean(a - b)), abs=1e-12)
      assert row["p_value"] == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-7)
      assert row["significant"] == (sps.ttest_rel(a, b).pvalue < 0.05)
  baseline_row = _row(rows, "linear_probe", 10)
  assert baseline_row["diff_mean"] is None and baseline_row["p_value"] is None


def test_fewer_than_two_pairs_gives_none_not_error() -> None:
  records = [_run("base", "", 5, 0, 0.5, 0.5), _run("base", "", 5, 1, 0.5, 0.6),
             _run("new", "", 5, 1, 0.5, 0.7), _run("new", "", 5, 2, 0.5, 0.8),
             _run("new", "", 1, 0, 0.5, 0.8)]  # No baseline at 1 shot at all.
  rows = build_table(records, baseline="base")
  for shots, pairs in ((5, 1), (1, 0)):
    row = _row(rows, "new", shots)
    assert row["n_pairs"] == pairs
    assert row["diff_mean"] is None and row["diff_half_width"] is None
    assert row["p_value"] is None and row["significant"] is None
  assert _row(rows, "new", 1)["half_width"] is None  # A single seed has no interval.
  markdown = format_markdown(rows, "test/accuracy", COMMAND, TITLE)
  assert "Δ n/a" in _markdown_cell(markdown, "new", 5)


def test_unknown_baseline_is_an_error() -> None:
  with pytest.raises(ValueError, match="baseline"):
    build_table(_comparison_records(), baseline="linear-probe")


def test_significance_star_appears_exactly_when_p_below_005() -> None:
  rows = build_table(_comparison_records(), baseline="linear_probe")
  markdown = format_markdown(rows, "test/accuracy", COMMAND, TITLE)
  p_values = []
  for method in ("finetune", "noisy"):
    for shots in (1, 10):
      row = _row(rows, method, shots)
      cell = _markdown_cell(markdown, method, shots)
      p_values.append(row["p_value"])
      assert "Δ" in cell
      assert cell.endswith("*") == (row["p_value"] < 0.05), (cell, row["p_value"])
      assert cell.startswith(f"{row['mean'] * 100:.1f} ± {row['half_width'] * 100:.1f} (n=6)")
      assert f"Δ {row['diff_mean'] * 100:+.1f} ± {row['diff_half_width'] * 100:.1f}" in cell
  # The fixture must exercise both outcomes, or this test could not catch a wrong star.
  assert min(p_values) < 0.05 < max(p_values)
  baseline_cell = _markdown_cell(markdown, "linear_probe", 1)
  assert "Δ" not in baseline_cell and "*" not in baseline_cell


def test_markdown_layout_command_order_and_settings() -> None:
  records = _comparison_records() + [
      _run("finetune", "optim.lr=0.01", 5, 0, 0.6, 0.7, dataset="fashion_mnist")]
  rows = build_table(records, baseline="linear_probe")
  markdown = format_markdown(rows, "test/accuracy", COMMAND, TITLE)
  assert markdown.startswith(f"# {TITLE}\n")
  assert f"```\n{COMMAND}\n```" in markdown
  assert "## digits" in markdown and "## fashion_mnist" in markdown
  assert markdown.index("## digits") < markdown.index("## fashion_mnist")
  digits = markdown[:markdown.index("## fashion_mnist")]
  # Baseline first, then first-appearance order; shots ascending.
  assert digits.index("| linear_probe |") < digits.index("| finetune |") < digits.index("| noisy |")
  assert "| method | 1-shot | 10-shot |" in digits
  assert "`optim.lr=0.01`" in digits and "(no grid)" in digits
  assert "95%" in markdown and "p < 0.05" in markdown  # Legend.


def test_csv_round_trips_rows(tmp_path) -> None:
  rows = build_table(_comparison_records(), baseline="linear_probe")
  path = tmp_path / "sub" / "table.csv"
  write_csv(rows, str(path))
  with open(path, newline="") as f:
    read = list(csv.DictReader(f))
  assert len(read) == len(rows)
  assert list(read[0]) == list(rows[0])
  for original, loaded in zip(rows, read):
    assert loaded["method"] == original["method"] and int(loaded["shots"]) == original["shots"]
    assert math.isclose(float(loaded["mean"]), original["mean"], rel_tol=1e-12)


def test_plot_writes_png(tmp_path) -> None:
  rows = build_table(_comparison_records(), baseline="linear_probe")
  path = tmp_path / "plot.png"
  plot_accuracy_vs_shots(rows, str(path), "test/accuracy")
  data = path.read_bytes()
  assert len(data) > 1000 and data.startswith(b"\x89PNG")


def test_write_report_writes_all_three_files(tmp_path) -> None:
  prefix = tmp_path / "reports" / "nested" / "ablation"
  paths = write_report(_comparison_records(), str(prefix), COMMAND, TITLE, baseline="linear_probe")
  assert paths == {"markdown": f"{prefix}.md", "csv": f"{prefix}.csv", "plot": f"{prefix}.png"}
  for path in paths.values():
    with open(path, "rb") as f:
      assert f.read(1)
  with open(paths["markdown"]) as f:
    assert COMMAND in f.read()


def test_selection_on_a_loss_prefers_the_lowest():
  records = [
      {"dataset": "d", "method": "m", "shots": 1, "seed": seed, "setting": setting,
       "val/loss": loss, "test/accuracy": 0.5}
      for seed in range(2) for setting, loss in (("lr=1", 0.2), ("lr=2", 0.9))]
  assert select_settings(records, selection_metric="val/loss") == {("d", "m", 1): "lr=1"}


def test_leaders_name_the_best_mean_and_test_it_against_the_runner_up() -> None:
  from lowres_jax.report import leaders
  records = _comparison_records()
  for row in leaders(records):
    means = {m: np.mean(list(_test_values(records, m, row["shots"]).values()))
             for m in ("linear_probe", "finetune", "noisy")}
    ranked = sorted(means, key=means.get, reverse=True)
    assert [row["best"], row["runner_up"]] == ranked[:2]
    a = np.array(list(_test_values(records, ranked[0], row["shots"]).values()))
    b = np.array(list(_test_values(records, ranked[1], row["shots"]).values()))
    assert row["diff_mean"] == pytest.approx(float(np.mean(a - b)), abs=1e-12)
    assert row["p_value"] == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-7)
  assert [row["shots"] for row in leaders(records)] == [1, 10]


def test_a_selected_value_at_the_edge_of_its_grid_is_marked() -> None:
  from lowres_jax.report import edge_keys
  grid = ["optim.lr=0.01,head_l2=0.1", "optim.lr=0.03,head_l2=0.1", "optim.lr=0.1,head_l2=0.1"]
  assert edge_keys(grid, "optim.lr=0.01,head_l2=0.1") == ["optim.lr"]
  assert edge_keys(grid, "optim.lr=0.03,head_l2=0.1") == []  # One-value keys have no edge.
  assert edge_keys(grid, "optim.lr=0.1,head_l2=0.1") == ["optim.lr"]
  records = [_run("m", setting, 5, seed, val=val, test=0.5)
             for setting, val in (("optim.lr=0.01", 0.2), ("optim.lr=0.03", 0.9),
                                  ("optim.lr=0.1", 0.3)) for seed in range(2)]
  records += [_run("n", setting, 5, seed, val=val, test=0.5)
              for setting, val in (("optim.lr=0.01", 0.2), ("optim.lr=0.1", 0.9))
              for seed in range(2)]
  rows = build_table(records)
  assert {row["method"]: row["edge"] for row in rows} == {"m": "", "n": "optim.lr"}
  markdown = format_markdown(rows, "test/accuracy", COMMAND, TITLE)
  assert "`optim.lr=0.1` ^" in markdown and "`optim.lr=0.03` |" in markdown
  assert "1 of 2 cells selected the smallest or largest value" in markdown


def test_the_report_says_how_many_pretrained_models_the_seeds_cover() -> None:
  records = [{**_run("finetune", "", 5, seed, 0.5, 0.6), "pretrained": "source-digits-abc"}
             for seed in range(3)]
  records += [{**_run("per_seed", "", 5, seed, 0.5, 0.6), "pretrained": f"source-{seed}"}
              for seed in range(3)]
  records += [{**_run("scratch", "", 5, seed, 0.5, 0.6), "pretrained": "scratch"}
              for seed in range(3)]
  # Written before summaries named it: a checkpoint's path names the model, a source's not.
  records += [{**_run("older", "", 5, seed, 0.5, 0.6),
               "init": {"kind": "checkpoint", "path": "package:x"}} for seed in range(3)]
  records += [{**_run("older_source", "", 5, seed, 0.5, 0.6),
               "init": {"kind": "source", "path": ""}} for seed in range(3)]
  rows = build_table(records)
  assert {r["method"]: r["pretrained_models"] for r in rows} == {
      "finetune": 1, "per_seed": 3, "scratch": None, "older": 1, "older_source": None}
  markdown = format_markdown(rows, "test/accuracy", COMMAND, TITLE)
  assert "one serves every seed of each cell for finetune" in markdown
  assert "one per seed for per_seed" in markdown


def test_a_missing_sweep_or_records_is_one_clear_line(tmp_path) -> None:
  import subprocess
  import sys

  from conftest import REPO, cpu_env
  for args, says in ((["/nonexistent/sweep"], "no sweep directory at /nonexistent/sweep"),
                     ([str(tmp_path)], f"{tmp_path} holds no sweep.json"),
                     (["--runs", "/nonexistent/t.runs.csv", str(tmp_path / "t")],
                      "/nonexistent/t.runs.csv does not exist")):
    result = subprocess.run([sys.executable, "-m", "lowres_jax.report", *args], cwd=REPO,
                            env=cpu_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [f"lowres_jax: error: {says}" + (
        "; run lowres_jax.sweep into it first (--workdir)" if "no sweep directory" in says
        else "; run lowres_jax.sweep into it first" if "holds no" in says
        else "; a sweep writes it with --results=PREFIX")]
