"""Times one grid two ways in one run: a bash loop of `lowres_jax.main` processes vs one sweep.

  python launch/bench_sweep.py [--config=configs/ablations/bench_grid.py] [--out=results/bench_sweep.md]

The bash-loop way is how the field's reference codebases run grids: one process per run, each
importing JAX, loading data and compiling its step anew. The sweep runs the same grid (the
commands the loop runs are exactly `lowres_jax.sweep --list`'s) in one process, reusing compiled
steps; it is timed with runs one after another (--vmap=false) and stacked (--vmap=true). The
source model and the prepared dataset are built once beforehand and shared by every way, so
all of them time the same work. Each way gets a fresh workdir.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time

import produced_by  # launch/produced_by.py, beside this script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(command: list[str], env: dict) -> float:
  start = time.perf_counter()
  subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE)
  return time.perf_counter() - start


def sweep_command(config: str, workdir: str, *extra: str) -> list[str]:
  return [sys.executable, "-m", "lowres_jax.sweep", f"--config={config}", f"--workdir={workdir}",
          "--progress=false", *extra]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/ablations/bench_grid.py")
  parser.add_argument("--out", default="results/bench_sweep.md")
  parser.add_argument("--scratch_dir", default="workdirs/bench_sweep")
  args = parser.parse_args()
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
  root = os.path.join(REPO, args.scratch_dir)
  shutil.rmtree(root, ignore_errors=True)

  # Warm-up shared by every way: prepares the dataset and pretrains/caches the source model.
  warm = timed(sweep_command(args.config, os.path.join(root, "warmup"), "--vmap=false"), env)
  listing = subprocess.run(
      sweep_command(args.config, os.path.join(root, "bash_loop"), "--list", "--vmap=false"),
      cwd=REPO, env=env, check=True, capture_output=True, text=True).stdout.splitlines()

  loop_start = time.perf_counter()
  for line in listing:
    command = shlex.split(line)
    command[0] = sys.executable
    subprocess.run([*command, "--progress=false"], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  loop_seconds = time.perf_counter() - loop_start

  ways = {}
  for vmap in ("false", "true"):
    workdir = os.path.join(root, f"sweep_vmap_{vmap}")
    seconds = timed(sweep_command(args.config, workdir, f"--vmap={vmap}"), env)
    with open(os.path.join(workdir, "sweep.json")) as f:
      record = json.load(f)
    ways[vmap] = (seconds, record)

  write_table(args, len(listing), loop_seconds, ways, warm)


def write_table(args, runs: int, loop_seconds: float, ways: dict, warm: float) -> None:
  import jax
  lines = produced_by.header("Sweep benchmark: bash loop of processes vs one sweep process") + [
      f"Grid: `{args.config}`, {runs} runs. Machine: {os.cpu_count()} CPU cores, "
      f"JAX {jax.__version__} on {jax.default_backend()}, Python {platform.python_version()}, "
      f"{datetime.date.today().isoformat()}. One timing per way (wall-clock seconds, "
      f"whole commands); the shared warm-up (dataset + source model) took {warm:.1f} s and is "
      "in none of them.",
      "",
      "| way | wall (s) | runs | compilations | speed-up vs bash loop |",
      "|---|---|---|---|---|",
      f"| bash loop: one `lowres_jax.main` process per run | {loop_seconds:.1f} | {runs} | "
      f"≥ {runs} (one set per process) | 1.0x |",
  ]
  for vmap, label in (("false", "one sweep process, runs in sequence (`--vmap=false`)"),
                      ("true", "one sweep process, seeds stacked (`--vmap=true`)")):
    seconds, record = ways[vmap]
    lines.append(f"| {label} | {seconds:.1f} | {record['runs_trained']} | "
                 f"{record['compilations']} | {loop_seconds / seconds:.1f}x |")
  lines += [
      "",
      "Compilations count every compiled program (train steps and evaluation) of the timed "
      "command. On a CPU, stacking runs under `jax.vmap` turns each convolution into a grouped "
      "convolution, which XLA:CPU runs slower than the same runs one after another, so the "
      "sweep's default (`--vmap=auto`) stacks only on GPUs and TPUs.",
      "",
  ]
  path = os.path.join(REPO, args.out)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(lines))
  print("\n".join(lines))


if __name__ == "__main__":
  main()
