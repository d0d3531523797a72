"""Public ViT checkpoints as variables of ``lowres_jax.models.vit.ViT``.

Two source formats, both given as a flat ``{name: array}`` mapping (``safetensors.numpy.
load_file``, ``dict(np.load(path))``):

* Hugging Face ``ViTModel`` / ``ViTForImageClassification`` (``embeddings.cls_token``,
  ``encoder.layer.N.attention.attention.query.weight``, ..., with a ``vit.`` prefix and a
  ``classifier`` in the latter; transformers 5's in-memory names ``layers.N.attention.q_proj``,
  ``mlp.fc1`` are accepted too). Torch layouts: Linear ``(out, in)``, Conv ``(out, in, h, w)``.
* The JAX releases: google-research/vision_transformer ``.npz`` files (``embedding/kernel``,
  ``cls``, ``Transformer/posembed_input/pos_embedding``, ``Transformer/encoderblock_N/
  MultiHeadDotProductAttention_1/query/kernel`` of shape (hidden, heads, head_dim), ...) and
  big_vision ones (top-level ``pos_embedding``, ``LayerNorm_1``/``MlpBlock_0`` numbering,
  optional ``params/``, ``params/img/`` or ``opt/target/`` prefixes, and scanned checkpoints
  whose ``Transformer/encoderblock`` holds every layer stacked on a leading axis).

Every converter returns ``(variables, unused)``: flat '/'-joined flax paths with the
collection prefix (``params/embedding/kernel``) as float32 numpy arrays, and the source names
the model has no place for (HF's pooler, big_vision's MAP head or ``pre_logits``), which the
caller drops or reports. Both formats keep the class token's position embedding inside the
table (except big_vision's newer checkpoints); since it is a constant it is folded into
``cls``, which leaves ``params/pos_embedding`` a pure patch grid that ``adapt_to_model`` can
resample when the checkpoint was trained at another resolution.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

Variables = dict[str, np.ndarray]


def _float32(x) -> np.ndarray:
  """Parameters stay float32 whatever the checkpoint stored (float16, ml_dtypes bfloat16)."""
  x = np.asarray(x)
  return x.astype(np.float32) if x.dtype.kind == "f" or x.dtype.name == "bfloat16" else x


def _isqrt_exact(n: int) -> int | None:
  root = math.isqrt(n)
  return root if root * root == n else None


def _split_posemb(posemb: np.ndarray, cls: np.ndarray | None, includes_cls: bool | None):
  """``(patch posemb, cls)``, folding the class token's position embedding into ``cls``.

  ``includes_cls`` None guesses from the count: a square grid plus one token means the table
  starts with the class token (a square plus one is never a square).
  """
  if includes_cls is None:
    n = posemb.shape[1]
    includes_cls = cls is not None and _isqrt_exact(n) is None and _isqrt_exact(n - 1) is not None
  if not includes_cls:
    return posemb, cls
  return posemb[:, 1:], (posemb[:, :1] if cls is None else cls + posemb[:, :1])


def _finish(out: Variables, posemb, cls, includes_cls) -> Variables:
  if posemb is not None:
    posemb = _float32(posemb)
    posemb, cls = _split_posemb(posemb, None if cls is None else _float32(cls), includes_cls)
    out["params/pos_embedding"] = posemb
  if cls is not None:
    out["params/cls"] = _float32(cls)
  return {name: _float32(value) for name, value in sorted(out.items())}


# --- Hugging Face ------------------------------------------------------------------------

def _linear(w):  # torch (out, in) -> flax (in, out)
  return np.asarray(w).T


def _conv(w):  # torch (out, in, h, w) -> flax (h, w, in, out)
  return np.asarray(w).transpose(2, 3, 1, 0)


def _same(w):
  return np.asarray(w)


def _hf_rules() -> list[tuple[re.Pattern, str, Callable]]:
  """(source-name pattern, flax path template, layout conversion) for HF ViT names."""
  rules = [("embeddings.patch_embeddings.projection.weight", "embedding/kernel", _conv),
           ("embeddings.patch_embeddings.projection.bias", "embedding/bias", _same),
           ("layernorm.weight", "norm_final/scale", _same),
           ("layernorm.bias", "norm_final/bias", _same),
           ("classifier.weight", "head/kernel", _linear),
           ("classifier.bias", "head/bias", _same)]
  rules = [(re.escape(src), dst, fn) for src, dst, fn in rules]
  block = r"(?:encoder\.layer|layers)\.(\d+)\."
  dense = {  # saved (transformers 4 and 5 save_pretrained) names, then transformers 5 modules
      "attention.attention.query": "attention/query", "attention.q_proj": "attention/query",
      "attention.attention.key": "attention/key", "attention.k_proj": "attention/key",
      "attention.attention.value": "attention/value", "attention.v_proj": "attention/value",
      "attention.output.dense": "attention/out", "attention.o_proj": "attention/out",
      "intermediate.dense": "mlp_in", "mlp.fc1": "mlp_in",
      "output.dense": "mlp_out", "mlp.fc2": "mlp_out"}
  for src, dst in dense.items():
    rules.append((block + re.escape(src) + r"\.weight", rf"block_\1/{dst}/kernel", _linear))
    rules.append((block + re.escape(src) + r"\.bias", rf"block_\1/{dst}/bias", _same))
  for src, dst in {"layernorm_before": "norm1", "layernorm_after": "norm2"}.items():
    rules.append((block + src + r"\.weight", rf"block_\1/{dst}/scale", _same))
    rules.append((block + src + r"\.bias", rf"block_\1/{dst}/bias", _same))
  return [(re.compile(pattern), dst, fn) for pattern, dst, fn in rules]


_HF_RULES = _hf_rules()


def convert_hf(tensors: Mapping[str, Any]) -> tuple[Variables, list[str]]:
  """Hugging Face ViT weights (``ViTModel``, ``ViTForImageClassification``) to flax paths.

  The pooler (a tanh Dense on the class token) and ``mask_token`` are listed as unused: our
  ``pre_logits`` is the class token after the final LayerNorm, what HF's classifier reads.
  Checkpoints saved with ``qkv_bias=False`` get zero query/key/value biases.
  """
  out: Variables = {}
  unused: list[str] = []
  cls = posemb = None
  for name, value in tensors.items():
    short = name[len("vit."):] if name.startswith("vit.") else name
    if short == "embeddings.cls_token":
      cls = value
      continue
    if short == "embeddings.position_embeddings":
      posemb = value
      continue
    for pattern, template, convert in _HF_RULES:
      match = pattern.fullmatch(short)
      if match:
        out["params/" + match.expand(template)] = convert(value)
        break
    else:
      unused.append(name)
  for name in list(out):  # qkv_bias=False: the projections have weights but no biases
    if name.endswith(("/query/kernel", "/key/kernel", "/value/kernel")):
      out.setdefault(name[:-len("kernel")] + "bias", np.zeros(out[name].shape[-1], np.float32))
  return _finish(out, posemb, cls, includes_cls=True), sorted(unused)


# --- JAX releases (vision_transformer, big_vision) ----------------------------------------

_BV_PREFIXES = ("", "params/", "params/img/", "opt/target/")
# Sub-module names inside an encoder block: the first release numbered modules across types
# (LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3), big_vision per type
# (LayerNorm_0, MultiHeadDotProductAttention_0, LayerNorm_1, MlpBlock_0). No name clashes.
_BV_BLOCK = {"LayerNorm_0": "norm1", "LayerNorm_1": "norm2", "LayerNorm_2": "norm2",
             "MultiHeadDotProductAttention_0": "attention",
             "MultiHeadDotProductAttention_1": "attention",
             "MlpBlock_0/Dense_0": "mlp_in", "MlpBlock_0/Dense_1": "mlp_out",
             "MlpBlock_3/Dense_0": "mlp_in", "MlpBlock_3/Dense_1": "mlp_out"}
_BV_TOP = {"embedding": "embedding", "Transformer/encoder_norm": "norm_final", "head": "head"}
_BV_POSEMB = ("pos_embedding", "Transformer/pos_embedding",
              "Transformer/posembed_input/pos_embedding")


def _bv_attention(leaf: str, value: np.ndarray, module: str) -> np.ndarray:
  """Heads-split flax attention kernels to our merged ``Dense(hidden)`` layout."""
  value = np.asarray(value)
  if module.endswith("/out"):
    return value.reshape(-1, value.shape[-1]) if leaf == "kernel" else value
  return value.reshape(value.shape[0], -1) if leaf == "kernel" else value.reshape(-1)


def _is_attention(module: str) -> bool:
  head, _, proj = module.rpartition("/")
  return (head.startswith("MultiHeadDotProductAttention") and head in _BV_BLOCK
          and proj in ("query", "key", "value", "out"))


def _unstack_scanned(named: dict[str, Any]) -> dict[str, Any]:
  """``Transformer/encoderblock/...`` with a leading layer axis -> ``encoderblock_N/...``."""
  scanned = "Transformer/encoderblock/"
  out = {}
  for name, value in named.items():
    if name.startswith(scanned):
      for layer, layer_value in enumerate(np.asarray(value)):
        out[f"Transformer/encoderblock_{layer}/{name[len(scanned):]}"] = layer_value
    else:
      out[name] = value
  return out


def convert_big_vision(tensors: Mapping[str, Any]) -> tuple[Variables, list[str]]:
  """JAX ViT ``.npz`` weights (vision_transformer or big_vision naming) to flax paths.

  Names outside the model (``pre_logits`` of the in21k releases, ``MAPHead_0``, a text tower
  next to ``params/img/``) are returned as unused.
  """
  prefix = next((p for p in _BV_PREFIXES if p + "embedding/kernel" in tensors), None)
  if prefix is None:
    raise ValueError("not a JAX ViT checkpoint: no 'embedding/kernel' under any of the "
                     f"prefixes {_BV_PREFIXES}")
  unused = [name for name in tensors if not name.startswith(prefix)]
  named = _unstack_scanned({name[len(prefix):]: value for name, value in tensors.items()
                            if name.startswith(prefix)})
  out: Variables = {}
  cls = posemb = None
  for name, value in named.items():
    module, _, leaf = name.rpartition("/")
    block = re.fullmatch(r"Transformer/encoderblock_(\d+)/(.+)", module)
    if name == "cls":
      cls = value
    elif name in _BV_POSEMB:
      posemb = value
    elif module in _BV_TOP:
      out[f"params/{_BV_TOP[module]}/{leaf}"] = np.asarray(value)
    elif block and block.group(2) in _BV_BLOCK:
      out[f"params/block_{block.group(1)}/{_BV_BLOCK[block.group(2)]}/{leaf}"] = value
    elif block and _is_attention(block.group(2)):
      head, _, proj = block.group(2).rpartition("/")
      target = f"params/block_{block.group(1)}/{_BV_BLOCK[head]}/{proj}"
      out[f"{target}/{leaf}"] = _bv_attention(leaf, value, target)
    else:
      unused.append(prefix + name)
  return _finish(out, posemb, cls, includes_cls=None), sorted(set(unused))


# --- choosing a converter, resolution changes ---------------------------------------------

def detect_and_convert(tensors: Mapping[str, Any]) -> tuple[Variables, list[str]]:
  """``convert_hf`` or ``convert_big_vision``, chosen by the checkpoint's names."""
  names = list(tensors)
  if any(name.endswith("embeddings.patch_embeddings.projection.weight") for name in names):
    return convert_hf(tensors)
  if any(prefix + "embedding/kernel" in tensors for prefix in _BV_PREFIXES):
    return convert_big_vision(tensors)
  raise ValueError("not a ViT checkpoint this project reads: expected Hugging Face names "
                   "('embeddings.patch_embeddings.projection.weight') or JAX ones "
                   f"('embedding/kernel'); got e.g. {sorted(names)[:5]}")


def resample_posemb(posemb: np.ndarray, new_grid: tuple[int, int],
                    old_grid: tuple[int, int] | None = None) -> np.ndarray:
  """Bilinear resize of a ``(1, tokens, D)`` (or ``(tokens, D)``) position-embedding grid.

  Tokens before the grid (a class token) are kept unchanged and in front. ``old_grid`` None
  assumes a square grid, optionally after one class token. Half-pixel sampling with edge
  clamping and no antialiasing, as ``torch.nn.functional.interpolate(mode="bilinear",
  align_corners=False)`` and timm's loaders do (big_vision's own loader uses ``scipy.ndimage.
  zoom(order=1)``, which aligns corners, so the two differ slightly away from the corners).
  """
  posemb = np.asarray(posemb)
  table = posemb[None] if posemb.ndim == 2 else posemb
  n, dim = table.shape[1], table.shape[2]
  if old_grid is None:
    for extra in (0, 1):
      side = _isqrt_exact(n - extra)
      if side is not None:
        old_grid = (side, side)
        break
    else:
      raise ValueError(f"cannot infer a square grid from {n} position embeddings")
  extra = n - old_grid[0] * old_grid[1]
  if extra < 0:
    raise ValueError(f"{n} position embeddings do not fill a {old_grid} grid")
  grid = jnp.asarray(table[:, extra:], jnp.float32).reshape(*old_grid, dim)
  grid = jax.image.resize(grid, (*new_grid, dim), method="bilinear", antialias=False)
  new = np.concatenate([table[:, :extra].astype(np.float32),
                        np.asarray(grid).reshape(1, -1, dim)], axis=1).astype(posemb.dtype)
  return new[0] if posemb.ndim == 2 else new


def adapt_to_model(variables: Mapping[str, np.ndarray],
                   expected_shapes: Mapping[str, Any]) -> Variables:
  """Resample ``params/pos_embedding`` to the model's grid when only its token count differs.

  ``expected_shapes``: flat paths to shapes (tuples, or arrays / ShapeDtypeStructs). The
  model's table is patch tokens only, assumed a square grid. Everything else is returned
  unchanged; other mismatches are the caller's to report.
  """
  out = dict(variables)
  name = "params/pos_embedding"
  if name not in out or name not in expected_shapes:
    return out
  have = tuple(out[name].shape)
  want = tuple(getattr(expected_shapes[name], "shape", expected_shapes[name]))
  if have == want or len(have) != 3 or len(want) != 3 or (have[0], have[2]) != (want[0],
                                                                                 want[2]):
    return out
  side = _isqrt_exact(want[1])
  if side is None:
    raise ValueError(f"model position embeddings {want} are not a square grid")
  out[name] = resample_posemb(out[name], (side, side))
  return out
