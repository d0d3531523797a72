"""The chaos script's short variant: 3 SIGKILLs at failpoints, then nothing differs."""

import subprocess
import sys

from conftest import REPO, cpu_env


def test_a_sweep_killed_three_times_ends_as_an_uninterrupted_one(tmp_path):
  out = tmp_path / "chaos.md"
  result = subprocess.run(
      [sys.executable, "launch/chaos_sweep.py", "--targets=sweep", "--kills=3", "--steps=60", "--seed=1",
       "--modes=checkpoint,summary,file,report", f"--workdir={tmp_path / 'chaos'}",
       f"--out={out}"], cwd=REPO, env=cpu_env(1), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  report = out.read_text()
  assert "Kills landed: 3." in report and "Differences found: 0**" in report
