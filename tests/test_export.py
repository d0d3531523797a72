"""``python -m lowres_jax.export --format=stablehlo``: the exported model runs in a process that
imports neither lowres_jax nor flax and gives the run's own probabilities."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np

from conftest import REPO, cpu_env, tiny_config
from file_datasets import tiny_text_run
from lowres_jax import export, predict
from lowres_jax.data import modality, text_sources
from lowres_jax.train import loop

# The loader of the README: plain jax and numpy.
LOADER = """
import sys, numpy as np, jax
exported = jax.export.deserialize(open(sys.argv[1] + "/model.jax_export", "rb").read())
inputs = np.load(sys.argv[2])
probabilities = np.asarray(exported.call(*[inputs[k] for k in inputs.files]))
assert "lowres_jax" not in sys.modules and "flax" not in sys.modules, "imported the project"
np.save(sys.argv[3], probabilities)
"""


def test_a_stablehlo_export_gives_the_runs_probabilities_without_lowres_jax(tmp_path, data_dir):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  loop.run(config, str(tmp_path / "run"), show_progress=False)
  out = tmp_path / "exported"
  result = subprocess.run([sys.executable, "-m", "lowres_jax.export",
                           f"--workdir={tmp_path / 'run'}", f"--out={out}"], cwd=REPO,
                          env=cpu_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  labels = json.loads((out / "labels.json").read_text())
  assert labels["classes"] == ["5", "6", "7", "8", "9"]
  assert "test/accuracy" in (out / "MODEL_CARD.md").read_text()
  predictor = predict.Predictor.load(str(tmp_path / "run"))
  test = loop.test_examples(predictor.plan)
  images = test.arrays["image"][:37]  # an odd batch: the export's batch is symbolic
  np.savez(tmp_path / "inputs.npz", image=images)
  loader = tmp_path / "load.py"
  loader.write_text(LOADER)
  env = {k: v for k, v in cpu_env().items() if k != "PYTHONPATH"}
  run = subprocess.run([sys.executable, str(loader), str(out), str(tmp_path / "inputs.npz"),
                        str(tmp_path / "probs.npy")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-2000:]
  expected = predictor.probabilities({"image": images})
  np.testing.assert_allclose(np.load(tmp_path / "probs.npy"), expected, atol=1e-6)


def test_a_text_export_takes_token_ids_and_ships_the_tokenizer(tmp_path):
  run = tiny_text_run(tmp_path)
  out = tmp_path / "exported"
  labels = export.export_stablehlo(run, str(out))
  assert labels["classes"] == ["law", "science"]
  assert [i["name"] for i in labels["inputs"]] == list(modality.Text.input_names)
  tokenizer = text_sources.TextTokenizer((out / "tokenizer.json").read_text())
  tokens = tokenizer.encode(["space again", "a court case", "x"],
                           predict.Predictor.load(run).plan.max_length)
  exported = jax.export.deserialize((out / export.MODEL_FILE).read_bytes())
  probabilities = np.asarray(exported.call(*[tokens[k] for k in modality.Text.input_names]))
  expected = predict.Predictor.load(run).probabilities(tokens)
  np.testing.assert_allclose(probabilities, expected, atol=1e-6)
