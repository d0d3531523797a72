"""Tables for humans: a finished run's summary now; sweep tables come with the sweep."""

from __future__ import annotations

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
    lines.append(f"wall {wall:.1f} s, compile {summary['timing/compile_s']:.1f} s, "
                 f"{summary['timing/train_examples_per_s']:.0f} train examples/s")
  return "\n".join(lines)
