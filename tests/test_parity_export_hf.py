"""``python -m lowres_jax.export --format=hf``: a fine-tuned MiniLM run loads into
sentence-transformers, whose embeddings (and, through the exported head, logits) match the
run's own."""

from __future__ import annotations

import json

import numpy as np
import pytest

from file_datasets import tiny_text_run
from lowres_jax.models import bert_convert

pytest.importorskip("torch")
sentence_transformers = pytest.importorskip("sentence_transformers")


def test_the_bert_names_invert_the_minilm_conversion_exactly():
  from lowres_jax.weights.files import read_tensors
  from lowres_jax.weights.sources import resolve
  original = read_tensors(resolve("package:all_minilm_l6_v2"))
  flat, unused = bert_convert.convert_hf_bert(original)
  back = bert_convert.to_hf_bert({k.removeprefix("params/"): v for k, v in flat.items()})
  assert set(back) == set(original) - set(unused) - set(bert_convert._BUFFERS)
  for name, value in back.items():
    np.testing.assert_array_equal(value, original[name], err_msg=name)
  config = bert_convert.hf_config_from_model_kwargs({"depth": 3})
  assert bert_convert.model_kwargs_from_hf_config(config)["depth"] == 3


def test_an_hf_export_gives_the_runs_embeddings_and_logits_in_sentence_transformers(tmp_path):
  from safetensors.numpy import load_file
  from lowres_jax import export, predict
  run = tiny_text_run(tmp_path)
  out = tmp_path / "exported"
  labels = export.export_hf(run, str(out))
  assert labels["classes"] == ["law", "science"]
  model = sentence_transformers.SentenceTransformer(str(out), device="cpu")
  queries = ["A rocket left the launch pad at dawn.", "The court heard the appeal.", "x",
             " ".join(["a long sentence that runs past the run's token budget"] * 8)]
  theirs = model.encode(queries, convert_to_numpy=True)
  predictor = predict.Predictor.load(run)
  tokens = predictor.prepare_texts(queries)
  logits, outputs = predictor.model.apply(predictor.variables, tokens, train=False)
  np.testing.assert_allclose(theirs, np.asarray(outputs["pre_logits"]), atol=1e-4)
  head = load_file(str(out / export.HF_HEAD_FILE))
  np.testing.assert_allclose(theirs @ head["weight"].T + head["bias"], np.asarray(logits),
                             atol=1e-4)
  assert json.loads((out / "modules.json").read_text())[1]["path"] == "1_Pooling"
  assert "test/accuracy" in (out / "MODEL_CARD.md").read_text()
