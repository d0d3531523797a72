"""results/peers.md from the peers' records and lowres_jax's own records of the same runs.

  python launch/peers/peers_table.py [--peers=results/peers.runs.csv] [--out=results/peers.md]

A pure function of ``results/peers.runs.csv`` and the lowres_jax tables' per-run records
(``results/text_fortunes.runs.csv``, ``results/image_transfer.runs.csv``), so the test suite
regenerates it byte for byte. Each peer row names the lowres_jax run whose examples it used;
the run's ``train_sha256`` must match, or the table refuses to be written.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

import peer_records  # noqa: E402

from lowres_jax.eval import stats  # noqa: E402

# Per peer: the lowres_jax table whose runs it copies, the lowres_jax methods shown beside it
# (the first is the one it is paired with), and what the cell is.
CELLS = {
    "setfit": ("results/text_fortunes.runs.csv", ("setfit", "finetune"),
               "fortunes, 8 categories, all-MiniLM-L6-v2"),
    "torch_efficientnet": ("results/image_transfer.runs.csv", ("finetune",),
                           "Fashion-MNIST, 10 classes, ImageNet EfficientNet-Lite0"),
}


SEEDS = 5  # Per cell, as the lowres_jax tables run them.
NOTES = [
    "- The seconds are not comparable as measured: the peer runs shared the 2 cores with the "
    "test suite and with each other, while lowres_jax's ran inside their sweeps (several runs "
    "per process, partly beside tests). A timing comparison needs both rerun on an idle "
    "machine.",
    "- SetFit at its default 256-token limit ran at about 20 s per step of 16 pairs on this "
    "CPU (over an hour per run) and was not run; the row is SetFit's own defaults (pair "
    "oversampling: 224 steps at 8 shots, its learning rates, a logistic head) at lowres_jax's "
    "32 tokens, against lowres_jax's 50 steps at lr 1e-4.",
]


def _lowres_rows(path: str) -> dict[tuple[str, str, str, str], dict]:
  """The evaluation runs of a lowres_jax table, by (dataset, method, shots, seed)."""
  with open(os.path.join(REPO, path), newline="") as f:
    return {(r["dataset"], r["method"], r["shots"], r["seed"]): r
            for r in csv.DictReader(f) if r.get("phase", "eval") != "tune"}


def _cell(peer: str, rows: list[dict]) -> list[str]:
  path, methods, what = CELLS[peer]
  lowres = _lowres_rows(path)
  rows = sorted(rows, key=lambda r: int(r["seed"]))
  shots = rows[0]["shots"]
  ours: dict[str, list[dict]] = {m: [] for m in methods}
  for row in rows:
    for method in methods:  # Every method's run of a seed drew the same examples.
      match = lowres.get((row["dataset"], method, row["shots"], row["seed"]))
      if match is None:
        raise SystemExit(f"{path} has no {method} run for {row['lowres_run']}")
      if match["train_sha256"] != row["train_sha256"]:
        raise SystemExit(f"{peer} seed {row['seed']} trained on other examples than "
                         f"{match['run']} (train_sha256 differs)")
      ours[method].append(match)
  peer_acc = [float(r["test/accuracy"]) for r in rows]
  lines = [f"| {what}, {shots} shots | {peer} ({rows[0]['variant']}) | "
           f"{stats.format_mean_ci(stats.mean_ci(peer_acc))} (n={len(peer_acc)}) | "
           f"{', '.join(f'{a * 100:.1f}' for a in peer_acc)} | | "
           f"{_mean([float(r['seconds']) for r in rows]):.0f} |"]
  for method in methods:
    acc = [float(r["test/accuracy"]) for r in ours[method]]
    diff = stats.paired_difference(peer_acc, acc)
    star = "*" if diff.significant else ""
    lines.append(f"| | lowres_jax {method} | {stats.format_mean_ci(stats.mean_ci(acc))} "
                 f"(n={len(acc)}) | "
                 f"{', '.join(f'{a * 100:.1f}' for a in acc)} | "
                 f"{diff.mean_diff * 100:+.1f} ± {diff.half_width * 100:.1f}{star} "
                 f"(p = {diff.p_value:.2f}) | "
                 f"{_mean([float(r['timing/wall_s']) for r in ours[method]]):.0f} |")
  return lines


def _mean(values: list[float]) -> float:
  return sum(values) / len(values)


def format_table(records: list[dict], command: str) -> str:
  lines = ["# Outside peers on the same examples", "", "Produced by:", "", "```",
           "python launch/peers/setfit_fortunes.py --sweep=workdirs/text_fortunes --shots=8",
           "python launch/peers/torch_efficientnet.py --sweep=workdirs/image_transfer "
           "--shots=10", command, "```", "",
           "Each peer is an independent PyTorch implementation trained on exactly the "
           "examples of lowres_jax runs (read from their `split.json`; the sha256 of the "
           "training ids matches on every row) and tested on the same test split. Accuracy "
           "in percent, mean ± 95% Student-t half-width over the seeds; per-seed values in "
           "seed order. Δ = peer minus lowres_jax, paired by seed (* = p < 0.05). Seconds: "
           "mean per run on the same 2-core CPU (lowres_jax: each run's timing/wall_s in "
           "its sweep, compilation included; sweeps run several runs per process). Per-run "
           "records: `peers.runs.csv`.", ""]
  groups: dict[tuple, list[dict]] = {}
  for record in records:
    groups.setdefault((record["peer"], record["variant"], record["shots"]), []).append(record)
  lines += ["| cell | implementation | test accuracy | per seed | Δ peer − this | s / run |",
            "|---|---|---|---|---|---|"]
  for (peer, _, _), rows in groups.items():
    lines += _cell(peer, rows)
  versions = sorted({r["versions"] for r in records})
  lines += ["", "Peer versions: " + "; ".join(versions) + ".", "", "## Notes", "", *NOTES]
  for (peer, variant, _), rows in groups.items():
    if len(rows) < SEEDS:
      lines.append(f"- {peer} ({variant}): {len(rows)} of the {SEEDS} seeds so far; rerunning "
                   "its command adds the rest (finished rows are skipped).")
  return "\n".join(lines) + "\n"


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--peers", default="results/peers.runs.csv")
  parser.add_argument("--out", default="results/peers.md")
  args = parser.parse_args()
  text = format_table(peer_records.read(os.path.join(REPO, args.peers)),
                      "python launch/peers/peers_table.py")
  with open(os.path.join(REPO, args.out), "w") as f:
    f.write(text)
  print(f"-> {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
