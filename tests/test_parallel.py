"""The same run on 1 device, 8 fake devices, and 2 processes gives the same loss curve."""

import json
import socket
import subprocess
import sys

import numpy as np

from conftest import REPO, cli_flags, cpu_env, run_main

TINY = "--config=configs/default.py:tiny=1,init=scratch,stages=finetune"


def losses(workdir) -> np.ndarray:
  with open(workdir / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  return np.array([r["train/loss"] for r in records if "train/loss" in r])


def summary(workdir) -> dict:
  return json.loads((workdir / "summary.json").read_text())


def test_one_and_eight_devices_give_the_same_run(tmp_path, data_dir):
  flags = cli_flags(data_dir, str(tmp_path / "cache"))
  for devices in (1, 8):
    result = run_main([TINY, f"--workdir={tmp_path / str(devices)}", *flags], devices=devices)
    assert result.returncode == 0, result.stderr[-2000:]
  one, eight = losses(tmp_path / "1"), losses(tmp_path / "8")
  assert len(one) == 4
  np.testing.assert_allclose(one, eight, rtol=2e-4, atol=1e-5)
  np.testing.assert_allclose(summary(tmp_path / "1")["test/loss"],
                             summary(tmp_path / "8")["test/loss"], rtol=1e-3)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_on_loopback_match_one_process(tmp_path, data_dir):
  flags = cli_flags(data_dir, str(tmp_path / "cache"))
  reference = run_main([TINY, f"--workdir={tmp_path / 'single'}", *flags], devices=4)
  assert reference.returncode == 0, reference.stderr[-2000:]
  port = free_port()
  processes = [
      subprocess.Popen(
          [sys.executable, "-m", "lowres_jax.main", TINY, f"--workdir={tmp_path / 'multi'}",
           *flags, f"--coordinator=127.0.0.1:{port}", "--num_processes=2",
           f"--process_id={i}"],
          cwd=REPO, env=cpu_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outputs = [p.communicate(timeout=300) for p in processes]
  for p, (_, err) in zip(processes, outputs):
    assert p.returncode == 0, err[-2000:]
  assert "| test |" in outputs[0][0]  # Only process 0 prints the table.
  np.testing.assert_allclose(losses(tmp_path / "single"), losses(tmp_path / "multi"),
                             rtol=2e-4, atol=1e-5)


def test_vmapped_sweep_on_eight_devices_matches_one_device(tmp_path, data_dir):
  from lowres_jax import sweep_dir
  config = tmp_path / "seeds.py"
  config.write_text(
      "import importlib.util\n"
      f"spec = importlib.util.spec_from_file_location('tiny', {str(REPO / 'tests' / 'configs' / 'tiny_sweep.py')!r})\n"
      "tiny = importlib.util.module_from_spec(spec); spec.loader.exec_module(tiny)\n"
      "from lowres_jax.sweep import axis, product\n"
      "TITLE, BASELINE = 'seeds', None\n"
      "def get_config():\n"
      "  c = tiny.get_config()\n"
      "  c.init.kind = 'scratch'\n"
      "  return c\n"
      "def get_sweep():\n"
      "  return product(axis('optim.lr', (0.02, 0.05)), axis('seed', range(2)))\n")
  for devices in (1, 8):
    env = cpu_env(devices)
    env.update(LOWRES_TEST_DATA_DIR=data_dir, LOWRES_TEST_CACHE_DIR=str(tmp_path / "cache"))
    subprocess.run([sys.executable, "-m", "lowres_jax.sweep", f"--config={config}",
                    f"--workdir={tmp_path / str(devices)}", "--vmap=true", "--progress=false"],
                   cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
  _, one = sweep_dir.collect_records(str(tmp_path / "1"))
  _, eight = sweep_dir.collect_records(str(tmp_path / "8"))
  assert len(one) == len(eight) == 4
  for a, b in zip(one, eight):
    assert a["timing/runs_in_group"] == 4
    np.testing.assert_allclose(a["test/loss"], b["test/loss"], rtol=1e-3)
