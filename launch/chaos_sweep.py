"""Kills a sweep or a pipeline at random moments until it completes; proves nothing was lost.

  python launch/chaos_sweep.py [--kills=10] [--seed=0] [--workdir=/tmp/chaos] \
      [--out=results/chaos_sweep.md]
  python launch/chaos_sweep.py --targets=pipeline [--kills=10] [--seed=0]

A 12-run grid (tiny CNN on digits; shots x learning rate x 3 seeds, trained as vmapped groups
of 6 with --vmap=true; ``--steps`` per run, a checkpoint every tenth) runs once uninterrupted as the reference. Then the same sweep is started
again and again in a second directory, each time killed with SIGKILL at a seeded random moment:

- ``time``: after a random delay from the start (import, data, compile or training);
- ``checkpoint``: a few milliseconds into the n-th checkpoint write (failpoint
  ``checkpoint.save`` with a delay, so the kill lands inside orbax's save);
- ``summary``: a run evaluated, its summary.json not yet written (``run.summary``);
- ``file``: an atomic file written under its temporary name, not yet renamed (``file.replace``);
- ``report``: the sweep report's table written, its CSV and plot not yet (``report.write``),

until at least ``--kills`` kills have landed and a start then runs to the end.

The first three fifths of the kills are timed or mid-checkpoint (they stop training), the rest
wait for a group's or the grid's end, each part in seeded random order. Every run's summary
(timing aside) and metrics log, and the report's CSV and table, are then compared with the
reference's; the target is zero differences. A kill that a start outlives (its moment
never came) is listed as such.

Then (``--targets``, default ``sweep,pipeline``, each a section of ``--out``) the same is
done to the four-stage pipeline of ``configs/default.py`` (tiny, from scratch: fine-tune,
distill, prune, quantize), adding ``sigterm`` (a scheduler's preemption after a random delay:
the start must stop with one line and exit 143), and every stage's summary and metrics log
and the pipeline's table (latencies aside) are compared.
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
PIPELINE_MODES = ("time", "sigterm", "checkpoint", "summary", "file")
PIPELINE_STAGES = ("1_finetune", "2_distill", "3_prune", "4_quantize")


def checkpoint_every(steps: int) -> int:
  """About a tenth of the steps, a multiple of the grid's log_every (10) as the trainer needs."""
  return max(10, steps // 100 * 10)


def sweep_command(config: str, workdir: str) -> list[str]:
  return [sys.executable, "-m", "lowres_jax.sweep", f"--config={config}",
          f"--workdir={workdir}", "--vmap=true", "--progress=false"]


def pipeline_command(workdir: str) -> list[str]:
  data_dir = os.path.join(os.path.dirname(workdir), "data")
  cache_dir = os.path.join(os.path.dirname(workdir), "cache")
  return [sys.executable, "-m", "lowres_jax.main",
          "--config=configs/default.py:tiny=1,init=scratch", f"--workdir={workdir}",
          f"--config.data.data_dir={data_dir}", f"--config.source.data.data_dir={data_dir}",
          f"--config.cache_dir={cache_dir}", "--progress=false"]


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
  early = [m for m in ("time", "sigterm", "checkpoint") if m in allowed]
  late = [m for m in ("summary", "file", "report") if m in allowed]
  num_early = (count * 3) // 5 if early and late else (count if early else 0)
  modes = [early[i % len(early)] for i in range(num_early)]
  modes += [late[i % len(late)] for i in range(count - num_early)]
  head, tail = modes[:num_early], modes[num_early:]
  rng.shuffle(head)
  rng.shuffle(tail)
  return head + tail


def draw_kill(rng: random.Random, mode: str, reference_seconds: float,
              stages_left: int | None = None) -> tuple[str, str, float]:
  """(mode, failpoint spec, delay in seconds for a timed kill or SIGTERM). ``stages_left``
  (pipeline only) keeps a failpoint's count within what the unfinished stages still reach;
  with none left, only the table's measurement and files remain to be killed."""
  if stages_left is not None:
    if mode in ("time", "sigterm"):  # From process start: imports, compilation or a stage,
      # within the share of the reference's time that the unfinished stages take.
      share = max(stages_left, 0.5) / len(PIPELINE_STAGES)
      return mode, "", rng.uniform(1.0, max(2.0, 0.8 * reference_seconds * share))
    if not stages_left:  # Every summary and checkpoint is written: a file write is left.
      return "file", "file.replace:1", 0.0
    # Each tiny stage but the last saves at least one checkpoint and writes a few files.
    point, most = {"checkpoint": ("checkpoint.save", max(1, stages_left - 1)),
                   "summary": ("run.summary", stages_left),
                   "file": ("file.replace", 3 * stages_left)}[mode]
    delay = f":{rng.randint(0, 30)}" if mode == "checkpoint" else ""
    return mode, f"{point}:{rng.randint(1, most)}{delay}", 0.0
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


SIGTERM_EXIT = 128 + signal.SIGTERM  # A run stopped cleanly by a scheduler's preemption.


def start_until_killed(command: list[str], mode: str, failpoint: str,
                       delay: float) -> tuple[int, float]:
  """Runs one start; returns (exit code, seconds it lived). -9 means it was SIGKILLed, 143
  that a SIGTERM stopped it cleanly (checked: one 'lowres_jax: stopped by SIGTERM' line)."""
  start = time.perf_counter()
  process = subprocess.Popen(command, cwd=REPO, env=environment(failpoint),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  if mode in ("time", "sigterm"):
    try:
      process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
      process.send_signal(signal.SIGKILL if mode == "time" else signal.SIGTERM)
  _, stderr = process.communicate()
  code = process.returncode
  if code == SIGTERM_EXIT:
    lines = [line for line in stderr.splitlines() if line.startswith("lowres_jax:")]
    if len(lines) != 1 or not lines[0].startswith("lowres_jax: stopped by SIGTERM") or (
        "Traceback" in stderr):
      raise RuntimeError(f"a SIGTERM did not end in one clear line:\n{stderr[-3000:]}")
  # -SIGTERM: the signal came during start-up (imports, config reading), before the pipeline
  # or sweep installed its handlers and before anything was written; the default action
  # (exit status 143 to the shell, no line) is then right.
  if code not in (0, -signal.SIGKILL, SIGTERM_EXIT, -signal.SIGTERM):
    raise RuntimeError(f"a start failed with exit code {code}:\n{stderr[-3000:]}")
  return code, time.perf_counter() - start


def landed(code: int) -> bool:
  return code in (-signal.SIGKILL, SIGTERM_EXIT, -signal.SIGTERM)


def finished_runs(workdir: str) -> int:
  if not os.path.isdir(workdir):
    return 0
  return sum(os.path.exists(os.path.join(workdir, d, "summary.json")) for d in os.listdir(workdir))


def compare(reference: str, chaos: str) -> tuple[list[str], int]:
  """Differences between the two sweep directories, and how many runs resumed mid-way."""
  runs = sorted(d for d in os.listdir(reference)
                if os.path.isdir(os.path.join(reference, d)) and d != "cache")
  differences, resumed = _compare_runs(runs, reference, chaos, mask_paths=False)
  for name in ("report.csv", "report.md"):
    got, want = (_read_report(os.path.join(base, name), base) for base in (chaos, reference))
    if got != want:
      differences.append(f"{name} differs")
  return differences, resumed


def compare_pipelines(reference: str, chaos: str) -> tuple[list[str], int]:
  """Differences between two pipeline directories (each stage's summary and metrics log, the
  pipeline's table rows), latencies and orbax's directory sizes aside, and how many stages
  resumed mid-way."""
  differences, resumed = _compare_runs(PIPELINE_STAGES, reference, chaos, mask_paths=True)
  got, want = (_read_table(base) for base in (chaos, reference))
  if got != want:
    differences.append("pipeline.json differs")
  return differences, resumed


def _compare_runs(names, reference: str, chaos: str,
                  mask_paths: bool) -> tuple[list[str], int]:
  """Per run directory: its summary and metrics log against the reference's (``mask_paths``:
  with each directory written as DIR, for configs that name other runs' paths)."""
  differences, resumed = [], 0
  for name in names:
    got, want = (_read_run(os.path.join(base, name), base if mask_paths else "")
                 for base in (chaos, reference))
    if got is None:
      differences.append(f"{name}: no summary after the chaos")
      continue
    resumed += got[0].pop("resumed", 0) > 0
    want[0].pop("resumed", 0)
    for part, (a, b) in zip(("summary", "metrics.jsonl"), zip(got, want)):
      if a != b:
        differences.append(f"{name}: {part} differs")
  return differences, resumed


def _read_table(base: str) -> list[dict] | None:
  path = os.path.join(base, "pipeline.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    rows = json.loads(_masked(f.read(), base))["stages"]
  # Latencies are measured anew by each start that reaches a stage's end.
  return [{k: v for k, v in row.items() if not k.startswith("timing/")} for row in rows]


def _masked(text: str, base: str) -> str:
  """``text`` with the directory ``base`` written as DIR (a pipeline's configs name their
  stages' paths)."""
  return text.replace(f"{base}/", "DIR/").replace(f'"{base}"', '"DIR"')


def _read_run(directory: str, base: str = ""):
  path = os.path.join(directory, "summary.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    summary = json.loads(_masked(f.read(), base) if base else f.read())
  resumed = summary.get("timing/resumed_from_step", 0)
  # The bytes orbax spends on the int8 directory vary with its layout between identical runs
  # (the weights' own bytes, int8/weight_bytes, are compared).
  summary = {k: v for k, v in summary.items()
             if not k.startswith("timing/") and not k.endswith("disk_bytes")}
  summary["resumed"] = resumed
  with open(os.path.join(directory, "metrics.jsonl")) as f:
    metrics = [{k: v for k, v in json.loads(line).items() if not k.endswith("disk_bytes")}
               for line in f]
  return summary, metrics


def _read_report(path: str, base: str) -> str | None:
  if not os.path.exists(path):
    return None
  with open(path) as f:  # The command and the records' path name the directory: drop it.
    text = f.read().replace(f"--workdir={base} ", "--workdir=DIR ")
    return text.replace(f"{base}/", "DIR/")  # Whole path components only: the config's
    # file name starts with the chaos directory's name.


def _exit_text(code: int) -> str:
  return {-signal.SIGKILL: "SIGKILL", SIGTERM_EXIT: "143 (one line)",
          -signal.SIGTERM: "SIGTERM at start-up"}.get(code, f"{code} (outlived)")


def section(target: dict) -> list[str]:
  """One target's markdown: what ran, the counts, one row per start, the differences."""
  kills, differences = target["kills"], target["differences"]
  lines = [f"## {target['title']}", "", target["description"], "",
           f"**Kills landed: {sum(landed(k['exit']) for k in kills)}. "
           f"{target['unit']} resumed from a checkpoint: {target['resumed']}. "
           f"Differences found: {len(differences)}** ({target['compared']}).", "",
           *([f"The last start outlived its kill moment and finished the {target['unit'].lower()}"
              ", so fewer kills landed than asked.", ""]
             if sum(landed(k["exit"]) for k in kills) < target["asked"] else []),
           f"| start | kill moment | failpoint / delay | exit | lived (s) | "
           f"{target['unit'].lower()} finished after |", "|---|---|---|---|---|---|"]
  for i, kill in enumerate(kills, 1):
    moment = kill["failpoint"] or f"{kill['delay']:.2f} s"
    lines.append(f"| {i} | {kill['mode']} | `{moment}` | {_exit_text(kill['exit'])} | "
                 f"{kill['lived']:.1f} | {kill['finished']} |")
  lines += ["", "Differences:" if differences else "No differences.", ""]
  lines += [f"- {d}" for d in differences]
  return lines + ([""] if differences else [])


def write_markdown(path: str, targets: list[dict]) -> None:
  lines = produced_by.header("Chaos: kills at random moments, then compare with an "
                             "uninterrupted run") + [f"Date: {datetime.date.today()}.", ""]
  for target in targets:
    lines += section(target)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(lines).rstrip("\n") + "\n")


def finished_stages(workdir: str) -> int:
  return sum(os.path.exists(os.path.join(workdir, stage, "summary.json"))
             for stage in PIPELINE_STAGES)


def kill_until_done(rng: random.Random, args, command, reference_seconds: float,
                    chaos: str, allowed: list[str], finished, stages: int = 0) -> list[dict]:
  """Starts ``command`` again and again, each start killed at a drawn moment, until
  ``args.kills`` kills have landed; then one start runs to the end."""
  plan = kill_modes(rng, args.kills, allowed)
  kills: list[dict] = []
  count = 0
  while True:
    if count >= args.kills:  # Enough: this start runs to the end.
      mode, failpoint, delay = "none", "", 0.0
    else:  # A kill that did not land (its moment never came) is drawn again.
      mode, failpoint, delay = draw_kill(rng, plan[count], reference_seconds,
                                         stages - finished_stages(chaos) if stages else None)
    code, lived = start_until_killed(command, mode, failpoint, delay)
    if mode == "none":
      if code != 0:
        raise RuntimeError(f"the final start exited with {code}")
      break
    count += landed(code)
    kills.append({"mode": mode, "failpoint": failpoint, "delay": delay, "exit": code,
                  "lived": lived, "finished": finished(chaos)})
    print(f"start {len(kills)}: {mode} {failpoint or f'{delay:.2f}s'} -> exit {code}, "
          f"{finished(chaos)} finished", flush=True)
    if code == 0 and count < args.kills:
      if stages:  # A finished pipeline has nothing left to kill: the table says so.
        break
      if "report" in plan:
        plan[count] = "report"  # The grid is complete: only the report is left to kill.
    if len(kills) > 20 * args.kills:
      raise RuntimeError("too many starts outlived their kill moment")
  return kills


def chaos_sweep(args, rng: random.Random) -> dict:
  directory = os.path.join(args.workdir, "sweep")
  os.makedirs(directory)
  config = os.path.join(directory, "chaos_ablation.py")
  with open(config, "w") as f:
    f.write(ABLATION.format(default=os.path.join(REPO, "configs", "default.py"),
                            data_dir=os.path.join(directory, "data"),
                            cache_dir=os.path.join(directory, "cache"), steps=args.steps,
                            checkpoint_every=checkpoint_every(args.steps)))
  reference, chaos = (os.path.join(directory, d) for d in ("reference", "chaos"))
  start = time.perf_counter()
  subprocess.run(sweep_command(config, reference), cwd=REPO, env=environment(), check=True,
                 stdout=subprocess.DEVNULL)
  reference_seconds = time.perf_counter() - start
  allowed = [m for m in args.modes.split(",") if m in MODES]
  kills = kill_until_done(rng, args, sweep_command(config, chaos), reference_seconds, chaos,
                          allowed, finished_runs)
  differences, resumed = compare(reference, chaos)
  runs = len([d for d in os.listdir(reference) if os.path.isdir(os.path.join(reference, d))
              and d != "cache"])
  return {"title": "Sweep: SIGKILL at random moments", "kills": kills, "asked": args.kills,
          "differences": differences, "resumed": resumed, "unit": "Runs",
          "compared": "summaries timing aside, metrics logs, report table and CSV",
          "description": (
              f"Grid: {runs} runs (tiny CNN on digits, 2 shots x 2 learning rates x 3 seeds, "
              f"vmapped groups of 6, {args.steps} steps, a checkpoint every "
              f"{checkpoint_every(args.steps)}). The uninterrupted reference took "
              f"{reference_seconds:.1f} s.")}


def chaos_pipeline(args, rng: random.Random) -> dict:
  directory = os.path.join(args.workdir, "pipeline")
  reference, chaos = (os.path.join(directory, d, "pipe") for d in ("reference", "chaos"))
  start = time.perf_counter()
  subprocess.run(pipeline_command(reference), cwd=REPO, env=environment(), check=True,
                 stdout=subprocess.DEVNULL)
  reference_seconds = time.perf_counter() - start
  allowed = [m for m in args.modes.split(",") if m in PIPELINE_MODES]
  kills = kill_until_done(rng, args, pipeline_command(chaos), reference_seconds, chaos,
                          allowed, finished_stages, stages=len(PIPELINE_STAGES))
  differences, resumed = compare_pipelines(reference, chaos)
  return {"title": "Pipeline: SIGKILL and SIGTERM at random moments", "kills": kills,
          "asked": args.kills,
          "differences": differences, "resumed": resumed, "unit": "Stages",
          "compared": "each stage's summary (timing and orbax's directory size aside) and "
                      "metrics log, the pipeline's table (latencies aside)",
          "description": (
              "`python -m lowres_jax.main --config=configs/default.py:tiny=1,init=scratch`: "
              "fine-tune (40 steps), distill (40), prune (20), quantize (int8, 0 steps), a "
              "checkpoint every 20 steps; a SIGTERM must stop a start with one line and exit "
              f"143. The uninterrupted reference took {reference_seconds:.1f} s.")}


TARGETS = {"sweep": chaos_sweep, "pipeline": chaos_pipeline}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--kills", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--workdir", default="/tmp/lowres_jax_chaos")
  parser.add_argument("--out", default="results/chaos_sweep.md")
  parser.add_argument("--targets", default="sweep,pipeline",
                      help="what to kill, in order: sweep, pipeline (each a section of --out)")
  parser.add_argument("--steps", type=int, default=3000,
                      help="steps per sweep run (a checkpoint every tenth): long enough for "
                      "every kill to land while the grid trains")
  parser.add_argument("--modes", default=",".join(dict.fromkeys(MODES + PIPELINE_MODES)),
                      help="kill moments to draw from (the test suite leaves out the timed "
                      "ones); each target uses those it knows")
  args = parser.parse_args()
  shutil.rmtree(args.workdir, ignore_errors=True)
  os.makedirs(args.workdir)
  targets = []
  for name in args.targets.split(","):
    # Each target its own seeded stream: one target's outcome does not move the other's draws.
    targets.append(TARGETS[name](args, random.Random(f"{args.seed}-{name}")))
    result = targets[-1]
    print(f"{name}: kills landed: {sum(landed(k['exit']) for k in result['kills'])}, "
          f"resumed: {result['resumed']}, differences: {len(result['differences'])}")
  write_markdown(args.out, targets)
  print(f"-> {args.out}")
  return 1 if any(t["differences"] for t in targets) else 0


if __name__ == "__main__":
  sys.exit(main())
