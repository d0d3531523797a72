"""Nothing lost, whatever happens: a double launch, a signal, a full disk, edited files."""

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, cli_flags, cpu_env, run_main, tiny_config
from lowres_jax import checkpoint, failpoints, storage
from lowres_jax.config import ConfigError
from lowres_jax.train import loop, workdir as workdir_lib
from test_resume import ARGS, checkpoint_steps, without_timing


def _flags(data_dir, tmp_path):
  return [*ARGS, *cli_flags(data_dir, str(tmp_path / "cache"))]


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
  """The uninterrupted run every interrupted one must end equal to: (summary, metrics)."""
  directory = tmp_path_factory.mktemp("reference")
  result = run_main([*_flags(data_dir, directory), f"--workdir={directory / 'run'}"])
  assert result.returncode == 0, result.stderr[-2000:]
  return _outcome(directory / "run")


def _outcome(workdir):
  summary = json.loads((workdir / "summary.json").read_text())
  with open(workdir / "metrics.jsonl") as f:
    return without_timing(summary), [json.loads(line) for line in f]


def _error_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if line.startswith("lowres_jax:")]


def _start(args, hold_at=None):
  """A run in the background; ``hold_at=(point, hit, release_path)`` holds it at that
  failpoint until the test creates the release file, so it cannot finish early."""
  env = cpu_env(1)
  if hold_at is not None:
    point, hit, release = hold_at
    env[failpoints.ENV] = f"{point}:{hit}:wait={release}"
  return subprocess.Popen([sys.executable, "-m", "lowres_jax.main", *args], cwd=REPO,
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(workdir, process, step=20):
  deadline = time.time() + 240
  while not any(s >= step for s in checkpoint_steps(workdir)):
    assert process.poll() is None and time.time() < deadline, "the run ended before step 20"
    time.sleep(0.02)


def test_a_second_process_on_a_workdir_stops_at_once_and_a_killed_holder_blocks_nothing(
    tmp_path, data_dir):
  workdir = tmp_path / "run"
  args = [*_flags(data_dir, tmp_path), "--config.train.duration=400 steps",
          "--config.checkpoint_every=200", f"--workdir={workdir}"]
  # Held at its second checkpoint save (the test never releases it), after the first landed.
  first = _start(args, hold_at=("checkpoint.save", 2, tmp_path / "never"))
  _wait_for_checkpoint(workdir, first, step=200)
  second = run_main(args)
  assert first.poll() is None
  assert second.returncode == 2
  (line,) = _error_lines(second.stderr)
  assert f"is in use by PID {first.pid} on host" in line and "Traceback" not in second.stderr
  first.kill()  # SIGKILL: the lock file stays behind, the kernel's lock does not.
  first.wait()
  resumed = run_main(args)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  _, metrics = _outcome(workdir)
  logged = [record["step"] for record in metrics if "train/loss" in record]
  assert logged == sorted(set(logged)) and logged[-1] == 400  # One writer, no doubled lines.


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_a_checkpoint_and_a_rerun_resumes_to_the_same_result(
    tmp_path, data_dir, reference, signum):
  workdir = tmp_path / "run"
  args = [*_flags(data_dir, tmp_path), f"--workdir={workdir}"]
  release = tmp_path / "release"
  # Held at its second checkpoint save, so the signal lands mid-run on any machine.
  process = _start(args, hold_at=("checkpoint.save", 2, release))
  _wait_for_checkpoint(workdir, process)
  process.send_signal(signum)
  time.sleep(0.5)  # The handler records the request; then the run goes on to its next boundary.
  release.touch()
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 128 + signum
  (line,) = _error_lines(stderr)
  name = signal.Signals(signum).name
  assert line.startswith(f"lowres_jax: stopped by {name}: the checkpoint of step "), line
  stopped_at = int(line.split("step ")[1].split()[0])
  assert stopped_at in checkpoint_steps(workdir) and "Traceback" not in stderr
  assert not (workdir / "summary.json").exists()
  if signum == signal.SIGINT:
    return  # Same code path as SIGTERM from here; one rerun comparison keeps the suite short.
  resumed = run_main(args)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert json.loads((workdir / "summary.json").read_text())["timing/resumed_from_step"] == (
      stopped_at)
  assert _outcome(workdir) == reference


PIPELINE_ARGS = ["--config=configs/default.py:tiny=1,init=scratch"]


def _pipeline_outcome(workdir):
  """What a pipeline computed: per stage its summary (bar timings) and its table row's
  accuracy and parameter counts."""
  rows = json.loads((workdir / "pipeline.json").read_text())["stages"]
  summaries = []
  for i, row in enumerate(rows):
    summary = without_timing(json.loads((workdir / f"{i + 1}_{row['stage']}" / "summary.json")
                                        .read_text()))
    # Metrics only: the config parts of a summary name the workdir, which differs here, and
    # the bytes orbax spends on a directory vary with its layout between identical runs.
    summaries.append({k: v for k, v in summary.items() if "/" in k and "disk_bytes" not in k})
  return summaries, [(r["stage"], r["test/accuracy"], r["model/nonzero_params"]) for r in rows]


@pytest.fixture(scope="module")
def pipeline_reference(data_dir, tmp_path_factory):
  directory = tmp_path_factory.mktemp("pipeline_reference")
  result = run_main([*PIPELINE_ARGS, *cli_flags(data_dir, str(directory / "cache")),
                     f"--workdir={directory / 'pipe'}"])
  assert result.returncode == 0, result.stderr[-2000:]
  return _pipeline_outcome(directory / "pipe")


@pytest.mark.parametrize("point,hit", [("run.summary", 1), ("checkpoint.save", 2)],
                         ids=["as-a-stage-ends", "inside-a-stage"])
def test_a_signal_stops_a_pipeline_at_the_next_boundary_and_the_rerun_is_exact(
    tmp_path, data_dir, pipeline_reference, point, hit):
  workdir = tmp_path / "pipe"
  args = [*PIPELINE_ARGS, *cli_flags(data_dir, str(tmp_path / "cache")), f"--workdir={workdir}"]
  release = tmp_path / "release"
  # run.summary:1 holds the first stage after its final evaluation (the signal then lands
  # between stages); checkpoint.save:2 holds it mid-training.
  process = _start(args, hold_at=(point, hit, release))
  deadline = time.time() + 240
  while not (tmp_path / "release.held").exists():
    assert process.poll() is None and time.time() < deadline, process.stderr.read()[-2000:]
    time.sleep(0.1)
  process.send_signal(signal.SIGTERM)
  time.sleep(0.5)
  release.touch()
  _, stderr = process.communicate(timeout=240)
  assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
  (line,) = _error_lines(stderr)
  assert line.startswith("lowres_jax: stopped by SIGTERM: ") and "Traceback" not in stderr
  assert not (workdir / "2_distill" / "summary.json").exists()
  resumed = run_main(args)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert _pipeline_outcome(workdir) == pipeline_reference


@pytest.mark.parametrize("where,says", [
    ("/proc/lowres_jax_run", "cannot create --workdir=/proc/lowres_jax_run"),
    ("FILE/run", "cannot be a directory: FILE is a file"),
    ("FILE", "cannot be a directory: FILE is a file")])
def test_an_unwritable_workdir_is_one_clear_line(tmp_path, data_dir, where, says):
  (tmp_path / "FILE").write_text("a file, not a directory")
  workdir = where.replace("FILE", str(tmp_path / "FILE"))
  result = run_main([*_flags(data_dir, tmp_path), f"--workdir={workdir}"])
  assert result.returncode == 2 and "Traceback" not in result.stderr
  (line,) = _error_lines(result.stderr)
  assert says.replace("FILE", str(tmp_path / "FILE")) in line, line


def _in_process_config(data_dir, tmp_path):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.train.duration, config.checkpoint_every = "60 steps", 20
  return config


# What orbax 0.11 raises when tensorstore hits a full disk (measured on a 1 MB tmpfs).
ORBAX_FULL_DISK = ValueError(
    'RESOURCE_EXHAUSTED: Error writing "w/0" in OCDBT database at local file "/x/": Failed to '
    "write 1111433 bytes to file 14: No space left on device [os_error_code='28']")


def test_a_full_disk_at_a_checkpoint_keeps_the_previous_one_and_a_rerun_resumes(
    tmp_path, data_dir, monkeypatch):
  config = _in_process_config(data_dir, tmp_path)
  expected = without_timing(loop.run(config, str(tmp_path / "reference"), show_progress=False))
  real_save = checkpoint.ocp.CheckpointManager.save
  calls = []

  def save_until_the_disk_fills(self, step, *args, **kwargs):
    calls.append(step)
    if len(calls) == 2:
      raise ORBAX_FULL_DISK
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", save_until_the_disk_fills)
  with pytest.raises(storage.WorkdirError, match=r"could not save the checkpoint of step 40 .*"
                     r"No space left on device.*step 20 is intact"):
    loop.run(config, str(tmp_path / "run"), show_progress=False)
  monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", real_save)
  resumed = loop.run(config, str(tmp_path / "run"), show_progress=False)
  assert resumed["timing/resumed_from_step"] == 20
  assert without_timing(resumed) == expected


def test_a_full_disk_at_the_summary_leaves_none_and_a_rerun_writes_it(tmp_path, data_dir,
                                                                       monkeypatch):
  config = _in_process_config(data_dir, tmp_path)
  real_replace = os.replace

  def replace_but_not_the_summary(source, target):
    if str(target).endswith(workdir_lib.PENDING_SUMMARY_FILE):  # The write that needs space.
      raise OSError(errno.ENOSPC, "No space left on device")
    return real_replace(source, target)

  monkeypatch.setattr(storage.os, "replace", replace_but_not_the_summary)
  with pytest.raises(storage.WorkdirError,
                     match=r"could not write .*summary.pending.json: No space"):
    loop.run(config, str(tmp_path / "run"), show_progress=False)
  assert not [f for f in os.listdir(tmp_path / "run") if f.endswith(".tmp")]
  monkeypatch.setattr(storage.os, "replace", real_replace)
  summary = loop.run(config, str(tmp_path / "run"), show_progress=False)
  assert summary["timing/resumed_from_step"] == 60 and "test/accuracy" in summary


def _interrupted_run(data_dir, tmp_path):
  """A run with checkpoints and no summary, as a kill after its last checkpoint leaves."""
  config = _in_process_config(data_dir, tmp_path)
  workdir = tmp_path / "run"
  loop.run(config, str(workdir), show_progress=False)
  (workdir / "summary.json").unlink()
  return config, workdir


def test_a_hand_edited_split_is_refused(tmp_path, data_dir):
  config, workdir = _interrupted_run(data_dir, tmp_path)
  split = json.loads((workdir / "split.json").read_text())
  split["train_ids"] = split["train_ids"][1:]  # Edited, its sha256 left as it was.
  (workdir / "split.json").write_text(json.dumps(split))
  with pytest.raises(ConfigError, match="split.json differs: edited by hand"):
    loop.run(config, str(workdir), show_progress=False)


@pytest.mark.parametrize("name", ["config.json", "split.json"])
def test_a_damaged_run_file_is_named(tmp_path, data_dir, name):
  config, workdir = _interrupted_run(data_dir, tmp_path)
  (workdir / name).write_text('{"half": ')
  with pytest.raises(storage.WorkdirError, match=f"{name} .* is not valid JSON"):
    loop.run(config, str(workdir), show_progress=False)


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_litter(tmp_path):
  path = tmp_path / "report.md"
  storage.write_text(str(path), "old")
  with contextlib.suppress(RuntimeError), storage.replacing(str(path)) as handle:
    handle.write("half of the new")
    raise RuntimeError("killed mid-write")
  assert path.read_text() == "old" and os.listdir(tmp_path) == ["report.md"]


def test_pending_summaries_are_promoted_only_for_a_whole_group(tmp_path):
  runs = [str(tmp_path / name) for name in ("a", "b")]
  for run in runs:
    os.makedirs(run)
  pending = [os.path.join(r, workdir_lib.PENDING_SUMMARY_FILE) for r in runs]
  storage.write_json(pending[0], {"run": "a"})  # Killed before b's pending summary.
  workdir_lib.settle_pending_summaries(runs)
  assert not any(map(os.path.exists, pending))
  assert all(workdir_lib.read_summary(r) is None for r in runs)  # The group reruns whole.
  for path, name in zip(pending, "ab"):
    storage.write_json(path, {"run": name})  # Killed before the renames.
  workdir_lib.settle_pending_summaries(runs)
  assert [workdir_lib.read_summary(r) for r in runs] == [{"run": "a"}, {"run": "b"}]


def test_a_workdir_saved_before_config_adapt_existed_is_the_same_run(tmp_path):
  import ml_collections
  from lowres_jax.train.adapt import config_defaults
  config = ml_collections.ConfigDict({"seed": 0, "adapt": config_defaults(),
                                      "eval": {"every": 5, "probes": ()},
                                      "source": {"seed": 1, "adapt": config_defaults()}})
  old = {"seed": 0, "eval": {"every": 5}, "source": {"seed": 1}}  # Saved before adapt existed.
  (tmp_path / "config.json").write_text(json.dumps(old))
  (tmp_path / "checkpoints").mkdir()
  (tmp_path / "checkpoints" / "20").mkdir()
  workdir_lib.check_same_config(config, str(tmp_path))  # Same run: no error.
  config.adapt.methods = ("sam",)
  with pytest.raises(ConfigError, match="adapt.methods"):
    workdir_lib.check_same_config(config, str(tmp_path))


@contextlib.contextmanager
def _small_disk(path, size_kb: int, free_kb: int, options: str = ""):
  """A real ``size_kb`` tmpfs at ``path`` with a ballast file leaving ``free_kb`` free (root
  only; the test skips where mounting is not allowed). Yields the ballast's path."""
  path.mkdir()
  mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k{options}", "tmpfs",
                          str(path)], capture_output=True, text=True)
  if mount.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
  try:
    ballast = path / "ballast"
    if free_kb is not None:
      stat = os.statvfs(path)
      ballast.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - free_kb * 1024))
    yield ballast
  finally:
    subprocess.run(["umount", str(path)], check=False)


def test_a_really_full_disk_is_one_line_and_the_rerun_after_freeing_space_is_exact(
    tmp_path, data_dir, reference):
  """Orbax's own writer threads on a real full tmpfs, not a stub: one whole line naming the
  cause (no orbax error logs), and after the ballast goes, the same result as an
  uninterrupted run."""
  with _small_disk(tmp_path / "disk", 2048, free_kb=60) as ballast:
    workdir = tmp_path / "disk" / "run"
    full = run_main([*_flags(data_dir, tmp_path), f"--workdir={workdir}"])
    assert full.returncode == 2, full.stderr[-3000:]
    # Tensorstore's threads may still print 'Event loop is closed' tracebacks from inside
    # asyncio (not always through sys.excepthook, so not always dropped): measured, not fixed.
    (line,) = _error_lines(full.stderr)
    assert line.startswith("lowres_jax: error: could not save the checkpoint") and (
        "the disk is full (No space left on device)" in line and line.endswith("to resume.")), line
    ballast.unlink()
    rerun = run_main([*_flags(data_dir, tmp_path), f"--workdir={workdir}"])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _outcome(workdir) == reference


@pytest.mark.parametrize("options, free_kb, says", [
    (",ro", None, "is not writable"), ("", 16, "No space left on device")],
    ids=["read-only", "full"])
def test_a_data_dir_that_cannot_take_the_dataset_is_one_clear_line(tmp_path, options, free_kb,
                                                                   says):
  with _small_disk(tmp_path / "data", 1024, free_kb, options):
    result = run_main([*ARGS, f"--config.data.data_dir={tmp_path / 'data'}",
                       f"--config.cache_dir={tmp_path / 'cache'}", "--progress=false",
                       f"--workdir={tmp_path / 'run'}"])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = _error_lines(result.stderr)
    assert "config.data.data_dir" in line and says in line, line


def test_a_killed_dataset_preparation_leaves_nothing_behind_for_the_next(tmp_path):
  from lowres_jax.data import sources
  leftover = tmp_path / "sklearn_digits" / "incomplete.ABC123_1.0.0"
  leftover.mkdir(parents=True)
  (leftover / "sklearn_digits-train.array_record-00000-of-00001").write_bytes(b"half written")
  train = sources.load_split("digits", "train", str(tmp_path))
  assert len(train) > 1000 and not leftover.exists()
