"""The tuning half of a tune-once table: the protocol in words and what each method searched.

Pure functions of the per-run records (lowres_jax/records.py), like the rest of the report.
"""

from __future__ import annotations

from typing import Sequence

from lowres_jax import report
from lowres_jax.eval.stats import format_mean_ci, mean_ci


def protocol_text(protocol: dict, table: Sequence[dict]) -> str:
  """The header paragraph: where and on which seeds the settings were chosen."""
  cell = ", ".join(f"`{k}={v}`" for k, v in protocol["cell"].items())
  seeds = sorted({r["seed"] for r in table})
  tuned = ", ".join(f"{m} ({', '.join(spaces)})" for m, spaces in protocol["spaces"].items()
                    if spaces) or "none"
  return (f"Protocol: tune once, then test on fresh seeds. Each method searched its own space "
          f"at {cell} on tuning seeds {', '.join(map(str, protocol['seeds']))} with "
          f"{protocol['trials']} trials (methods and keys: {tuned}), chose on validation "
          f"accuracy, and a pick at an edge of a numeric space grew it one step outward, up "
          f"to {protocol['max_extensions']} times. Every cell below ran at its method's pick "
          f"on evaluation seeds {', '.join(map(str, seeds))}, disjoint from the tuning seeds. "
          "Test data chose nothing. The tuning tables are at the end.")


def tuning_section(rows: Sequence[dict]) -> str:
  """Per tuning group: the values searched, the trial count, the pick and whether it still
  sits at an edge; then validation accuracy of every setting tried."""
  tuning = [r for r in rows if r.get("phase") == "tune"]
  if not tuning:
    return ""
  groups: dict[str, list[dict]] = {}
  for record in tuning:
    groups.setdefault(str(record.get("tuning_group", "")), []).append(record)
  summary = ["", "## Tuning (validation accuracy at the tuning cell)", "",
             "| group | values searched | trials | pick | val accuracy at pick | at an edge |",
             "|---|---|---|---|---|---|"]
  details = ["", "Every setting tried (validation accuracy in percent, mean ± 95% half-width "
             "over the tuning seeds; † = a seed diverged, so not eligible):", "",
             "| group | setting | val accuracy |", "|---|---|---|"]
  at_edge = 0
  for label, runs in groups.items():
    records = [{**r, "shots": 0, "setting": str(r["setting"])} for r in runs]
    settings = list(dict.fromkeys(r["setting"] for r in records))
    picked = report.select_settings(records)
    pick = next(iter(picked.values()), None)
    values: dict[str, list[str]] = {}
    for setting in settings:
      for key, value in report._setting_values(setting).items():
        values.setdefault(key, [])
        if value not in values[key]:
          values[key].append(value)
    searched = "; ".join(f"`{k}` {', '.join(sorted(v, key=_number))}" for k, v in values.items())
    edges = report.edge_keys(settings, pick) if pick is not None else []
    at_edge += bool(edges)
    name = label or "(all)"
    summary.append(f"| {name} | {searched} | {len(settings)} | "
                   f"{'`' + pick + '`' if pick else 'none (all diverged)'} | "
                   f"{_val_text(records, pick) if pick else '-'} | "
                   f"{', '.join(edges) if edges else 'no'} |")
    for setting in sorted(settings, key=lambda s: [_number(v) for v in
                                                   report._setting_values(s).values()]):
      mark = " **(pick)**" if setting == pick else ""
      details.append(f"| {name} | `{setting}`{mark} | {_val_text(records, setting)} |")
  summary += ["", f"{at_edge} of {len(groups)} tuned groups picked a value at an edge of what "
              "they searched after the extensions" + (": the best value may lie beyond it."
                                                      if at_edge else ".")]
  return "\n".join(summary + details) + "\n"


def _val_text(records: Sequence[dict], setting: str) -> str:
  runs = [r for r in records if r["setting"] == setting]
  if any(report.is_diverged(r) for r in runs):
    return "†"
  values = [float(r["val/accuracy"]) for r in runs]
  return f"{format_mean_ci(mean_ci(values, report.CONFIDENCE))} (n={len(values)})"


def _number(text: str) -> tuple:
  try:
    return (0, float(text), "")
  except ValueError:
    return (1, 0.0, text)
