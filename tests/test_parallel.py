"""The same run on 1 device, 8 fake devices, and 2 processes gives the same loss curve."""

import json
import socket
import subprocess
import sys

import numpy as np

from conftest import REPO, cli_flags, cpu_env, run_main

TINY = "--config=configs/default.py:tiny=1,init=scratch"


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
