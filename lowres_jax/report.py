"""Tables for humans: one finished run's summary, and paper-style tables for a sweep.

Sweep reporting (``write_report``) turns finished-run records into a Markdown
table, a CSV and a plot. Two rules keep the numbers honest:

* Hyperparameters are chosen per (dataset, method, shots) cell on the
  validation metric only (``select_settings``); test numbers are read only
  after the choice is made, so they cannot leak into it.
* Every mean comes with a 95% Student-t interval over seeds, and methods are
  compared with the baseline by a paired-by-seed difference and t-test
  (``lowres_jax.eval.stats``), with the number of seeds shown next to it.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

from lowres_jax import failpoints, storage
from lowres_jax.eval.stats import MeanCI, format_mean_ci, mean_ci, paired_difference

SPLITS = ("val", "test")
HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "ece", "loss")


def format_run_table(summary: dict, workdir: str) -> str:
  """A small Markdown table of one run's final metrics per split."""
  lines = [
      f"{summary['method']} on {summary['dataset']} classes {summary['classes']}, "
      f"{summary['shots']} shots/class, seed {summary['seed']}, {summary['steps']} steps "
      f"({workdir})",
      "",
      "| split | examples | " + " | ".join(HEADLINE_METRICS) + " |",
      "|---|---|" + "---|" * len(HEADLINE_METRICS),
  ]
  for split in SPLITS:
    if f"{split}/accuracy" not in summary:
      continue
    values = " | ".join(f"{summary[f'{split}/{m}']:.4f}" for m in HEADLINE_METRICS)
    lines.append(f"| {split} | {summary[f'{split}/num_examples']} | {values} |")
  wall = summary.get("timing/wall_s")
  if wall is not None:
    lines.append("")
    speed = summary["timing/train_examples_per_s"]
    lines.append(f"wall {wall:.1f} s, compile {summary['timing/compile_s']:.1f} s, "
                 + (f"{speed:.0f} train examples/s" if math.isfinite(speed)
                    else "no training step (nothing to train)"))
  return "\n".join(lines)


# ---------------------------------------------------------------------------
# Sweep tables.
# ---------------------------------------------------------------------------

Record = dict[str, Any]
Cell = tuple[str, str, int]  # (dataset, method, shots)

CONFIDENCE = 0.95
SELECTION_METRIC = "val/accuracy"
TABLE_METRIC = "test/accuracy"
# Metrics that are fractions in [0, 1]; tables and plots show them in percent.
PERCENT_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "ece", "many_accuracy",
                   "medium_accuracy", "few_accuracy")
_CELL_KEYS = ("dataset", "method", "shots", "seed", "setting")
_ROW_FIELDS = ("dataset", "method", "shots", "setting", "edge", "pretrained_models", "n_seeds",
               "mean", "half_width", "baseline", "n_pairs", "diff_mean", "diff_half_width", "p_value", "significant")


def _cell(record: Record) -> Cell:
  """The (dataset, method, shots) cell a run belongs to; names the missing keys if any."""
  missing = [key for key in _CELL_KEYS if key not in record]
  if missing:
    raise ValueError(f"run record lacks required keys {missing}: {record}")
  return (str(record["dataset"]), str(record["method"]), int(record["shots"]))


def _metric_value(record: Record, metric: str) -> float:
  """One finite metric value of a run, or a ValueError saying which run lacks it."""
  if metric not in record:
    raise ValueError(f"run {_describe(record)} has no metric {metric!r}")
  value = float(record[metric])
  if not math.isfinite(value):
    raise ValueError(f"run {_describe(record)} has non-finite {metric!r} = {value}")
  return value


def _describe(record: Record) -> str:
  """Short identification of a run for error messages."""
  return ", ".join(f"{key}={record.get(key)!r}" for key in _CELL_KEYS)


def _group_by_cell_and_setting(records: Iterable[Record]) -> dict[Cell, dict[str, list[Record]]]:
  """cell -> setting -> runs, keeping first-appearance order; rejects a seed run twice."""
  groups: dict[Cell, dict[str, list[Record]]] = {}
  for record in records:
    runs = groups.setdefault(_cell(record), {}).setdefault(str(record["setting"]), [])
    if any(run["seed"] == record["seed"] for run in runs):
      # A duplicated seed would be double-counted in the mean and break pairing by seed.
      raise ValueError(f"duplicate run (same cell, setting and seed): {_describe(record)}")
    runs.append(record)
  return groups


def select_settings(records: Iterable[Record],
                    selection_metric: str = SELECTION_METRIC) -> dict[Cell, str]:
  """Per (dataset, method, shots) cell, the setting with the highest mean selection metric over seeds.

  Only ``selection_metric`` (validation by default) is read: test metrics never
  influence the choice, otherwise the reported test numbers would be optimistically
  biased by tuning on the test set. A ``test/`` metric is therefore refused.
  Ties go to the lexicographically first setting, so the choice is deterministic
  and independent of record order. Each setting is scored on the seeds it has.
  A setting with any diverged seed (NaN loss) is not eligible: a rate that only
  works for lucky seeds is not a rate one can recommend. A cell whose every
  setting diverged has no selection and no row.
  """
  if selection_metric.startswith("test/"):
    raise ValueError(f"hyperparameters must not be selected on a test metric: {selection_metric!r}")
  # Lower is better for losses and calibration error; higher for everything else.
  sign = -1.0 if selection_metric.split("/")[-1] in ("loss", "ece") else 1.0
  selected: dict[Cell, str] = {}
  for cell, by_setting in _group_by_cell_and_setting(records).items():
    best_setting, best_mean = None, -math.inf
    if len(by_setting) == 1:  # Nothing to choose: such runs may have no validation split.
      (setting, runs), = by_setting.items()
      if not any(is_diverged(run) for run in runs):
        selected[cell] = setting
      continue
    for setting in sorted(by_setting):  # Strict '>' keeps the first of equal means.
      runs = by_setting[setting]
      if any(is_diverged(run) for run in runs):
        continue
      mean = sign * sum(_metric_value(run, selection_metric) for run in runs) / len(runs)
      if best_setting is None or mean > best_mean:
        best_setting, best_mean = setting, mean
    if best_setting is not None:
      selected[cell] = best_setting
  return selected


def is_diverged(record: Record) -> bool:
  """Whether the run stopped improving on a NaN/inf loss (it then has no metrics)."""
  return record.get("diverged_at_step") is not None


def selected_records(records: Iterable[Record],
                     selection_metric: str = SELECTION_METRIC) -> list[Record]:
  """The runs at each cell's selected setting (see ``select_settings``), in input order."""
  records = list(records)
  choice = select_settings(records, selection_metric)
  return [record for record in records if str(record["setting"]) == choice.get(_cell(record))]


def _values_by_seed(runs: Iterable[Record], metric: str) -> dict[Any, float]:
  """seed -> metric value for the runs of one cell at one setting."""
  return {run["seed"]: _metric_value(run, metric) for run in runs}


def _paired_fields(values: dict[Any, float], baseline_values: dict[Any, float]) -> dict:
  """Paired-by-seed difference (method - baseline) on the seeds both have; None when < 2 pairs."""
  seeds = sorted(set(values) & set(baseline_values))
  fields = {"n_pairs": len(seeds), "diff_mean": None, "diff_half_width": None,
            "p_value": None, "significant": None}
  if len(seeds) < 2:
    return fields
  diff = paired_difference([values[s] for s in seeds], [baseline_values[s] for s in seeds],
                           confidence=CONFIDENCE)
  fields.update(diff_mean=diff.mean_diff, diff_half_width=diff.half_width,
                p_value=diff.p_value, significant=diff.significant)
  return fields


def _ordered_cells(cells: Iterable[Cell]) -> list[Cell]:
  """Datasets and methods in first-appearance order, shots ascending within each."""
  cells = list(cells)
  dataset_rank = {d: i for i, d in reversed(list(enumerate(c[0] for c in cells)))}
  method_rank = {m: i for i, m in reversed(list(enumerate(c[1] for c in cells)))}
  return sorted(cells, key=lambda c: (dataset_rank[c[0]], method_rank[c[1]], c[2]))


def _setting_values(setting: str) -> dict[str, str]:
  """'optim.lr=0.01,head_l2=0.001' -> {'optim.lr': '0.01', 'head_l2': '0.001'}."""
  return dict(part.split("=", 1) for part in setting.split(",") if "=" in part)


def edge_keys(settings: Iterable[str], chosen: str) -> list[str]:
  """The tuned keys whose chosen value is the smallest or largest of a numeric grid of 2+
  values: the optimum may lie beyond the grid, which should then be widened."""
  grids: dict[str, set[float]] = {}
  for setting in settings:
    for key, value in _setting_values(setting).items():
      try:
        grids.setdefault(key, set()).add(float(value))
      except ValueError:
        grids.setdefault(key, set())  # Not numeric: no edge to speak of.
  edges = []
  for key, value in _setting_values(chosen).items():
    grid = grids.get(key, set())
    try:
      number = float(value)
    except ValueError:
      continue
    if len(grid) >= 2 and number in (min(grid), max(grid)):
      edges.append(key)
  return edges


def _pretrained_models(runs: Sequence[Record]) -> int | None:
  """How many distinct pretrained models (summary key ``pretrained``) the runs start from;
  None for runs from scratch and for records written before summaries named it."""
  names = {run.get("pretrained") or _init_identity(run.get("init")) for run in runs}
  return None if None in names or names == {"scratch"} else len(names)


def _init_identity(init: Any) -> str | None:
  """The pretrained model of a summary written before ``pretrained`` was recorded, where its
  ``init`` names it alone (a checkpoint or workdir path; scratch); a source model's identity
  is its config's hash, which such summaries lack."""
  if not isinstance(init, dict) or init.get("kind") == "source":
    return None
  return f"{init['kind']}:{init['path']}" if init.get("path") else init.get("kind")


def _pretraining_note(rows: Sequence[dict]) -> list[str]:
  """Whether the seeds of each cell sample pretraining too, or share one pretrained model."""
  known = [row for row in rows if row.get("pretrained_models") is not None
           and row["n_seeds"] > 1]
  if not known:
    return []
  shared = sorted({row["method"] for row in known if row["pretrained_models"] == 1})
  own = sorted({row["method"] for row in known if row["pretrained_models"] > 1})
  lines = []
  if shared:
    lines.append(f"Pretrained models: one serves every seed of each cell for {', '.join(shared)}"
                 " (their intervals cover the k-shot draw and training noise, not pretraining "
                 "variance).")
  if own:
    lines.append(f"Pretrained models: one per seed for {', '.join(own)}.")
  return ["", " ".join(lines)]


def build_table(records: Iterable[Record], metric: str = TABLE_METRIC, baseline: str | None = None,
                selection_metric: str = SELECTION_METRIC) -> list[dict]:
  """One row per (dataset, method, shots) cell at its selected setting: mean, 95% t half-width, seeds.

  With a ``baseline`` method, every other row also gets the paired difference
  (row - baseline) against the baseline's runs of the same dataset and shots at
  the baseline's own selected setting, paired on the seeds both have
  (``n_pairs``); with fewer than 2 pairs the difference fields are None.
  Every row has the same keys (None where not applicable) so it tabulates as is.
  """
  records = list(records)
  groups = _group_by_cell_and_setting(records)
  choice = select_settings(records, selection_metric)
  if baseline is not None and baseline not in {method for _, method, _ in choice}:
    raise ValueError(f"baseline method {baseline!r} has no runs; methods: "
                     f"{sorted({method for _, method, _ in choice})}")
  rows = []
  for cell in _ordered_cells(choice):
    dataset, method, shots = cell
    values = _values_by_seed(groups[cell][choice[cell]], metric)
    ci = mean_ci(list(values.values()), confidence=CONFIDENCE)
    row = {"dataset": dataset, "method": method, "shots": shots, "setting": choice[cell],
           "edge": ",".join(edge_keys(groups[cell], choice[cell])),
           "pretrained_models": _pretrained_models(groups[cell][choice[cell]]), "n_seeds": ci.n, "mean": ci.mean,
           "half_width": ci.half_width if ci.n >= 2 else None, "baseline": baseline}
    if baseline is not None and method != baseline:
      baseline_cell = (dataset, baseline, shots)
      baseline_values = (_values_by_seed(groups[baseline_cell][choice[baseline_cell]], metric)
                         if baseline_cell in choice else {})
      row.update(_paired_fields(values, baseline_values))
    rows.append({key: row.get(key) for key in _ROW_FIELDS})
  return rows


def _metric_scale(metric: str) -> tuple[float, int, str]:
  """(scale, decimals, unit) for display: fractions as percent with 1 decimal, others raw."""
  if metric.split("/")[-1] in PERCENT_METRICS:
    return 100.0, 1, "%"
  return 1.0, 3, ""


def _metric_label(metric: str) -> str:
  """Axis/legend name for a metric key, e.g. 'test/balanced_accuracy' -> 'test balanced accuracy (%)'."""
  _, _, unit = _metric_scale(metric)
  name = metric.replace("/", " ").replace("_", " ")
  return f"{name} ({unit})" if unit else name


def _format_cell(row: dict, metric: str) -> str:
  """'93.4 ± 1.2 (n=5)', plus '; Δ +3.1 ± 1.0*' against the baseline where there is one."""
  scale, digits, _ = _metric_scale(metric)
  half = row["half_width"] if row["half_width"] is not None else math.nan
  ci = MeanCI(mean=row["mean"], half_width=half, n=row["n_seeds"],
              low=row["mean"] - half, high=row["mean"] + half)
  text = f"{format_mean_ci(ci, scale=scale, digits=digits)} (n={row['n_seeds']})"
  if row["baseline"] is None or row["method"] == row["baseline"]:
    return text
  if row["diff_mean"] is None:
    return f"{text}; Δ n/a ({row['n_pairs']} paired seeds)"
  star = "*" if row["significant"] else ""
  delta = f"Δ {row['diff_mean'] * scale:+.{digits}f} ± {row['diff_half_width'] * scale:.{digits}f}{star}"
  if row["n_pairs"] != row["n_seeds"]:
    delta += f" ({row['n_pairs']} pairs)"
  return f"{text}; {delta}"


def _escape(text: str) -> str:
  """Make text safe inside a Markdown table cell."""
  return text.replace("|", "\\|")


def _method_order(rows: Sequence[dict]) -> list[str]:
  """Baseline first, then the other methods in order of first appearance."""
  methods = list(dict.fromkeys(row["method"] for row in rows))
  baseline = rows[0]["baseline"] if rows else None
  if baseline in methods:
    methods.remove(baseline)
    methods.insert(0, baseline)
  return methods


# A table's column axis: the record key whose values head the columns (``shots`` unless an
# ablation sets ``COLUMN``), how a column is headed, and the plot's x label.
COLUMN_AXES = {"shots": ("{}-shot", "shots per class"),
               "budget": ("{} labels", "labels in all (budget)"),
               "imbalance": ("ratio {}", "imbalance ratio (head / tail class)")}


def _markdown_grid(rows: Sequence[dict], corner: str, render, column: str = "shots"
                   ) -> list[str]:
  """A methods x columns Markdown table whose cells are ``render(row)`` ('—' for a missing
  cell)."""
  shots = sorted({row["shots"] for row in rows})
  by_key = {(row["method"], row["shots"]): row for row in rows}
  heading = COLUMN_AXES[column][0]
  lines = ["| " + " | ".join([corner] + [heading.format(k) for k in shots]) + " |",
           "|---" * (len(shots) + 1) + "|"]
  for method in _method_order(rows):
    cells = [_escape(render(by_key[method, k])) if (method, k) in by_key else "—" for k in shots]
    lines.append("| " + " | ".join([_escape(method)] + cells) + " |")
  return lines


def _legend(metric: str, baseline: str | None) -> str:
  """One line explaining the notation used in the table cells."""
  _, _, unit = _metric_scale(metric)
  unit_text = " in percent" if unit == "%" else ""
  text = (f"`{metric}`{unit_text}: mean ± half-width of the {CONFIDENCE:.0%} Student-t confidence "
          f"interval over seeds; n = number of seeds.")
  if baseline is not None:
    text += (f" Δ = mean paired-by-seed difference to `{baseline}` ± its {CONFIDENCE:.0%} half-width"
             f"{' (percentage points)' if unit == '%' else ''}; * = paired t-test p < "
             f"{1 - CONFIDENCE:.2g}. Hyperparameters were selected on validation only.")
  else:
    text += " Hyperparameters were selected on validation only."
  return text


def format_markdown(rows: Sequence[dict], metric: str, command: str, title: str,
                    notes: str = "", column: str = "shots", provenance: str = "") -> str:
  """Markdown report: title, the producing command, then per dataset a results and a settings table.

  Results: rows = methods (baseline first), columns = shots ascending. The
  second table shows the hyperparameter setting selected for each cell, so a
  reader sees what was tuned.
  """
  baseline = rows[0]["baseline"] if rows else None
  lines = [f"# {title}", "", "Produced by:", "", "```", command, "```", ""]
  if provenance:  # Which code and day made the numbers, and the tuning protocol.
    lines += [provenance.strip(), ""]
  lines.append(_legend(metric, baseline))
  if notes:  # The ablation's NOTES: what its author read in these tables, in words.
    lines += ["", "## Notes", "", notes.strip()]
  for dataset in dict.fromkeys(row["dataset"] for row in rows):
    dataset_rows = [row for row in rows if row["dataset"] == dataset]
    lines += ["", f"## {dataset}", ""]
    lines += _markdown_grid(dataset_rows, "method", lambda row: _format_cell(row, metric),
                            column)
    lines += ["", f"Selected setting per cell ({dataset}):", ""]
    lines += _markdown_grid(dataset_rows, "method", _format_setting, column)
    lines += _pretraining_note(dataset_rows)
    edges = [row for row in dataset_rows if row.get("edge")]
    if edges:
      lines += ["", f"Edge of the grid (^): {len(edges)} of {len(dataset_rows)} cells selected "
                "the smallest or largest value of a tuned key; the best value may lie outside "
                "the grid, which these cells should widen."]
  return "\n".join(lines) + "\n"


def _format_setting(row: dict) -> str:
  if not row["setting"]:
    return "(no grid)"
  edges = set((row.get("edge") or "").split(","))
  return ", ".join(f"`{key}={value}`" + (" ^" if key in edges else "")
                   for key, value in _setting_values(row["setting"]).items())


def _ensure_parent(path: str) -> None:
  """Create the directory a file will be written into."""
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)


def write_csv(rows: Sequence[dict], path: str) -> None:
  """One line per row, a header of all row fields (first-appearance order), None as empty."""
  fields = list(dict.fromkeys(key for row in rows for key in row))
  _ensure_parent(path)
  with storage.replacing(path, newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields, restval="")
    writer.writeheader()
    for row in rows:
      writer.writerow({key: "" if value is None else value for key, value in row.items()})


def plot_accuracy_vs_shots(rows: Sequence[dict], path: str, metric: str = TABLE_METRIC,
                           column: str = "shots") -> None:
  """PNG with one panel per dataset: mean metric vs shots per class, 95% CI error bars, one line per method."""
  # Lazy import and an explicit Agg canvas: no display needed, and no global pyplot state touched.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  from matplotlib.ticker import NullFormatter, ScalarFormatter

  scale, _, _ = _metric_scale(metric)
  datasets = list(dict.fromkeys(row["dataset"] for row in rows))
  methods = _method_order(rows)
  fig = Figure(figsize=(4.5 * max(len(datasets), 1), 3.6), layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, max(len(datasets), 1), squeeze=False)[0]
  for ax, dataset in zip(axes, datasets):
    for color_index, method in enumerate(methods):
      points = sorted((row["shots"], row) for row in rows
                      if row["dataset"] == dataset and row["method"] == method)
      if not points:
        continue
      shots = [k for k, _ in points]
      means = [row["mean"] * scale for _, row in points]
      errors = [(row["half_width"] or 0.0) * scale for _, row in points]
      ax.errorbar(shots, means, yerr=errors, marker="o", capsize=3, label=method,
                  color=f"C{color_index % 10}")
    all_shots = sorted({row["shots"] for row in rows if row["dataset"] == dataset})
    if all_shots and all_shots[0] > 0:
      ax.set_xscale("log")
      ax.set_xticks(all_shots)
      ax.xaxis.set_major_formatter(ScalarFormatter())
      ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_title(dataset)
    ax.set_xlabel(COLUMN_AXES[column][1])
    ax.set_ylabel(_metric_label(metric))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
  _ensure_parent(path)
  with storage.replacing(path, "wb") as f:
    fig.savefig(f, format="png", dpi=150)


def write_report(records: Iterable[Record], out_prefix: str, command: str, title: str,
                 baseline: str | None, metric: str = TABLE_METRIC,
                 notes: str = "", column: str = "shots", provenance: str = "",
                 appendix: str = "") -> dict[str, str]:
  """Write <out_prefix>.md, .csv and .png for a sweep; returns their paths by kind.

  ``column``: the record key of the column axis (COLUMN_AXES); its values stand in the
  records' ``shots`` place (label budgets, imbalance ratios). ``provenance`` goes under the
  command, ``appendix`` (the tuning tables of a tune-once sweep) at the end."""
  if column not in COLUMN_AXES:
    raise ValueError(f"column {column!r} is unknown; known: {sorted(COLUMN_AXES)}")
  records = [record if column == "shots" else {**record, "shots": record[column]}
             for record in records]
  rows = build_table(records, metric=metric, baseline=baseline)
  paths = {"markdown": f"{out_prefix}.md", "csv": f"{out_prefix}.csv", "plot": f"{out_prefix}.png"}
  _ensure_parent(paths["markdown"])
  storage.write_text(paths["markdown"], format_markdown(rows, metric, command, title, notes,
                                                       column, provenance)
                     + _leaders_section(records, metric, column)
                     + _comparison_count(rows, records, metric)
                     + _split_sizes(records, column) + _divergence_note(records) + appendix)
  failpoints.hit("report.write")  # The chaos test kills here: a report half rewritten.
  write_csv(rows, paths["csv"])
  plot_accuracy_vs_shots(rows, paths["plot"], metric, column)
  return paths


def leaders(records: Sequence[Record], metric: str = TABLE_METRIC) -> list[dict]:
  """Per (dataset, shots): the method with the best mean at its selected setting, and its
  paired-by-seed difference to the runner-up, so "X wins at k" is a tested statement."""
  records = list(records)
  groups = _group_by_cell_and_setting(records)
  choice = select_settings(records)
  by_column: dict[tuple[str, int], list[tuple[float, str, dict]]] = {}
  for (dataset, method, shots), setting in choice.items():
    values = _values_by_seed(groups[(dataset, method, shots)][setting], metric)
    mean = sum(values.values()) / len(values)
    by_column.setdefault((dataset, shots), []).append((mean, method, values))
  result = []
  for (dataset, shots), entries in sorted(by_column.items()):
    if len(entries) < 2:
      continue
    (best_mean, best, best_values), (second_mean, second, second_values) = sorted(
        entries, key=lambda e: -e[0])[:2]
    result.append({"dataset": dataset, "shots": shots, "best": best, "best_mean": best_mean,
                   "runner_up": second, "runner_up_mean": second_mean,
                   **_paired_fields(best_values, second_values)})
  return result


def _leaders_section(records: Sequence[Record], metric: str, column: str = "shots") -> str:
  rows = leaders(records, metric)
  if not rows:
    return ""
  scale, digits, _ = _metric_scale(metric)
  lines = ["", "## Best method per column", "",
           "The highest mean at its selected setting, and its paired-by-seed difference to "
           "the runner-up (95% half-width; * = p < 0.05, otherwise not significant).", ""]
  for row in rows:
    gap = ("" if row["diff_mean"] is None else
           f" by {row['diff_mean'] * scale:+.{digits}f} ± {row['diff_half_width'] * scale:.{digits}f}"
           f"{'*' if row['significant'] else ' (n.s.)'}")
    heading = COLUMN_AXES[column][0].format(row["shots"])
    lines.append(f"- {row['dataset']}, {heading}: **{row['best']}** "
                 f"{row['best_mean'] * scale:.{digits}f}, ahead of {row['runner_up']} "
                 f"{row['runner_up_mean'] * scale:.{digits}f}{gap}")
  return "\n".join(lines) + "\n"


def _comparison_count(rows: Sequence[dict], records: Sequence[Record], metric: str) -> str:
  """How many paired tests the table holds: at p < 0.05 about one in twenty true nulls reads
  as significant, so a reader needs the count (no correction is applied)."""
  tests = sum(row["diff_mean"] is not None for row in rows)
  tests += sum(row["diff_mean"] is not None for row in leaders(records, metric))
  if not tests:
    return ""
  return (f"\nThis table holds {tests} paired tests (Δ cells and best-vs-runner-up lines), "
          "none corrected for multiple comparisons.\n")


def report_from_runs(runs_path: str, out_prefix: str) -> dict[str, str]:
  """The table, CSV and plot of ``runs_path`` (records.write_runs) and its description: a
  pure function of those two files, so a committed table can be regenerated byte for byte."""
  from lowres_jax import records as records_lib
  from lowres_jax import tuning_report
  rows, meta = records_lib.read_runs(runs_path)
  table = records_lib.table_records(rows)
  trained = sorted({str(r["code_commit"]) for r in rows if r.get("code_commit")})
  provenance = (f"Runs trained with code at commit {', '.join(f'`{c}`' for c in trained) or 'unrecorded'}"
                f"; table written with code at commit `{meta.get('commit') or 'unknown'}` on "
                f"{meta.get('date') or 'an unrecorded day'}; per-run records: "
                f"`{os.path.basename(runs_path)}` (regenerate this file with `python -m "
                f"lowres_jax.report --runs {runs_path} {runs_path.removesuffix('.runs.csv')}`).")
  # No wall-time sum here: a resumed sweep must give the same table as an uninterrupted one.
  protocol = meta.get("protocol")
  if protocol:
    provenance += "\n\n" + tuning_report.protocol_text(protocol, table)
  return write_report(table, out_prefix, command=meta.get("command", ""),
                      title=meta.get("title", ""), baseline=meta.get("baseline"),
                      metric=meta.get("metric", TABLE_METRIC), notes=meta.get("notes") or "",
                      column=meta.get("column", "shots"), provenance=provenance,
                      appendix=tuning_report.tuning_section(rows) if protocol else "")


def write_sweep_report(workdir: str, out_prefix: str | None = None, command: str = "",
                       metric: str | None = None) -> dict:
  """Writes the per-run records (PREFIX.runs.csv/.json) of a sweep directory, then the table,
  CSV and plot from those records alone (to ``out_prefix`` or DIR/report); ``metric``
  replaces the ablation's table metric."""
  from lowres_jax import records as records_lib
  from lowres_jax import sweep_dir
  from lowres_jax.user_error import MissingInputError
  sweep, rows = sweep_dir.collect_records(workdir)
  if not records_lib.table_records(rows):
    raise MissingInputError(f"no finished runs in {workdir} to report")
  prefix = out_prefix or os.path.join(workdir, "report")
  meta = {key: sweep.get(key) for key in ("title", "baseline", "notes", "column", "config",
                                          "protocol", "commit")}
  own_metric = sweep.get("metric", "test/accuracy")
  meta.update({"command": command or sweep.get("command", ""),
               "metric": metric or own_metric, "date": records_lib.today()})
  if metric and metric != own_metric:  # The ablation's title and notes describe its metric.
    title = (sweep.get("title") or "Sweep").split(" (")[0]
    meta["title"] = f"{title}: {metric} of the same runs"
    meta["notes"] = (f"- The runs of the ablation's own table ({own_metric}), tabled by "
                     f"{metric}; what they show is written in that table's notes.")
  runs_path = prefix + ".runs.csv"
  records_lib.write_runs(runs_path, rows, meta)
  return {**report_from_runs(runs_path, prefix), "runs": runs_path}


def _split_sizes(records: Sequence[Record], column: str = "shots") -> str:
  """Which examples the numbers rest on: classes, and train / val / test sizes per run."""
  lines = ["", "## Split sizes", ""]
  for dataset in dict.fromkeys(r["dataset"] for r in records):
    runs = [r for r in records if r["dataset"] == dataset and "num_train" in r]
    if not runs:
      continue
    train = ", ".join(f"{COLUMN_AXES[column][0].format(shots)}: {n}" for shots, n in sorted(
        {(r["shots"], r["num_train"]) for r in runs}))
    vals = sorted({r["num_val"] for r in runs})
    tests = sorted({r["num_test"] for r in runs})
    lines.append(f"- {dataset}, classes {runs[0].get('classes')}: train examples per run "
                 f"({train}); validation {', '.join(map(str, vals))} per run, drawn with the "
                 f"seed; test {', '.join(map(str, tests))}, the same for every run.")
  return "\n".join(lines) + "\n" if len(lines) > 3 else ""


def _divergence_note(records: Sequence[Record]) -> str:
  diverged = [r for r in records if is_diverged(r)]
  if not diverged:
    return ""
  lines = [f"\n{len(diverged)} of {len(records)} runs diverged (non-finite training loss) "
           "and made their setting ineligible for selection:\n"]
  lines += [f"- {r.get('run', _describe(r))} at step {r['diverged_at_step']}" for r in diverged]
  return "\n".join(lines) + "\n"


def _cli() -> None:
  """python -m lowres_jax.report SWEEP_DIR [OUT_PREFIX [METRIC]]
     python -m lowres_jax.report --runs PREFIX.runs.csv PREFIX

The second form rewrites a table from its per-run records alone.

  METRIC tables another test metric of the same runs (e.g. test/few_accuracy of a long-tail
  sweep) than the one its ablation names."""
  import shlex
  import sys

  if len(sys.argv) == 4 and sys.argv[1] == "--runs":
    paths = report_from_runs(sys.argv[2], sys.argv[3])
    print("report: " + ", ".join(paths.values()))
    return
  if len(sys.argv) not in (2, 3, 4):
    sys.exit("usage: python -m lowres_jax.report SWEEP_DIR [OUT_PREFIX [METRIC]]")
  command = " ".join(shlex.quote(a) for a in ["python", "-m", "lowres_jax.report", *sys.argv[1:]])
  paths = write_sweep_report(sys.argv[1], sys.argv[2] if len(sys.argv) >= 3 else None, command,
                             metric=sys.argv[3] if len(sys.argv) == 4 else None)
  print("report: " + ", ".join(paths.values()))


if __name__ == "__main__":
  from lowres_jax import errors
  errors.run_with_clear_errors(_cli)
