"""Reading a sweep directory: its sweep file and one record per finished run.

Shared by the sweep (which writes the directory) and the report (which tables it), so that
neither imports the other.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from lowres_jax import records as records_lib
from lowres_jax import storage
from lowres_jax.train import workdir as workdir_lib
from lowres_jax.user_error import MissingInputError

SWEEP_FILE = "sweep.json"
Overrides = dict[str, Any]


def collect_records(workdir: str) -> tuple[dict, list[dict]]:
  """The sweep file and one record (records.row) per finished run (missing runs are left out).

  A plain grid's record ``setting`` names its tuned hyperparameters: the ablation's ``TUNED``
  keys, or, without them, every override key (bar the seed) that varies inside a (dataset,
  method, shots) cell, so runs that differ in anything but the seed are never averaged
  together. A tune-once sweep records each run's phase, tuning group and setting itself.
  """
  if not os.path.isdir(workdir):
    raise MissingInputError(f"no sweep directory at {workdir}; run lowres_jax.sweep into it "
                            "first (--workdir)")
  candidates = [SWEEP_FILE] + sorted(f for f in os.listdir(workdir) if f.startswith("sweep-shard"))
  path = next((os.path.join(workdir, f) for f in candidates
               if os.path.exists(os.path.join(workdir, f))), None)
  if path is None:
    raise MissingInputError(f"{workdir} holds no {SWEEP_FILE}; run lowres_jax.sweep into it first")
  sweep = storage.read_json(path, "the sweep's list of runs")
  finished = []
  for run in sweep["runs"]:
    summary = workdir_lib.read_summary(os.path.join(workdir, run["name"]))
    if summary is not None:
      finished.append((run, summary))
  cells: dict[tuple, list[dict]] = {}
  for run, summary in finished:
    cell = (summary["dataset"], summary["method"], summary["shots"])
    cells.setdefault(cell, []).append(run["overrides"])
  rows = []
  for run, summary in finished:
    setting = run.get("setting")
    if setting is None:
      keys = sweep["tuned"] or _varying_keys(
          cells[(summary["dataset"], summary["method"], summary["shots"])])
      setting = ",".join(f"{k}={run['overrides'][k]}" for k in keys if k in run["overrides"])
    rows.append(records_lib.row(run.get("phase", "eval"), run["name"], run["overrides"],
                                summary, setting, run.get("tuning_group", "")))
  return sweep, rows


def _varying_keys(overrides: Sequence[Overrides]) -> list[str]:
  keys = sorted({k for o in overrides for k in o if k != "seed"})
  return [k for k in keys if len({repr(o.get(k)) for o in overrides}) > 1]
