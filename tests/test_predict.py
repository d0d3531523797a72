"""``python -m lowres_jax.predict``: a finished run's predictions on new inputs, prepared as its
training data were."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, cpu_env, tiny_config
from file_datasets import tiny_text_run, write_image_folder, write_texts
from lowres_jax import predict
from lowres_jax.data import sources
from lowres_jax.train import loop


def test_predicting_a_runs_own_test_split_reproduces_its_summary_accuracy(tmp_path, data_dir):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  summary = loop.run(config, str(tmp_path / "run"), show_progress=False)
  predictor = predict.Predictor.load(str(tmp_path / "run"))
  test = loop.test_examples(predictor.plan)
  probabilities = predictor.probabilities(test.inputs())
  assert np.allclose(probabilities.sum(1), 1.0)
  accuracy = float(np.mean(probabilities.argmax(1) == test.labels))
  assert accuracy == pytest.approx(summary["test/accuracy"], abs=1e-12)
  assert predictor.class_names == tuple(str(c) for c in config.data.classes)


def test_the_cli_classifies_a_folder_of_images_and_texts_from_stdin(tmp_path, data_dir):
  examples = sources.load_split("digits", "test", data_dir)
  keep = np.isin(examples.labels, (5, 6))
  images, labels = examples.arrays["image"][keep][:20], examples.labels[keep][:20] - 5
  write_image_folder(str(tmp_path / "photos"), images, labels, names=["five", "six"])
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.data.update({"name": f"folder:{tmp_path / 'photos'}", "classes": (0, 1),
                      "shots": 3, "val_per_class": 1, "test_fraction": 0.25})
  loop.run(config, str(tmp_path / "run"), show_progress=False)
  write_image_folder(str(tmp_path / "new"), images[:4], labels[:4], names=["x", "y"])
  out = tmp_path / "preds.csv"
  result = subprocess.run([sys.executable, "-m", "lowres_jax.predict",
                           f"--workdir={tmp_path / 'run'}", f"--input={tmp_path / 'new'}",
                           f"--output={out}", "--top_k=2"], cwd=REPO, env=cpu_env(),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  rows = list(csv.DictReader(out.open()))
  assert [r["id"] for r in rows] == sorted(r["id"] for r in rows) and len(rows) == 4
  assert {r["predicted"] for r in rows} <= {"five", "six"}
  assert all(r["top_k"].count(":") == 2 for r in rows)
  assert "4 images ->" in result.stdout


def test_a_text_run_predicts_lines_from_stdin(tmp_path):
  tiny_text_run(tmp_path)
  out = tmp_path / "preds.jsonl"
  result = subprocess.run([sys.executable, "-m", "lowres_jax.predict",
                           f"--workdir={tmp_path / 'run'}", "--input=-", f"--output={out}"],
                          cwd=REPO, env=cpu_env(), input="space again\na court case\n",
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert len(rows) == 2 and {r["predicted"] for r in rows} <= {"law", "science"}
  assert all(abs(sum(p for _, p in r["top_k"]) - 1.0) < 1e-5 for r in rows)


def test_a_run_reported_with_other_weights_is_refused(tmp_path, data_dir):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.eval.logit_adjust = 1.0
  loop.run(config, str(tmp_path / "run"), show_progress=False)
  with pytest.raises(predict.PredictError, match="logit_adjust.*final float weights"):
    predict.Predictor.load(str(tmp_path / "run"))


def test_texts_to_predict_are_read_with_the_runs_fields_and_ids(tmp_path):
  from lowres_jax.data.user_files import FileDataError, FileDataOptions
  path = write_texts(str(tmp_path / "new.jsonl"), ["one", "two"], ["?", "?"],
                     text_field="body", ids=[7, 9])
  options = FileDataOptions(text_field="body", id_field="id")
  assert predict.read_inputs(path, options) == (["7", "9"], "texts", ["one", "two"])
  with pytest.raises(FileDataError, match="no field 'text'"):
    predict.read_inputs(path, FileDataOptions())


def test_a_quantized_run_predicts_and_exports_with_its_int8_model(tmp_path, data_dir):
  import jax
  from lowres_jax import export
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.quantize.mode = "w8a8_dynamic"
  summary = loop.run(config, str(tmp_path / "run"), show_progress=False)
  float_predictor = predict.Predictor.load(str(tmp_path / "run"))
  int8_predictor = predict.Predictor.load(str(tmp_path / "run"), int8=True)
  test = loop.test_examples(int8_predictor.plan)
  for predictor, key in ((float_predictor, "test/accuracy"), (int8_predictor,
                                                              "int8/test/accuracy")):
    accuracy = float(np.mean(predictor.probabilities(test.inputs()).argmax(1) == test.labels))
    assert accuracy == pytest.approx(summary[key], abs=1e-12), key
  out = tmp_path / "exported"
  labels = export.export_stablehlo(str(tmp_path / "run"), str(out), int8=True)
  assert labels["weights"] == "int8 (w8a8_dynamic)"
  assert "int8 (w8a8_dynamic)" in (out / "MODEL_CARD.md").read_text()
  exported = jax.export.deserialize((out / export.MODEL_FILE).read_bytes())
  assert "xi8>" in exported.mlir_module()  # The int8 operations are in the program.
  images = test.inputs()["image"][:37]
  np.testing.assert_array_equal(
      np.asarray(exported.call(images)).argmax(1),
      int8_predictor.probabilities({"image": images}).argmax(1))
  plain = tiny_config(data_dir, str(tmp_path / "cache"))
  loop.run(plain, str(tmp_path / "plain"), show_progress=False)
  with pytest.raises(predict.PredictError, match="was not quantized"):
    predict.Predictor.load(str(tmp_path / "plain"), int8=True)
