"""A run killed with SIGKILL and restarted ends exactly like an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, cli_flags, cpu_env, run_main
from lowres_jax.train.loop import TIMING_PREFIX

ARGS = ["--config=configs/default.py:tiny=1,init=scratch,stages=finetune",
        "--config.train.duration=300 steps", "--config.checkpoint_every=20",
        "--config.eval.every=40"]


def checkpoint_steps(workdir) -> list[int]:
  directory = workdir / "checkpoints"
  if not directory.exists():
    return []
  return sorted(int(d.name) for d in directory.iterdir() if d.name.isdigit())


def start_and_kill_after_checkpoint(command: list[str], env: dict, run_dir, step: int = 40):
  """Starts ``command`` and SIGKILLs it once ``run_dir`` holds a checkpoint at ``step``."""
  process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while not any(s >= step for s in checkpoint_steps(run_dir)) and time.time() < deadline:
    time.sleep(0.02)
  os.kill(process.pid, signal.SIGKILL)
  process.wait()
  assert not (run_dir / "summary.json").exists(), "the run finished before it could be killed"
  assert checkpoint_steps(run_dir), "no checkpoint was written before the kill"


def without_timing(summary: dict) -> dict:
  return {k: v for k, v in summary.items() if not k.startswith(TIMING_PREFIX)}


@pytest.mark.parametrize("config_arg, extra", [
    ("", []), (",batch_norm=1", []),
    (",init=source", ["--config.adapt.methods=('l2sp','ema','sam','llrd')"]),
    ("", ["--config.prune.method=magnitude", "--config.prune.schedule=gradual",
          "--config.prune.every=15"])],
    ids=["plain", "batch_norm", "methods", "prune"])
def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path, data_dir, config_arg, extra):
  """With BatchNorm, the running statistics must be checkpointed and restored too; with
  methods, the EMA weights (in the state) and the pretrained anchor (reloaded on resume)."""
  flags = [ARGS[0] + config_arg, *ARGS[1:], *extra, *cli_flags(data_dir, str(tmp_path / "cache"))]
  reference = run_main([*flags, f"--workdir={tmp_path / 'reference'}"])
  assert reference.returncode == 0, reference.stderr[-2000:]

  workdir = tmp_path / "killed"
  start_and_kill_after_checkpoint(
      [sys.executable, "-m", "lowres_jax.main", *flags, f"--workdir={workdir}"], cpu_env(1),
      workdir)

  resumed = run_main([*flags, f"--workdir={workdir}"])
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  final = json.loads((workdir / "summary.json").read_text())
  expected = json.loads((tmp_path / "reference" / "summary.json").read_text())
  assert final["timing/resumed_from_step"] > 0
  assert without_timing(final) == without_timing(expected)
  if "prune/sparsity" in final:  # The pruned weights stayed zero through training and resume.
    assert abs(final["prune/sparsity"] - 0.5) < 1e-3
  with open(workdir / "metrics.jsonl") as f, open(tmp_path / "reference" / "metrics.jsonl") as g:
    assert [json.loads(l) for l in f] == [json.loads(l) for l in g]


def test_sigkilled_vmapped_sweep_resumes_to_the_uninterrupted_result(tmp_path, data_dir):
  from conftest import REPO as repo
  from lowres_jax import sweep_dir
  config = tmp_path / "long_sweep.py"
  config.write_text(
      "import importlib.util\n"
      f"spec = importlib.util.spec_from_file_location('tiny', {str(repo / 'tests' / 'configs' / 'tiny_sweep.py')!r})\n"
      "tiny = importlib.util.module_from_spec(spec); spec.loader.exec_module(tiny)\n"
      "from lowres_jax.sweep import axis, product\n"
      "TITLE, BASELINE = 'long', None\n"
      "def get_config():\n"
      "  c = tiny.get_config()\n"
      "  c.init.kind, c.train.duration, c.checkpoint_every = 'scratch', '300 steps', 20\n"
      "  return c\n"
      "def get_sweep():\n"
      "  return product(axis('optim.lr', (0.02, 0.05)), axis('seed', range(2)))\n")
  env = cpu_env()
  env.update(LOWRES_TEST_DATA_DIR=data_dir, LOWRES_TEST_CACHE_DIR=str(tmp_path / "cache"))

  def command(workdir):
    return [sys.executable, "-m", "lowres_jax.sweep", f"--config={config}",
            f"--workdir={workdir}", "--vmap=true", "--progress=false"]

  subprocess.run(command(tmp_path / "reference"), cwd=REPO, env=env, check=True,
                 capture_output=True, timeout=300)
  start_and_kill_after_checkpoint(command(tmp_path / "killed"), env,
                                  tmp_path / "killed" / "lr=0.02,seed=0")
  subprocess.run(command(tmp_path / "killed"), cwd=REPO, env=env, check=True,
                 capture_output=True, timeout=300)
  _, expected = sweep_dir.collect_records(str(tmp_path / "reference"))
  _, resumed = sweep_dir.collect_records(str(tmp_path / "killed"))
  assert len(resumed) == 4 and all(r["timing/resumed_from_step"] > 0 for r in resumed)
  assert [without_timing(r) for r in resumed] == [without_timing(r) for r in expected]
