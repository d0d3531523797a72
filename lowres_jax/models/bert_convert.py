"""Hugging Face BERT checkpoints as variables of ``lowres_jax.models.bert.BertEncoder``.

The source is a flat ``{name: array}`` mapping (``safetensors.numpy.load_file``, or
``lowres_jax.weights.files.read_tensors`` on a model directory) of ``BertModel`` names
(``embeddings.word_embeddings.weight``, ``encoder.layer.N.attention.self.query.weight``, ...),
or of ``BertForSequenceClassification`` ones: the same under ``bert.`` plus ``classifier.*``,
which becomes our ``head``. Torch layouts: Linear ``(out, in)``, Embedding ``(num, dim)``.
Old TensorFlow-converted checkpoints name LayerNorm parameters ``gamma``/``beta``; both
spellings are read.

``convert_hf_bert`` returns ``(variables, unused)``: flat '/'-joined flax paths with the
collection prefix (``params/embeddings/word/embedding``) as float32 numpy arrays, and the
source names the model has no place for (``pooler.dense.*``, pre-training heads ``cls.*``),
which the caller drops (``InitSpec(dont_load="pooler")``) or reports. Non-persistent buffers
that some checkpoints carry (``embeddings.position_ids``, ``embeddings.token_type_ids``) are
dropped silently: they are ``arange`` and zeros, not weights.

HF's classifier reads the pooler's ``tanh(Dense(first token))``, which ``BertEncoder`` does not
have; a loaded ``classifier`` therefore sits on a different input (our mean or CLS pooling)
and is useful as an initialisation only, not to reproduce HF's logits.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping

import numpy as np

Variables = dict[str, np.ndarray]

# Buffers, not parameters: dropped without being reported.
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


def _float32(x) -> np.ndarray:
  """Parameters stay float32 whatever the checkpoint stored (float16, ml_dtypes bfloat16)."""
  x = np.asarray(x)
  return x.astype(np.float32) if x.dtype.kind == "f" or x.dtype.name == "bfloat16" else x


def _linear(w):  # torch (out, in) -> flax (in, out)
  return np.asarray(w).T


def _same(w):
  return np.asarray(w)


# (HF module name, our module path, kind); "{i}" is a layer index. The one table both directions
# read: loading (``convert_hf_bert``) and exporting (``to_hf_bert``).
_LAYER = [("attention.self.query", "attention/query", "dense"),
          ("attention.self.key", "attention/key", "dense"),
          ("attention.self.value", "attention/value", "dense"),
          ("attention.output.dense", "attention/out", "dense"),
          ("intermediate.dense", "mlp_in", "dense"),
          ("output.dense", "mlp_out", "dense"),
          ("attention.output.LayerNorm", "attention_norm", "norm"),
          ("output.LayerNorm", "mlp_norm", "norm")]
_MODULES = [("embeddings.word_embeddings", "embeddings/word", "embedding"),
            ("embeddings.position_embeddings", "embeddings/position", "embedding"),
            ("embeddings.token_type_embeddings", "embeddings/type", "embedding"),
            ("embeddings.LayerNorm", "embeddings/norm", "norm"),
            *((f"encoder.layer.{{i}}.{hf}", f"layer_{{i}}/{ours}", kind)
              for hf, ours, kind in _LAYER),
            ("classifier", "head", "dense")]
# kind -> [(HF leaf names, read first is written, our leaf, torch -> flax layout)].
_LEAVES = {"dense": [(("weight",), "kernel", _linear), (("bias",), "bias", _same)],
           "norm": [(("weight", "gamma"), "scale", _same), (("bias", "beta"), "bias", _same)],
           "embedding": [(("weight",), "embedding", _same)]}


def _hf_rules() -> list[tuple[re.Pattern, str, Callable]]:
  """(source-name pattern, flax path template, layout conversion) for HF BERT names."""
  rules = []
  for hf, ours, kind in _MODULES:
    source = re.escape(hf).replace(re.escape("{i}"), r"(\d+)")
    target = ours.replace("{i}", r"\1")
    for hf_leaves, our_leaf, convert in _LEAVES[kind]:
      for hf_leaf in hf_leaves:
        rules.append((re.compile(rf"{source}\.{hf_leaf}"), f"{target}/{our_leaf}", convert))
  return rules


def _export_rules() -> list[tuple[re.Pattern, str, Callable]]:
  """(flax path pattern, HF name template, layout conversion): ``_hf_rules`` read backwards,
  writing the first HF spelling of each leaf. Every conversion is its own inverse (a
  transpose, or the identity)."""
  rules = []
  for hf, ours, kind in _MODULES:
    source = re.escape(ours).replace(re.escape("{i}"), r"(\d+)")
    target = hf.replace("{i}", r"\1")
    for hf_leaves, our_leaf, convert in _LEAVES[kind]:
      rules.append((re.compile(rf"{source}/{our_leaf}"), f"{target}.{hf_leaves[0]}", convert))
  return rules


_EXPORT_RULES = _export_rules()


def to_hf_bert(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The inverse of ``convert_hf_bert``: flat '/'-joined flax paths of ``params`` (without the
  ``params/`` prefix) to ``BertModel`` names in torch layouts (the head as ``classifier.*``).
  Raises ValueError for a parameter with no BERT name (a LoRA adapter: merge it first)."""
  out = {}
  for path, value in params.items():
    match = next(((m, template, convert) for pattern, template, convert in _EXPORT_RULES
                  if (m := pattern.fullmatch(path))), None)
    if match is None:
      raise ValueError(f"parameter {path!r} has no BERT name (merge LoRA adapters first)")
    found, template, convert = match
    out[found.expand(template)] = np.ascontiguousarray(convert(np.asarray(value)))
  return dict(sorted(out.items()))


_HF_RULES = _hf_rules()


def convert_hf_bert(tensors: Mapping[str, Any]) -> tuple[Variables, list[str]]:
  """Hugging Face BERT weights (``BertModel``, ``BertForSequenceClassification``) to flax paths.

  Raises ValueError when nothing in ``tensors`` looks like a BERT embedding table, so a wrong
  ``config.model.name`` fails loudly instead of as a list of every name missing.
  """
  if not any(_strip(name) == "embeddings.word_embeddings.weight" for name in tensors):
    raise ValueError("not a Hugging Face BERT checkpoint: no 'embeddings.word_embeddings."
                     f"weight' (with or without 'bert.'); got e.g. {sorted(tensors)[:5]}")
  out: Variables = {}
  unused: list[str] = []
  for name, value in tensors.items():
    short = _strip(name)
    if short in _BUFFERS:
      continue
    for pattern, template, convert in _HF_RULES:
      match = pattern.fullmatch(short)
      if match:
        target = "params/" + match.expand(template)
        if target in out:
          raise ValueError(f"two checkpoint tensors map to {target} (one is {name!r})")
        out[target] = _float32(convert(value))
        break
    else:
      unused.append(name)
  return dict(sorted(out.items())), sorted(unused)


def _strip(name: str) -> str:
  return name[len("bert."):] if name.startswith("bert.") else name


# Hugging Face config.json key -> BertEncoder field.
_CONFIG_FIELDS = {"vocab_size": "vocab_size", "hidden_size": "hidden", "num_hidden_layers": "depth",
                  "num_attention_heads": "num_heads", "intermediate_size": "mlp_dim",
                  "max_position_embeddings": "max_positions", "type_vocab_size": "type_vocab_size",
                  "layer_norm_eps": "layer_norm_eps", "hidden_dropout_prob": "dropout"}


def hf_config_from_model_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
  """A ``BertModel`` config.json for a ``BertEncoder`` built with ``kwargs`` (the inverse of
  ``model_kwargs_from_hf_config``; fields left out take BertEncoder's defaults)."""
  from lowres_jax.models.bert import BertEncoder
  fields = {f.name: f.default for f in dataclasses.fields(BertEncoder)
            if f.name in _CONFIG_FIELDS.values()}
  fields.update({k: v for k, v in kwargs.items() if k in fields})
  config = {theirs: fields[ours] for theirs, ours in _CONFIG_FIELDS.items()}
  return {"architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
          "position_embedding_type": "absolute", "attention_probs_dropout_prob": 0.0,
          "pad_token_id": 0, **config}


def model_kwargs_from_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
  """``BertEncoder`` fields from a Hugging Face BERT ``config.json`` (as a dict).

  Only the architecture and hidden dropout: ``num_classes``, ``pool`` and ``normalize`` are
  the task's (for a sentence-transformers model, its ``1_Pooling/config.json`` and
  ``modules.json`` say mean or CLS pooling and whether it normalises). Raises ValueError for
  what ``BertEncoder`` cannot compute: another ``model_type``, an activation other than the
  exact GELU, relative position embeddings.
  """
  model_type = config.get("model_type", "bert")
  if model_type != "bert":
    raise ValueError(f"config.json has model_type {model_type!r}; BertEncoder reproduces "
                     "'bert' only (RoBERTa, DistilBERT, MPNet... differ in layout)")
  activation = config.get("hidden_act", "gelu")
  if activation != "gelu":
    raise ValueError(f"config.json has hidden_act {activation!r}; BertEncoder computes the "
                     "exact erf GELU ('gelu') only")
  positions = config.get("position_embedding_type", "absolute")
  if positions != "absolute":
    raise ValueError(f"config.json has position_embedding_type {positions!r}; BertEncoder "
                     "has absolute position embeddings only")
  kwargs = {ours: config[theirs] for theirs, ours in _CONFIG_FIELDS.items() if theirs in config}
  for name in ("vocab_size", "hidden", "depth", "num_heads", "mlp_dim", "max_positions",
               "type_vocab_size"):
    if name in kwargs:
      kwargs[name] = int(kwargs[name])
  for name in ("layer_norm_eps", "dropout"):
    if name in kwargs:
      kwargs[name] = float(kwargs[name])
  return kwargs
