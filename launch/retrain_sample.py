"""Retrains one cell of a finished sweep with today's code and compares it with the original.

The check behind "a refactor moves no number": the sweep directory is copied without the
cell's runs (every seed), the sweep resumes into the copy, which retrains exactly those runs
in the groups the sweep forms (vmapped seeds, the same tuning picks read from the copied
tuning runs), and every ``val/*`` and ``test/*`` summary value of the retrained runs is
compared with the original's, bit for bit.

  python launch/retrain_sample.py --sweep=workdirs/select_image \\
      --cell=data.selection.strategy=random,data.selection.budget=10 \\
      --out=results/retrain_sample.md

Several ``--sweep``/``--cell`` pairs may be given (in the same order); the report lists every
run with the number of values compared and the ones that differ.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import produced_by  # noqa: E402  (launch/ is not a package)

SUMMARY_PREFIXES = ("val/", "test/")


def parse_cell(cell: str) -> dict[str, str]:
  """'a=1,b=x' -> {'a': '1', 'b': 'x'}; values compare as the strings the overrides print."""
  pairs = [part.split("=", 1) for part in cell.split(",") if part]
  if any(len(pair) != 2 for pair in pairs):
    raise app.UsageError(f"--cell {cell!r}: write it as key=value,key=value")
  return dict(pairs)


def matches(overrides: dict[str, Any], cell: dict[str, str]) -> bool:
  return all(key in overrides and str(overrides[key]) == value for key, value in cell.items())


def compared_values(summary: dict) -> dict[str, Any]:
  return {key: value for key, value in summary.items() if key.startswith(SUMMARY_PREFIXES)}


def retrain_cell(sweep_dir: str, cell: dict[str, str], scratch: str) -> list[dict]:
  """Copies ``sweep_dir`` without the cell's eval runs into ``scratch``, resumes the sweep
  there, and returns one comparison per retrained run."""
  with open(os.path.join(sweep_dir, "sweep.json")) as f:
    sweep = json.load(f)
  chosen = [run for run in sweep["runs"]
            if run.get("phase", "eval") == "eval" and matches(run["overrides"], cell)]
  if not chosen:
    raise app.UsageError(f"no eval run of {sweep_dir} matches --cell {cell}")
  names = {run["name"] for run in chosen}
  shutil.copytree(sweep_dir, scratch, ignore=lambda directory, entries: [
      e for e in entries if os.path.samefile(directory, sweep_dir) and e in names])
  command = [sys.executable, "-m", "lowres_jax.sweep", f"--config={sweep['config']}",
             f"--workdir={scratch}", "--progress=false"]
  subprocess.run(command, check=True)
  comparisons = []
  for name in sorted(names):
    with open(os.path.join(sweep_dir, name, "summary.json")) as f:
      before = compared_values(json.load(f))
    with open(os.path.join(scratch, name, "summary.json")) as f:
      after = compared_values(json.load(f))
    differing = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    comparisons.append({"sweep": sweep_dir, "run": name, "compared": len(before),
                        "differing": differing,
                        "accuracy": (before.get("test/accuracy"), after.get("test/accuracy"))})
  return comparisons


def report(comparisons: list[dict]) -> str:
  lines = produced_by.header("Retrained sample: today's code against the committed runs")
  lines += ["Each run below was deleted from a copy of its sweep directory and retrained by "
            "resuming the sweep; every val/* and test/* summary value is compared with the "
            "original's for exact equality.", "",
            "| sweep | run | values compared | differing | test/accuracy before -> after |",
            "|---|---|---|---|---|"]
  for c in comparisons:
    before, after = c["accuracy"]
    lines.append(f"| `{c['sweep']}` | `{c['run']}` | {c['compared']} | "
                 f"{', '.join(c['differing']) or 'none'} | {before} -> {after} |")
  same = sum(not c["differing"] for c in comparisons)
  lines += ["", f"{same} of {len(comparisons)} runs identical."]
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  sweeps, cells = flags.FLAGS.sweep, flags.FLAGS.cell
  if len(sweeps) != len(cells):
    raise app.UsageError("give one --cell per --sweep")
  comparisons = []
  for sweep_dir, cell in zip(sweeps, cells):
    with tempfile.TemporaryDirectory(prefix="retrain_sample_") as scratch:
      comparisons += retrain_cell(sweep_dir, parse_cell(cell), os.path.join(scratch, "sweep"))
  text = report(comparisons)
  print(text)
  if flags.FLAGS.out:
    with open(flags.FLAGS.out, "w") as f:
      f.write(text)
  if any(c["differing"] for c in comparisons):
    sys.exit(1)


if __name__ == "__main__":
  flags.DEFINE_multi_string("sweep", [], "A finished sweep directory.")
  flags.DEFINE_multi_string("cell", [], "key=value,... of the overrides the cell's runs share.")
  flags.DEFINE_string("out", "", "Markdown report path.")
  app.run(main)
