"""One way from a checkpoint file or directory on disk to ``{name: np.ndarray}``.

Dispatches on what ``path`` is: ``.safetensors``, ``.npz``, a ``torch.save`` file (``.pth``,
``.pt``, ``.bin``) or a Hugging Face style model directory. Nothing here can run code from the
file: safetensors and npz (``allow_pickle=False``) are plain data, and torch files go through
the allowlist unpickler of ``torch_pickle``. Names are kept as the file stores them.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from lowres_jax.weights import torch_pickle
from lowres_jax.weights.errors import UnsafeCheckpointError, WeightsError

# What a model directory is searched for, in order (Hugging Face file names).
DIRECTORY_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "pytorch_model.bin.index.json")
TORCH_SUFFIXES = (".pth", ".pt", ".bin")


def read_tensors(path: str) -> dict[str, np.ndarray]:
  """All tensors stored at ``path`` (a file or a model directory) as numpy arrays."""
  path = os.path.expanduser(path)
  if not os.path.exists(path):
    raise WeightsError(
        f"no checkpoint at {path!r}: point config.init.path at an existing .safetensors, .npz, "
        ".pth or .bin file or a model directory, or use a package:NAME or hf:ORG/NAME spec")
  if os.path.isdir(path):
    return _read_directory(path)
  if path.endswith(".index.json"):
    return _read_sharded(path)
  if path.endswith(".safetensors"):
    return _read_safetensors(path)
  if path.endswith(".npz"):
    return _read_npz(path)
  if path.endswith(TORCH_SUFFIXES):
    return torch_pickle.read_torch_state_dict(path)
  raise WeightsError(f"{path}: unknown weights format; expected .safetensors, .npz, "
                     f"{', '.join(TORCH_SUFFIXES)}, a *.index.json or a model directory")


def _read_directory(path: str) -> dict[str, np.ndarray]:
  for name in DIRECTORY_FILES:
    if os.path.isfile(os.path.join(path, name)):
      return read_tensors(os.path.join(path, name))
  raise WeightsError(f"{path}: a directory without weights; looked for {', '.join(DIRECTORY_FILES)}"
                     f" (it has: {', '.join(sorted(os.listdir(path))[:10]) or 'nothing'})")


def _read_sharded(path: str) -> dict[str, np.ndarray]:
  """A checkpoint split in shards: ``weight_map`` in the index names each tensor's shard."""
  try:
    with open(path) as file:
      weight_map = json.load(file)["weight_map"]
    shards = sorted(set(weight_map.values()))
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
    raise WeightsError(f"{path}: not a shard index with a 'weight_map' ({error})") from error
  tensors: dict[str, np.ndarray] = {}
  for shard in shards:
    if os.path.basename(shard) != shard or shard.endswith(".index.json"):
      raise WeightsError(f"{path}: shard {shard!r} is not a file name next to the index")
    for name, array in read_tensors(os.path.join(os.path.dirname(path), shard)).items():
      if name in tensors:
        raise WeightsError(f"{path}: tensor {name!r} is in more than one shard")
      tensors[name] = array
  missing = sorted(set(weight_map) - set(tensors))
  if missing:
    raise WeightsError(f"{path}: the shards lack {len(missing)} tensors, e.g. {missing[:3]}")
  return tensors


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  import safetensors.numpy  # bfloat16 comes back as ml_dtypes.bfloat16
  try:
    return dict(safetensors.numpy.load_file(path))
  except Exception as error:  # safetensors raises its own SafetensorError for bad files
    raise WeightsError(f"{path}: not a readable safetensors file ({error})") from error


def _from_void(array: np.ndarray) -> np.ndarray:
  """npz keeps no bfloat16 dtype: JAX's bfloat16 arrays come back as 2-byte voids."""
  if array.dtype.kind == "V" and array.dtype.itemsize == 2:
    import ml_dtypes
    return array.view(ml_dtypes.bfloat16)
  return array


def _read_npz(path: str) -> dict[str, np.ndarray]:
  """An ``np.savez`` archive; nested parameters are expected under '/'-joined names."""
  try:
    archive = np.load(path, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
      raise WeightsError(f"{path}: a single .npy array, not an .npz archive of named arrays")
    with archive:
      return {name: _from_void(archive[name]) for name in archive.files}
  except WeightsError:
    raise
  except ValueError as error:
    if "allow_pickle" in str(error):
      raise UnsafeCheckpointError(f"{path}: holds pickled data (object arrays or a pickle), "
                                  "refused; re-save it with numeric arrays only") from None
    raise WeightsError(f"{path}: not a readable npz file ({error})") from error
  except (OSError, EOFError, zipfile.BadZipFile) as error:
    raise WeightsError(f"{path}: not a readable npz file ({error})") from error
