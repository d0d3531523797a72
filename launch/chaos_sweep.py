"""SIGKILLs a sweep at random moments until it completes; proves nothing was lost or changed.

  python launch/chaos_sweep.py [--kills=10] [--seed=0] [--workdir=/tmp/chaos] \
      [--out=results/chaos_sweep.md]

A 12-run grid (tiny CNN on digits; shots x learning rate x 3 seeds, trained as vmapped groups
of 6 with --vmap=true; ``--steps`` per run, a checkpoint every tenth) runs once uninterrupted as the reference. Then the same sweep is started
again and again in a second directory, each time killed with SIGKILL at a seeded random moment:

- ``time``: after a random delay from the start (import, data, compile or training);
- ``checkpoint``: a few milliseconds into the n-th checkpoint write (failpoint
  ``checkpoint.save`` with a delay, so the kill lands inside orbax's save);
- ``summary``: a run evaluated, its summary.json not yet written (``run.summary``);
- ``file``: an atomic file written under its temporary name, not yet renamed (``file.replace``);
- ``report``: the sweep report's table written, its CSV and plot not yet (``report.write``),

until at least ``--kills`` kills have landed and a start then runs to the end. The first
three fifths of the kills are timed or mid-checkpoint (they stop training), the rest wait for
a group's or the grid's end, each part in seeded random order. Every run's
summary (timing aside) and metrics log, and the report's CSV and table, are then compared with
the reference's; the target is zero differences. A kill that a start outlives (its moment
never came) is listed as such.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import produced_by  # launch/produced_by.py, beside this script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from lowres_jax.failpoints import ENV as FAILPOINT_ENV  # noqa: E402

ABLATION = '''"""The chaos test's grid (written by launch/chaos_sweep.py)."""
from lowres_jax.config import load_module

default = load_module({default!r})
TUNED = ("optim.lr",)


def get_config():
  c = default.get_config("tiny=1,init=scratch,stages=finetune")
  c.data.data_dir, c.cache_dir = {data_dir!r}, {cache_dir!r}
  c.train.duration, c.log_every = "{steps} steps", 10
  c.checkpoint_every, c.eval.every = {checkpoint_every}, {checkpoint_every}
  return c


def get_sweep():
  return [{{"data.shots": k, "optim.lr": lr, "seed": s}}
          for k in (2, 5) for lr in (0.02, 0.05) for s in range(3)]
'''
MODES = ("time", "checkpoint", "summary", "file", "report")


def checkpoint_every(steps: int) -> int:
  """About a tenth of the steps, a multiple of the grid's log_every (10) as the trainer needs."""
  return max(10, steps // 100 * 10)


def sweep_command(config: str, workdir: str) -> list[str]:
  return [sys.executable, "-m", "lowres_jax.sweep", f"--config={config}",
          f"--workdir={workdir}", "--vmap=true", "--progress=false"]


def environment(failpoint: str = "") -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  env.pop(FAILPOINT_ENV, None)
  if failpoint:
    env[FAILPOINT_ENV] = failpoint
  return env


def kill_modes(rng: random.Random, count: int, allowed: list[str]) -> list[str]:
  """The modes of ``count`` kills: first those that stop a grid mid-training (timed, inside a
  checkpoint), then those that wait for a group's or the grid's end (summary, file, report),
  each part in seeded random order, so every kind lands before the grid completes."""
  early = [m for m in ("time", "checkpoint") if m in allowed]
  late = [m for m in ("summary", "file", "report") if m in allowed]
  num_early = (count * 3) // 5 if early and late else (count if early else 0)
  modes = [early[i % len(early)] for i in range(num_early)]
  modes += [late[i % len(late)] for i in range(count - num_early)]
  head, tail = modes[:num_early], modes[num_early:]
  rng.shuffle(head)
  rng.shuffle(tail)
  return head + tail


def draw_kill(rng: random.Random, mode: str,
              reference_seconds: float) -> tuple[str, str, float]:
  """(mode, failpoint spec, delay in seconds for a timed kill)."""
  if mode == "time":
    # From process start: inside imports and compilation, or a few checkpoints into training.
    return mode, "", rng.uniform(1.0, min(20.0, max(2.0, 0.8 * reference_seconds)))
  if mode == "checkpoint":
    # A group of 6 saves 6 checkpoints per step: the n-th lands anywhere in the first few.
    return mode, f"checkpoint.save:{rng.randint(1, 12)}:{rng.randint(0, 30)}", 0.0
  if mode == "summary":
    return mode, f"run.summary:{rng.randint(1, 6)}", 0.0
  if mode == "file":
    return mode, f"file.replace:{rng.randint(1, 15)}", 0.0
  return mode, "report.write:1", 0.0


def start_until_killed(command: list[str], mode: str, failpoint: str,
                       delay: float) -> tuple[int, float]:
  """Runs one start; returns (exit code, seconds it lived). -9 means it was SIGKILLed."""
  start = time.perf_counter()
  process = subprocess.Popen(command, cwd=REPO, env=environment(failpoint),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  if mode == "time":
    try:
      process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
      process.send_signal(signal.SIGKILL)
  _, stderr = process.communicate()
  if process.returncode not in (0, -signal.SIGKILL):
    raise RuntimeError(f"a start failed with exit code {process.returncode}:\n{stderr[-3000:]}")
  return process.returncode, time.perf_counter() - start


def finished_runs(workdir: str) -> int:
  if not os.path.isdir(workdir):
    return 0
  return sum(os.path.exists(os.path.join(workdir, d, "summary.json")) for d in os.listdir(workdir))


def compare(reference: str, chaos: str) -> tuple[list[str], int]:
  """Differences between the two sweep directories, and how many runs resumed mid-way."""
  differences, resumed = [], 0
  runs = sorted(d for d in os.listdir(reference)
                if os.path.isdir(os.path.join(reference, d)) and d != "cache")
  for run in runs:
    got, want = (_read_run(os.path.join(base, run)) for base in (chaos, reference))
    if got is None:
      differences.append(f"{run}: no summary after the chaos")
      continue
    resumed += got[0].pop("resumed", 0) > 0
    want[0].pop("resumed", 0)
    for part, (a, b) in zip(("summary", "metrics.jsonl"), zip(got, want)):
      if a != b:
        differences.append(f"{run}: {part} differs")
  for name in ("report.csv", "report.md"):
    got, want = (_read_report(os.path.join(base, name), base) for base in (chaos, reference))
    if got != want:
      differences.append(f"{name} differs")
  return differences, resumed


def _read_run(directory: str):
  path = os.path.join(directory, "summary.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    summary = json.load(f)
  resumed = summary.get("timing/resumed_from_step", 0)
  summary = {k: v for k, v in summary.items() if not k.startswith("timing/")}
  summary["resumed"] = resumed
  with open(os.path.join(directory, "metrics.jsonl")) as f:
    metrics = [json.loads(line) for line in f]
  return summary, metrics


def _read_report(path: str, base: str) -> str | None:
  if not os.path.exists(path):
    return None
  with open(path) as f:  # The command and the records' path name the directory: drop it.
    text = f.read().replace(f"--workdir={base} ", "--workdir=DIR ")
    return text.replace(f"{base}/", "DIR/")  # Whole path components only: the config's
    # file name starts with the chaos directory's name.


def write_markdown(path: str, kills: list[dict], differences: list[str],
                   resumed: int, runs: int, reference_seconds: float, steps: int) -> None:
  landed = sum(k["exit"] == -signal.SIGKILL for k in kills)
  lines = produced_by.header(
      "Chaos sweep: SIGKILL at random moments, then compare with an uninterrupted sweep") + [
      f"Date: {datetime.date.today()}. Grid: {runs} runs (tiny CNN on digits, 2 shots x 2 "
      f"learning rates x 3 seeds, vmapped groups of 6, {steps} steps, a checkpoint every "
      f"{checkpoint_every(steps)}). "
      f"The uninterrupted reference took {reference_seconds:.1f} s.", "",
      f"**Kills landed: {landed}. Runs resumed from a checkpoint: {resumed}. "
      f"Differences found: {len(differences)}** (summaries timing aside, metrics logs, report "
      "table and CSV).", "",
      "| start | kill moment | failpoint / delay | exit | lived (s) | runs finished after |",
      "|---|---|---|---|---|---|",
  ]
  for i, kill in enumerate(kills, 1):
    moment = kill["failpoint"] or f"{kill['delay']:.2f} s"
    outcome = "SIGKILL" if kill["exit"] == -signal.SIGKILL else f"{kill['exit']} (outlived)"
    lines.append(f"| {i} | {kill['mode']} | `{moment}` | {outcome} | {kill['lived']:.1f} | "
                 f"{kill['finished']} |")
  lines += ["", "Differences:" if differences else "No differences.", ""]
  lines += [f"- {d}" for d in differences]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--kills", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--workdir", default="/tmp/lowres_jax_chaos")
  parser.add_argument("--out", default="results/chaos_sweep.md")
  parser.add_argument("--steps", type=int, default=3000,
                      help="steps per run (a checkpoint every tenth): long enough for every "
                      "kill to land while the grid trains")
  parser.add_argument("--modes", default=",".join(MODES),
                      help="kill moments to draw from (the test suite leaves out 'time')")
  args = parser.parse_args()
  shutil.rmtree(args.workdir, ignore_errors=True)
  os.makedirs(args.workdir)
  config = os.path.join(args.workdir, "chaos_ablation.py")
  with open(config, "w") as f:
    f.write(ABLATION.format(default=os.path.join(REPO, "configs", "default.py"),
                            data_dir=os.path.join(args.workdir, "data"),
                            cache_dir=os.path.join(args.workdir, "cache"), steps=args.steps,
                            checkpoint_every=checkpoint_every(args.steps)))
  reference, chaos = (os.path.join(args.workdir, d) for d in ("reference", "chaos"))
  start = time.perf_counter()
  subprocess.run(sweep_command(config, reference), cwd=REPO, env=environment(), check=True,
                 stdout=subprocess.DEVNULL)
  reference_seconds = time.perf_counter() - start
  rng = random.Random(args.seed)
  plan = kill_modes(rng, args.kills, args.modes.split(","))
  kills: list[dict] = []
  landed = 0
  while True:
    if landed >= args.kills:  # Enough: this start runs to the end.
      mode, failpoint, delay = "none", "", 0.0
    else:  # A kill that did not land (its moment never came) is drawn again.
      mode, failpoint, delay = draw_kill(rng, plan[landed], reference_seconds)
    code, lived = start_until_killed(sweep_command(config, chaos), mode, failpoint, delay)
    if mode == "none":
      break
    landed += code == -signal.SIGKILL
    if code == 0 and landed < args.kills and "report" in plan:
      plan[landed] = "report"  # The grid is complete: only the report is left to kill.
    kills.append({"mode": mode, "failpoint": failpoint, "delay": delay, "exit": code,
                  "lived": lived, "finished": finished_runs(chaos)})
    print(f"start {len(kills)}: {mode} {failpoint or f'{delay:.2f}s'} -> exit {code}, "
          f"{finished_runs(chaos)} runs finished", flush=True)
    if len(kills) > 20 * args.kills:
      raise RuntimeError("too many starts outlived their kill moment")
  differences, resumed = compare(reference, chaos)
  runs = len([d for d in os.listdir(reference) if os.path.isdir(os.path.join(reference, d))
              and d != "cache"])
  write_markdown(args.out, kills, differences, resumed, runs, reference_seconds,
                 args.steps)
  print(f"kills landed: {landed}, runs resumed: {resumed}, differences: {len(differences)} "
        f"-> {args.out}")
  return 1 if differences else 0


if __name__ == "__main__":
  sys.exit(main())
