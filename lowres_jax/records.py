"""Per-run records of a table: ``NAME.runs.csv`` (one row a run) and ``NAME.runs.json`` (what
the table is: title, notes, protocol, command, commit, date).

A table is a pure function of these two files (``python -m lowres_jax.report --runs
NAME.runs.csv PREFIX``), so anyone can recompute a mean, an interval or a paired test, and a
test regenerates every committed table from its records. Values are written as JSON (floats
exactly, as ``repr``) except plain strings, which are written as they are and read back as
strings whenever they do not parse as JSON.
"""

from __future__ import annotations

import csv
import datetime
import functools
import io
import json
import os
import subprocess
from typing import Any, Iterable, Sequence

from lowres_jax import storage
from lowres_jax.user_error import MissingInputError

LEADING = ("phase", "run", "tuning_group", "setting", "dataset", "method", "shots", "seed")
_TEXT_COLUMNS = ("tuning_group", "setting")  # Empty text that means "none", kept as "".
OVERRIDE_PREFIX = "set:"  # Columns of the run's overrides (the swept keys), e.g. set:optim.lr.


def meta_path(runs_path: str) -> str:
  """NAME.runs.csv -> NAME.runs.json."""
  return os.path.splitext(runs_path)[0] + ".json"


def _text(value: Any) -> str:
  if isinstance(value, str):
    return value
  return json.dumps(value, sort_keys=True, default=str)


def _value(text: str) -> Any:
  if text == "":
    return ""
  try:
    return json.loads(text)
  except ValueError:
    return text


def row(phase: str, name: str, overrides: dict, summary: dict, setting: str = "",
        tuning_group: str = "") -> dict:
  """One record: the run's place in the table, its overrides and its whole summary."""
  return {"phase": phase, "run": name, "tuning_group": tuning_group, "setting": setting,
          **{OVERRIDE_PREFIX + k: v for k, v in overrides.items()}, **summary}


def write_runs(path: str, rows: Sequence[dict], meta: dict) -> None:
  """Writes the records and their table description (each whole or not at all)."""
  columns = [c for c in LEADING if any(c in r for r in rows)]
  columns += sorted({c for r in rows for c in r} - set(columns))
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
  writer.writeheader()
  for record in rows:
    writer.writerow({c: _text(record[c]) if c in record else "" for c in columns})
  storage.ensure_directory(os.path.dirname(path) or ".")
  storage.write_text(path, buffer.getvalue())
  storage.write_json(meta_path(path), meta, default=str, indent=1, sort_keys=True)


def read_runs(path: str) -> tuple[list[dict], dict]:
  """The records (empty cells dropped but for the text columns) and the table description written beside them."""
  if not os.path.exists(path):
    raise MissingInputError(f"{path} does not exist; a sweep writes it with --results=PREFIX")
  with open(path, newline="") as f:
    rows = [{k: _value(v) for k, v in r.items() if v != "" or k in _TEXT_COLUMNS}
            for r in csv.DictReader(f)]
  return rows, storage.read_json(meta_path(path), "the table description beside " + path)


def table_records(rows: Iterable[dict]) -> list[dict]:
  """The rows the table averages (evaluation runs), as report records."""
  return [r for r in rows if r.get("phase") != "tune"]


@functools.cache
def code_commit() -> str:
  """The checkout's commit (with '+changes' when tracked code differs from it), or 'unknown'
  outside a git checkout: which code computed a number."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=root, check=True,
                            capture_output=True, text=True, timeout=10).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                              "lowres_jax", "configs"], cwd=root, check=True,
                             capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return commit + ("+changes" if changed else "")


def today() -> str:
  return datetime.date.today().isoformat()
