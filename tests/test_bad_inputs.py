"""Malformed inputs to ``python -m lowres_jax.main``: each one ends with exit code 2 and one
``lowres_jax: error:`` line that names the problem, never a traceback.

Each case is one subprocess on the seconds-long tiny default config. Cases the config
validation catches fail before any data is read.

Durations: '0 steps' (and equally '0 epochs' or '0 examples', which duration_to_steps turns into
0 steps) is valid: it evaluates without training (zero-shot, nearest class mean). So it is not a
case here; only negative and unparseable durations are.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import cli_flags, run_main

TINY = "--config=configs/default.py:tiny=1,init=scratch,stages=finetune"
PREFIX = "lowres_jax: error:"
# A config file with a Python syntax error, written to tmp_path by the test ({tmp} below).
BROKEN_CONFIG = "import ml_collections\n\ndef get_config(:\n  return ml_collections.ConfigDict()\n"

# (argv after the common flags, substrings the error line must contain, fake CPU devices).
# "{tmp}" in an argument is replaced by the test's tmp_path.
CASES = [
    pytest.param([TINY, "--config.init.kind=checkpoint", "--config.init.path=hf:goo gle/vit"],
                 ["hf:goo gle/vit: expected hf:ORG/NAME"], 1, id="hf-id-malformed"),
    pytest.param([TINY, "--config.data.name=fortunes", "--config.data.classes=(0,1)"],
                 ["fortunes has no 'image' feature", "text config"], 1,
                 id="image-config-on-text-data",
                 marks=pytest.mark.skipif(not os.path.isdir("/usr/share/games/fortunes"),
                                          reason="needs Debian's fortunes")),
    pytest.param([TINY, "--config.optim.lr=-0.5"],
                 ["config.optim.lr = -0.5", "finite number of 0 or more"], 1, id="lr-negative"),
    pytest.param([TINY, "--config.optim.lr=nan"],
                 ["config.optim.lr = nan", "finite number of 0 or more"], 1, id="lr-nan"),
    pytest.param([TINY, "--config.data.classes=5"],
                 ["one class", "two or more classes"], 1, id="one-class-task"),
    pytest.param([TINY, "--config.seed=-1"], ["config.seed = -1", "0 or more"], 1,
                 id="seed-negative"),
    pytest.param([TINY, "--config.optim.lrr=0.1"],
                 ["--config.optim.lrr", "Did you mean --config.optim.lr?"], 1, id="unknown-key"),
    pytest.param([TINY, "--config.dat.shots=5"],
                 ["--config.dat.shots", "Did you mean --config.data.shots?"], 1,
                 id="mistyped-section"),
    pytest.param([TINY, "--config.optim.lr=abc"],
                 ["--config.optim.lr", "'abc'", "takes a float"], 1, id="lr-not-a-number"),
    pytest.param([TINY, "--config.data.shots=five"],
                 ["--config.data.shots", "'five'", "takes an int"], 1, id="shots-not-a-number"),
    pytest.param(["--config=configs/nope.py"],
                 ["configs/nope.py does not exist", "default.py"], 1, id="config-path-missing"),
    pytest.param(["--config={tmp}/broken.py"],
                 ["broken.py, line 3", "SyntaxError"], 1, id="config-syntax-error"),
    pytest.param(["--config=configs/default.py:shotz=5"],
                 ["unknown config arguments ['shotz']", "known: shots"], 1,
                 id="unknown-config-arg"),
    pytest.param([TINY, "--config.data.name=no_such_dataset"],
                 ["unknown dataset 'no_such_dataset'"], 1, id="missing-dataset"),
    pytest.param([TINY, "--config.init.kind=checkpoint",
                  "--config.init.path=/nonexistent/model.safetensors"],
                 ["config.init.path", "'/nonexistent/model.safetensors'"], 1,
                 id="missing-checkpoint"),
    pytest.param([TINY, "--config.init.kind=workdir", "--config.init.path=/nonexistent"],
                 ["config.init.path = '/nonexistent' does not exist"], 1,
                 id="missing-init-workdir"),
    pytest.param([TINY, "--config.data.shots=100000"],
                 ["shots=100000", "Lower config.data.shots"], 1, id="too-many-shots"),
    pytest.param([TINY, "--config.data.shots=0"],
                 ["config.data.shots = 0", "-1 for all"], 1, id="zero-shots"),
    pytest.param([TINY, "--config.data.shots=-3"],
                 ["config.data.shots = -3", "-1 for all"], 1, id="negative-shots"),
    pytest.param([TINY, "--config.data.classes=(0,99)"],
                 ["config.data.classes names [99]", "0-9"], 1, id="class-out-of-range"),
    pytest.param([TINY, "--config.data.classes=()"],
                 ["config.data.classes is empty"], 1, id="no-classes"),
    pytest.param([TINY, "--config.train.duration=-5 steps"],
                 ["config.train.duration = '-5 steps' is negative"], 1, id="negative-duration"),
    pytest.param([TINY, "--config.train.duration=30 eons"],
                 ["config.train.duration = '30 eons'", "'30 epochs'"], 1,
                 id="malformed-duration"),
    pytest.param([TINY, "--config.train.batch_size=0"],
                 ["config.train.batch_size = 0 must be positive"], 1, id="zero-batch-size"),
    pytest.param([TINY, "--config.train.batch_size=-4"],
                 ["config.train.batch_size = -4 must be positive"], 1, id="negative-batch-size"),
    pytest.param([TINY, "--config.train.batch_size=12"],
                 ["config.train.batch_size = 12", "devices (8)", "8 or 16"], 8,
                 id="batch-not-divisible-by-devices"),
    pytest.param([TINY, "--config.optim.lr=1e30"],
                 ["train/loss is", "Lower config.optim.lr"], 1, id="nan-loss"),
    pytest.param([TINY, "--config.freeze=.*"],
                 ["config.freeze = '.*' freezes every parameter", "'0 steps'"], 1,
                 id="everything-frozen"),
]


@pytest.mark.parametrize("args, expected, devices", CASES)
def test_bad_input_is_one_clear_error(args, expected, devices, tmp_path, data_dir):
  (tmp_path / "broken.py").write_text(BROKEN_CONFIG)
  args = [a.replace("{tmp}", str(tmp_path)) for a in args]
  result = run_main([*args, f"--workdir={tmp_path / 'run'}",
                     *cli_flags(data_dir, str(tmp_path / "cache"))], devices=devices)
  stderr = result.stderr
  assert "Traceback" not in stderr, stderr[-3000:]
  assert result.returncode == 2, stderr[-3000:]
  lines = [line for line in stderr.splitlines() if line.startswith("lowres_jax:")]
  assert len(lines) == 1 and lines[0].startswith(PREFIX), stderr[-3000:]
  for text in expected:
    assert text in lines[0], lines[0]


# A workdir's own files, damaged before the run starts: (relative path, how, error text).
DAMAGED_FILES = [
    pytest.param("summary.json", "directory", ["summary.json (a finished run's summary) is a "
                                               "directory"], id="summary-is-a-directory"),
    pytest.param("diverged.json", '{"step": ', ["diverged.json", "is not valid JSON"],
                 id="diverged-record-truncated"),
    pytest.param("diverged.json", '{"at": 3}', ["diverged.json holds no integer 'step'"],
                 id="diverged-record-without-step"),
]


@pytest.mark.parametrize("name, content, expected", DAMAGED_FILES)
def test_a_damaged_workdir_file_is_one_clear_error(name, content, expected, tmp_path, data_dir):
  workdir = tmp_path / "run"
  workdir.mkdir()
  if content == "directory":
    (workdir / name).mkdir()
  else:
    (workdir / name).write_text(content)
  result = run_main([TINY, f"--workdir={workdir}", *cli_flags(data_dir, str(tmp_path / "cache"))])
  assert "Traceback" not in result.stderr and result.returncode == 2, result.stderr[-3000:]
  (line,) = [l for l in result.stderr.splitlines() if l.startswith("lowres_jax:")]
  assert all(text in line for text in expected), line


TEXT_TINY = "--config=configs/text_fortunes.py:tiny=1"


@pytest.mark.parametrize("tokenizer,expected", [
    ("/nonexistent/tokenizer.json", ["no tokenizer at '/nonexistent/tokenizer.json'",
                                     "config.data.tokenizer takes"]),
    ("{tmp}", ["no tokenizer.json"]),
    ("{tmp}/broken.py", ["is not a Hugging Face tokenizer.json", "config.data.tokenizer"]),
], ids=["missing", "folder-without-one", "not-a-tokenizer"])
def test_a_bad_tokenizer_is_one_clear_error(tokenizer, expected, tmp_path):
  (tmp_path / "broken.py").write_text(BROKEN_CONFIG)
  result = run_main([TEXT_TINY, f"--config.data.tokenizer={tokenizer.replace('{tmp}', str(tmp_path))}",
                     f"--workdir={tmp_path / 'run'}", f"--config.cache_dir={tmp_path / 'cache'}",
                     "--progress=false"])
  assert "Traceback" not in result.stderr and result.returncode == 2, result.stderr[-3000:]
  (line,) = [l for l in result.stderr.splitlines() if l.startswith("lowres_jax:")]
  assert all(text in line for text in expected), line


def _write_user_files(case: str, root) -> str:
  """The dataset name of a broken user dataset for ``case``, its files written under root."""
  from PIL import Image
  pixel = np.full((8, 8), 128, np.uint8)
  if case in ("empty-class-folder", "unreadable-image", "too-many-shots"):
    for name in ("a", "b"):
      (root / "photos" / name).mkdir(parents=True)
      for i in range(6):
        Image.fromarray(pixel).save(root / "photos" / name / f"{i}.png")
    if case == "empty-class-folder":
      (root / "photos" / "c").mkdir()
    if case == "unreadable-image":
      (root / "photos" / "b" / "9.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return f"folder:{root / 'photos'}"
  if case == "missing-column":
    (root / "t.csv").write_text("sentence,label\nhello,a\n")
    return f"csv:{root / 't.csv'}"
  if case == "not-utf8":
    (root / "t.csv").write_bytes("text,label\ncaf\xe9,a\n".encode("latin-1"))
    return f"csv:{root / 't.csv'}"
  if case == "duplicate-ids":
    (root / "t.jsonl").write_text('{"text": "x", "label": "a", "id": 3}\n'
                                  '{"text": "y", "label": "b", "id": 3}\n')
    return f"jsonl:{root / 't.jsonl'}"
  if case == "unseen-test-label":
    (root / "t.csv").write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n"
                                                        for i in range(8)))
    (root / "test.csv").write_text("text,label\nnew,zebra\n")
    return f"csv:{root / 't.csv'}"
  raise ValueError(case)


USER_FILE_CASES = [
    pytest.param("folder", "no-such-folder", ["does not exist"], id="folder-missing"),
    pytest.param("folder", "empty-class-folder", ["class folder", "holds no image file"],
                 id="empty-class-folder"),
    pytest.param("folder", "unreadable-image", ["cannot read image", "9.jpg", "skip_bad_files"],
                 id="unreadable-image"),
    pytest.param("folder", "too-many-shots", ["shots=50", "Lower config.data.shots"],
                 id="fewer-images-than-shots"),
    pytest.param("text", "missing-column", ["no column 'text'", "['sentence', 'label']"],
                 id="csv-missing-text-column"),
    pytest.param("text", "not-utf8", ["is not UTF-8", "line 2"], id="csv-not-utf8"),
    pytest.param("text", "duplicate-ids", ["the same id 3", "unique"], id="jsonl-duplicate-ids"),
    pytest.param("text", "unseen-test-label", ["['zebra']", "never has"],
                 id="test-label-unseen-in-training"),
]


@pytest.mark.parametrize("kind, case, expected", USER_FILE_CASES)
def test_a_bad_user_dataset_is_one_clear_error_and_leaves_nothing_prepared(
    kind, case, expected, tmp_path, data_dir):
  name = (f"folder:{tmp_path / 'nowhere'}" if case == "no-such-folder"
          else _write_user_files(case, tmp_path))
  user_data_dir = tmp_path / "tfds"
  if kind == "folder":
    args = [TINY, f"--config.data.name={name}", "--config.data.classes=(0,1)",
            "--config.data.val_per_class=1", f"--config.data.data_dir={user_data_dir}",
            f"--config.cache_dir={tmp_path / 'cache'}", "--progress=false"]
    args += ["--config.data.shots=50"] if case == "too-many-shots" else ["--config.data.shots=2"]
  else:
    args = [f"--config=configs/text_fortunes.py:tiny=1,dataset={name}",
            "--config.data.val_per_class=0", "--config.data.shots=1",
            f"--config.data.data_dir={user_data_dir}", f"--config.cache_dir={tmp_path / 'cache'}",
            "--progress=false", "--config.data.test_fraction=0.0"]
    if case == "unseen-test-label":
      args.append(f"--config.data.test={tmp_path / 'test.csv'}")
    if case == "duplicate-ids":
      args.append("--config.data.id_field=id")
  result = run_main([*args, f"--workdir={tmp_path / 'run'}"])
  assert "Traceback" not in result.stderr and result.returncode == 2, result.stderr[-3000:]
  (line,) = [l for l in result.stderr.splitlines() if l.startswith("lowres_jax:")]
  assert all(text in line for text in expected), line
  prepared = user_data_dir / "lowres_files"
  assert case == "too-many-shots" or not prepared.exists() or not any(prepared.iterdir())
