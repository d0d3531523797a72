"""Per-run logs: ``metrics.jsonl`` (one JSON object per logged step) and TensorBoard events.

TensorBoard files are written by tensorboardX, which needs no TensorFlow. On resume the JSONL is
cut back to the restored step, so a resumed run's log equals an uninterrupted run's.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import tensorboardX

METRICS_FILE = "metrics.jsonl"


def _json_value(value: Any) -> Any:
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN; keep it visible rather than invalid.
  return value


class MetricsWriter:

  def __init__(self, workdir: str, resume_step: int = 0):
    self.path = os.path.join(workdir, METRICS_FILE)
    truncate_jsonl(self.path, resume_step)
    self._tensorboard = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    record = {"step": step, **{k: _json_value(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    for name, value in metrics.items():
      if isinstance(value, (int, float)) and math.isfinite(value):
        self._tensorboard.add_scalar(name, value, step)

  def close(self) -> None:
    self._tensorboard.close()


def truncate_jsonl(path: str, last_step: int) -> None:
  """Drops records after ``last_step``, final test records (written after the last
  checkpoint, so rewritten on resume), and a torn last line from a killed write."""
  if not os.path.exists(path):
    return
  kept = []
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue
      is_final = any(key.startswith("test/") for key in record)
      if record.get("step", 0) <= last_step and not is_final:
        kept.append(line if line.endswith("\n") else line + "\n")
  with open(path, "w") as f:
    f.writelines(kept)


def read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
