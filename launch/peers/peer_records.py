"""The peers' per-run records, ``results/peers.runs.csv``: one row per outside run, kept
across invocations so an interrupted peer sweep resumes where it stopped."""

from __future__ import annotations

import argparse
import csv
import json
import os

FIELDS = ("peer", "variant", "dataset", "shots", "seed", "lowres_run", "train_sha256",
          "num_train", "num_test", "test/accuracy", "seconds", "versions")


def read(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def done(path: str, peer: str, variant: str, shots: int, seed: int) -> bool:
  return any((r["peer"], r["variant"], r["shots"], r["seed"]) == (peer, variant, str(shots),
                                                                   str(seed))
             for r in read(path))


def append(path: str, row: dict) -> None:
  """Adds one row, rewriting the file through a temporary name (whole or absent), sorted so
  the file does not depend on the order runs finished in."""
  rows = read(path) + [{k: row[k] for k in FIELDS}]
  rows.sort(key=lambda r: (r["peer"], r["variant"], r["dataset"], int(r["shots"]),
                           int(r["seed"])))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + ".tmp", "w", newline="") as f:
    writer = csv.DictWriter(f, FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
  os.replace(path + ".tmp", path)


def read_split(run_dir: str) -> dict:
  """A lowres_jax run's split.json: the example ids the peer must train on."""
  path = os.path.join(run_dir, "split.json")
  if not os.path.exists(path):
    raise SystemExit(f"{path} does not exist: run the lowres_jax sweep that the peer copies "
                     "first (its command is in results/README.md)")
  with open(path) as f:
    return json.load(f)


def find_run(workdir: str, prefix: str) -> str:
  """The one run directory of a sweep whose name starts with ``prefix`` (its tuned value
  follows in the name)."""
  names = sorted(d for d in os.listdir(workdir) if d.startswith(prefix)) if os.path.isdir(
      workdir) else []
  if len(names) != 1:
    raise SystemExit(f"expected one run {prefix}* in {workdir}, found {names or 'none'}")
  return os.path.join(workdir, names[0])


def parser(doc: str, sweep: str, shots: int) -> argparse.ArgumentParser:
  """The flags every peer script takes: the lowres_jax sweep it copies, the cell, the seeds."""
  result = argparse.ArgumentParser(description=doc.split("\n")[0])
  result.add_argument("--sweep", required=True, help=f"the {sweep} sweep's workdir")
  result.add_argument("--shots", type=int, default=shots)
  result.add_argument("--seeds", default="0,1,2,3,4")
  result.add_argument("--out", default="results/peers.runs.csv")
  result.add_argument("--data_dir", default="")
  return result


def record(path: str, peer: str, variant: str, dataset: str, shots: int, seed: int, run: str,
           split: dict, num_test: int, accuracy: float, seconds: float, versions: str) -> None:
  """Appends one finished peer run (``run``: the lowres_jax run whose examples it used) and
  prints it."""
  append(path, {"peer": peer, "variant": variant, "dataset": dataset, "shots": shots,
                "seed": seed, "lowres_run": os.path.basename(run),
                "train_sha256": split["train_sha256"], "num_train": len(split["train_ids"]),
                "num_test": num_test, "test/accuracy": f"{accuracy:.6f}",
                "seconds": f"{seconds:.1f}", "versions": versions})
  print(f"{peer} {variant} shots={shots} seed={seed}: {accuracy:.4f} ({seconds:.0f} s)",
        flush=True)
