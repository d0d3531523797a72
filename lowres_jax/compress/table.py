"""The compression table over seeds: each pipeline stage's accuracy (mean ± 95% CI), its paired
change from the stage before, its size and its measured latency, and the targets checked."""

from __future__ import annotations

import dataclasses
import statistics
from typing import Sequence

from lowres_jax.eval import stats


@dataclasses.dataclass(frozen=True)
class Target:
  """``stage``'s paired accuracy change from ``baseline`` must be >= ``min_delta`` (fraction),
  and where set, its parameters at most ``max_param_ratio`` of the baseline's, at least
  ``min_sparsity`` of its pruned weights zero, its batch-256 latency at least ``min_speedup``
  times faster."""
  name: str
  stage: str
  baseline: str
  min_delta: float
  max_param_ratio: float | None = None
  min_sparsity: float | None = None
  min_speedup: float | None = None


# The targets of a finetune -> distill -> prune -> quantize pipeline: a student with at most
# 1/4 of the teacher's parameters within 1.5 points of it; 50% sparsity within 1 point of the
# student; int8 within 0.5 points of float and at least 2.5x faster at batch 256.
PIPELINE_TARGETS = (
    Target("student", stage="distill", baseline="finetune", min_delta=-0.015,
           max_param_ratio=0.25),
    Target("50% sparsity", stage="prune", baseline="distill", min_delta=-0.01,
           min_sparsity=0.5),
    Target("int8", stage="quantize", baseline="prune", min_delta=-0.005, min_speedup=2.5),
)


def _by_stage(runs: Sequence[list[dict]], stage: str) -> list[dict]:
  return [next(r for r in rows if r["stage"] == stage) for rows in runs]


def _median(rows: list[dict], key: str) -> float:
  return statistics.median(r[key] for r in rows)


def format_table(runs: Sequence[list[dict]], title: str, command: str, notes: str,
                 targets: Sequence[Target]) -> str:
  """``runs``: one list of stage rows (lowres_jax/pipeline.py) per seed, stages in order."""
  stages = [r["stage"] for r in runs[0]]
  lines = [f"# {title}", "", f"Command: `{command}`", "",
           f"{len(runs)} seeds; accuracy is test accuracy, mean ± 95% CI over seeds; Δ is the "
           "paired difference from the stage above (* p < 0.05). Sizes are one seed's (all "
           "equal); latencies are the median over seeds of each stage's median of timed "
           "calls (ms, compile excluded, 2-core CPU).", "",
           "| stage | test accuracy | Δ vs above | non-zero / total params | disk KiB | "
           "latency b1 ms | latency b256 ms | b256 speed-up vs above |",
           "|---|---|---|---|---|---|---|---|"]
  previous = None
  for stage in stages:
    rows = _by_stage(runs, stage)
    accuracy = stats.format_mean_ci(stats.mean_ci([r["test/accuracy"] for r in rows]))
    delta = speedup = ""
    if previous is not None:
      diff = stats.paired_difference([r["test/accuracy"] for r in rows],
                                     [r["test/accuracy"] for r in previous])
      delta = f"{100 * diff.mean_diff:+.1f} ± {100 * diff.half_width:.1f}" + (
          "*" if diff.significant else "")
      speedup = (f"{_median(previous, 'timing/latency_b256_ms') / _median(rows, 'timing/latency_b256_ms'):.2f}x")
    lines.append(
        f"| {stage} | {accuracy} | {delta} | {rows[0]['model/nonzero_params']:,} / "
        f"{rows[0]['model/params']:,} | {rows[0]['disk_bytes'] / 1024:.1f} | "
        f"{_median(rows, 'timing/latency_b1_ms'):.2f} | "
        f"{_median(rows, 'timing/latency_b256_ms'):.2f} | {speedup} |")
    previous = rows
  lines += ["", "## Targets", ""]
  lines += [f"- {line}" for line in (_check(runs, t) for t in targets)]
  if notes.strip():
    lines += ["", "## Notes", "", notes.strip()]
  return "\n".join(lines) + "\n"


def _check(runs: Sequence[list[dict]], target: Target) -> str:
  rows, base = _by_stage(runs, target.stage), _by_stage(runs, target.baseline)
  diff = stats.paired_difference([r["test/accuracy"] for r in rows],
                                 [r["test/accuracy"] for r in base])
  parts = [f"accuracy {100 * diff.mean_diff:+.2f} points vs {target.baseline} (target >= "
           f"{100 * target.min_delta:+.1f}): "
           + ("met" if diff.mean_diff >= target.min_delta
              else f"missed by {100 * (target.min_delta - diff.mean_diff):.2f}")]
  if target.max_param_ratio is not None:
    ratio = rows[0]["model/params"] / base[0]["model/params"]
    parts.append(f"parameters {ratio:.3f} of {target.baseline}'s (target <= "
                 f"{target.max_param_ratio:g}): "
                 + ("met" if ratio <= target.max_param_ratio else "missed"))
  if target.min_sparsity is not None:
    sparsity = min(r.get("prune/sparsity", 0.0) for r in rows)
    parts.append(f"sparsity {sparsity:.3f} of the pruned weights (target >= "
                 f"{target.min_sparsity:g}): "
                 + ("met" if sparsity >= target.min_sparsity - 1e-9 else "missed"))
  if target.min_speedup is not None:
    speedup = _median(base, "timing/latency_b256_ms") / _median(rows, "timing/latency_b256_ms")
    parts.append(f"batch-256 speed-up {speedup:.2f}x (target >= {target.min_speedup:g}x): "
                 + ("met" if speedup >= target.min_speedup
                    else f"missed ({target.min_speedup / speedup:.1f} times short)"))
  return f"**{target.name}**: " + "; ".join(parts)
