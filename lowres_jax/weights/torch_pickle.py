"""Reads PyTorch state dicts (``.pth`` / ``.bin`` / ``.pt``) into numpy arrays, safely.

Why hand-written: ``torch.load(weights_only=True)`` is the safe way to read these files, but
it needs torch, and torch is not a runtime dependency of lowres_jax. Plain ``pickle.load`` is
not an option: unpickling can call any importable function (``os.system``, ``eval``...). So
this module has its own unpickler whose ``find_class`` maps an allowlist of globals (what a
tensor state dict needs: ``collections.OrderedDict``, torch's tensor rebuild helpers, storage
types, dtypes) to local stand-ins and refuses everything else with UnsafeCheckpointError,
before a payload can run. Everything it hands out refuses pickle's BUILD (``__setstate__``).

The two on-disk formats of ``torch.save``:

* zip (torch >= 1.6 default): ``<prefix>/data.pkl`` whose persistent ids
  ``("storage", StorageType, key, location, numel)`` name raw storages ``<prefix>/data/<key>``;
  ``<prefix>/byteorder`` says ``little`` (assumed when absent).
* legacy (torch < 1.6, or ``_use_new_zipfile_serialization=False``): pickles in a row
  (magic number, protocol version 1001, a sys-info dict, the object with persistent ids
  ``("storage", StorageType, key, location, numel, view_metadata)``, the sorted storage keys),
  then per key an int64 element count and that many elements of raw bytes.

Tensors are rebuilt from (storage, offset, size, stride) in elements, copied out of the storage.
"""

from __future__ import annotations

import collections
import io
import operator
import pickle
import struct
import zipfile
from typing import Any, Callable

import ml_dtypes
import numpy as np

from lowres_jax.weights.errors import UnsafeCheckpointError, WeightsError

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

# Legacy typed storages (torch.<Name>Storage) and the dtype of their elements.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128,
}
# torch.<name> dtypes: pickled as globals by _rebuild_tensor_v3 (dtypes with no legacy storage
# class, e.g. uint16 and float8) and used here to convert torch tensors to numpy.
_TORCH_DTYPES = {
    "float64": np.float64, "float32": np.float32, "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16, "int64": np.int64, "int32": np.int32, "int16": np.int16,
    "int8": np.int8, "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32,
    "uint64": np.uint64, "bool": np.bool_, "complex64": np.complex64,
    "complex128": np.complex128, "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
    "float8_e5m2": ml_dtypes.float8_e5m2, "float8_e4m3fnuz": ml_dtypes.float8_e4m3fnuz,
    "float8_e5m2fnuz": ml_dtypes.float8_e5m2fnuz,
}


class _Sealed:
  """Base of every stand-in the unpickler hands out: immune to pickle's BUILD opcode."""
  __slots__ = ()

  def __setstate__(self, state):
    raise UnsafeCheckpointError(
        f"refused to set state on {type(self).__name__.lstrip('_')}: a state dict never does that")


class _Marker(_Sealed):
  """Stands in for a torch global that only has to be recognised (storage type, dtype, class)."""
  __slots__ = ("name", "dtype")

  def __init__(self, name: str, dtype: np.dtype | None):
    self.name, self.dtype = name, dtype  # dtype None: UntypedStorage (bytes) or a tensor class


class _Storage(_Sealed):
  """One storage: its element dtype and raw bytes (filled in after the pickle for legacy)."""
  __slots__ = ("key", "dtype", "data")

  def __init__(self, key: str, dtype: np.dtype, data: np.ndarray | None):
    self.key, self.dtype, self.data = key, dtype, data


class _Tensor(_Sealed):
  """A tensor waiting for its storage bytes: (storage, offset, size, stride) in elements."""
  __slots__ = ("storage", "offset", "size", "stride", "dtype")

  def __init__(self, storage, offset, size, stride, dtype):
    if not isinstance(storage, _Storage):
      raise WeightsError(f"a tensor's storage is a {type(storage).__name__}, not a storage")
    self.storage, self.dtype = storage, dtype
    try:
      self.offset = operator.index(offset)  # ints only: no silent float truncation
      self.size = tuple(operator.index(n) for n in size)
      self.stride = tuple(operator.index(n) for n in stride)
    except (TypeError, ValueError) as error:
      raise WeightsError(f"bad tensor geometry: {error}") from None


class _Helper(_Sealed):
  """Stands in for one allowlisted torch function; calling it only builds stand-ins."""
  __slots__ = ("fn",)

  def __init__(self, fn: Callable[..., Any]):
    self.fn = fn

  def __call__(self, *args):
    return self.fn(*args)


def _rebuild_tensor(storage, storage_offset, size, stride):
  dtype = storage.dtype if isinstance(storage, _Storage) else None
  if dtype is None:
    raise WeightsError("a tensor without a typed storage")
  return _Tensor(storage, storage_offset, size, stride, dtype)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  if metadata:  # conj/neg bits: never set on a saved parameter
    raise WeightsError(f"tensor metadata {metadata!r} is not supported; save resolved tensors")
  return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
  if not isinstance(dtype, _Marker) or dtype.dtype is None or metadata:
    raise WeightsError(f"unsupported tensor dtype or metadata: {dtype!r}, {metadata!r}")
  return _Tensor(storage, storage_offset, size, stride, dtype.dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
  if not isinstance(data, _Tensor):
    raise WeightsError(f"a parameter wrapping a {type(data).__name__}, not a tensor")
  return data


def _rebuild_from_type_v2(func, new_type, args, state):
  if not (isinstance(func, _Helper) and isinstance(new_type, _Marker) and new_type.dtype is None):
    raise WeightsError("unsupported tensor subclass")
  return func(*args)


def _allowed_globals() -> dict[tuple[str, str], Any]:
  table: dict[tuple[str, str], Any] = {("collections", "OrderedDict"): collections.OrderedDict}
  for fn in (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter):
    table[("torch._utils", fn.__name__)] = _Helper(fn)
  table[("torch._utils", "_rebuild_parameter_with_state")] = _Helper(_rebuild_parameter)
  table[("torch._tensor", "_rebuild_from_type_v2")] = _Helper(_rebuild_from_type_v2)
  for name, dtype in _STORAGE_DTYPES.items():
    table[("torch", name)] = _Marker(name, np.dtype(dtype))
  for module in ("torch", "torch.storage"):
    table[(module, "UntypedStorage")] = _Marker("UntypedStorage", np.dtype(np.uint8))
  for name, dtype in _TORCH_DTYPES.items():
    table[("torch", name)] = _Marker(name, np.dtype(dtype))
  for module, name in (("torch", "Tensor"), ("torch._tensor", "Tensor"),
                       ("torch.nn.parameter", "Parameter")):
    table[(module, name)] = _Marker(name, None)
  return table


_ALLOWED = _allowed_globals()


class _AllowlistUnpickler(pickle.Unpickler):
  """An Unpickler that resolves only ``_ALLOWED`` globals; ``storage`` serves persistent ids."""

  def __init__(self, file, storage: Callable[[tuple], _Storage] | None = None):
    super().__init__(file, encoding="utf-8")
    self._storage = storage

  def find_class(self, module: str, name: str) -> Any:
    # Never falls back to super().find_class: that would import and return anything.
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      raise UnsafeCheckpointError(
          f"refused to unpickle the global '{module}.{name}': a weights file should hold only "
          "tensors and dicts, and unpickling anything else can run code. If you trust the "
          "file, load it with torch.load(weights_only=False) and re-save its state_dict() or "
          "save it as .safetensors") from None

  def persistent_load(self, pid: Any) -> _Storage:
    if self._storage is None:
      raise WeightsError(f"unexpected persistent id {pid!r:.80}")
    return self._storage(pid)


def _storage_id(pid: Any) -> tuple[np.dtype, str, int]:
  """(dtype, key, numel) of a persistent id; refuses legacy storage views (torch < 1.0)."""
  if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] not in ("storage", b"storage"):
    raise WeightsError(f"unexpected persistent id {pid!r:.80}")
  storage_type, key, numel = pid[1], pid[2], pid[4]
  if len(pid) == 6 and pid[5] is not None:
    raise WeightsError("a storage view (saved by torch < 1.0) is not supported")
  if not isinstance(storage_type, _Marker) or storage_type.dtype is None or not isinstance(
      numel, int):
    raise WeightsError(f"unexpected persistent id {pid!r:.80}")
  return storage_type.dtype, key.decode() if isinstance(key, bytes) else str(key), numel


def _load_zip(path: str) -> Any:
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [name for name in names if name.endswith("data.pkl") and name.count("/") == 1]
    if len(pickles) != 1:
      raise WeightsError(f"a zip file without one '<prefix>/data.pkl' (found {pickles})")
    prefix = pickles[0][:-len("data.pkl")]
    if prefix + "constants.pkl" in names:
      raise WeightsError("a TorchScript archive (torch.jit.save), not a state dict: load it "
                         "with torch.jit.load and save its state_dict() instead")
    if prefix + "byteorder" in names and archive.read(prefix + "byteorder") != b"little":
      raise WeightsError("a big-endian checkpoint; re-save it on a little-endian machine")
    storages: dict[str, _Storage] = {}

    def storage(pid: Any) -> _Storage:
      dtype, key, numel = _storage_id(pid)
      if key not in storages:
        raw = archive.read(f"{prefix}data/{key}")
        if len(raw) < numel * dtype.itemsize:
          raise WeightsError(f"storage {key} is truncated")
        storages[key] = _Storage(key, dtype, np.frombuffer(raw, np.uint8))
      return storages[key]

    return _AllowlistUnpickler(io.BytesIO(archive.read(pickles[0])), storage).load()


def _load_legacy(path: str) -> Any:
  with open(path, "rb") as file:
    if _AllowlistUnpickler(file).load() != _MAGIC_NUMBER:
      raise WeightsError("not a torch.save file (wrong magic number)")
    if _AllowlistUnpickler(file).load() != _PROTOCOL_VERSION:
      raise WeightsError("unsupported legacy protocol version")
    sys_info = _AllowlistUnpickler(file).load()
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
      raise WeightsError("a big-endian checkpoint; re-save it on a little-endian machine")
    storages: dict[str, _Storage] = {}

    def storage(pid: Any) -> _Storage:
      dtype, key, _ = _storage_id(pid)
      return storages.setdefault(key, _Storage(key, dtype, None))

    result = _AllowlistUnpickler(file, storage).load()
    keys = _AllowlistUnpickler(file).load()
    for key in keys:  # each: int64 element count, then the raw little-endian elements
      if key not in storages:
        raise WeightsError(f"storage {key!r} is not used by any tensor")
      (numel,) = struct.unpack("<q", file.read(8))
      nbytes = numel * storages[key].dtype.itemsize
      raw = file.read(nbytes) if numel >= 0 else b""
      if len(raw) != nbytes:
        raise WeightsError(f"storage {key} is truncated")
      storages[key].data = np.frombuffer(raw, np.uint8)
    return result


def _to_array(tensor: _Tensor) -> np.ndarray:
  """The tensor's elements copied out of its storage, bounds-checked before any strided view."""
  data, dtype, size, stride = tensor.storage.data, tensor.dtype, tensor.size, tensor.stride
  if data is None:
    raise WeightsError(f"storage {tensor.storage.key} has no data")
  elements = data[:len(data) // dtype.itemsize * dtype.itemsize].view(dtype)
  if len(size) != len(stride) or min((tensor.offset, *size, *stride)) < 0:
    raise WeightsError(f"bad tensor geometry {size}/{stride}+{tensor.offset}")
  if 0 in size:
    return np.zeros(size, dtype)
  last = tensor.offset + sum((n - 1) * step for n, step in zip(size, stride))
  if last >= len(elements):  # as_strided would read past the buffer
    raise WeightsError(f"tensor {size}/{stride}+{tensor.offset} reaches past its storage")
  view = np.lib.stride_tricks.as_strided(
      elements[tensor.offset:], shape=size, strides=[step * dtype.itemsize for step in stride],
      writeable=False)
  return view.copy(order="C")


def _materialize(obj: Any) -> Any:
  if isinstance(obj, _Tensor):
    return _to_array(obj)
  if isinstance(obj, dict):
    return {key: _materialize(value) for key, value in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_materialize(value) for value in obj]
  if isinstance(obj, _Sealed):
    return None  # a bare storage or dtype: not a weight
  return obj


def load_without_torch(path: str) -> Any:
  """The object ``torch.save`` wrote to ``path``, with tensors as numpy arrays; no torch."""
  try:
    return _materialize(_load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path))
  except UnsafeCheckpointError as error:
    raise UnsafeCheckpointError(f"{path}: {error}") from None
  except WeightsError as error:
    raise WeightsError(f"{path}: {error}") from None
  except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError,
          KeyError, OverflowError, struct.error, zipfile.BadZipFile, RecursionError) as error:
    raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: "
                       f"{error})") from error


def _torch_to_numpy(obj: Any) -> Any:
  import torch
  if isinstance(obj, torch.Tensor):
    tensor = obj.detach().cpu().resolve_conj().resolve_neg().contiguous()
    name = str(tensor.dtype).removeprefix("torch.")
    if name not in _TORCH_DTYPES:
      raise WeightsError(f"unsupported tensor dtype {tensor.dtype}")
    dtype = np.dtype(_TORCH_DTYPES[name])
    try:
      return tensor.numpy().copy()
    except TypeError:  # bfloat16/float8: numpy has no such dtype, so go through same-size ints
      ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[dtype.itemsize]
      return tensor.view(ints).numpy().view(dtype).copy()
  if isinstance(obj, dict):
    return {key: _torch_to_numpy(value) for key, value in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_torch_to_numpy(value) for value in obj]
  return obj


def load_with_torch(path: str) -> Any:
  """Like ``load_without_torch`` but through ``torch.load(weights_only=True)``."""
  import torch
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as error:
    # torch wraps its one-line reason in paragraphs of generic advice: keep the reason.
    advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
    message = str(error).rpartition("WeightsUnpickler error:")[2]
    reason = " ".join(line.strip() for line in message.splitlines()
                      if line.strip() and not line.strip().startswith(advice))
    raise UnsafeCheckpointError(
        f"{path}: torch.load(weights_only=True) refused it: {reason or error}") from None
  except (RuntimeError, EOFError, OSError, ValueError) as error:
    raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({error})") from error
  return _torch_to_numpy(obj)


# Checkpoints often wrap the state dict with training state; these keys hold the weights.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module")


def _flatten(obj: Any, prefix: str, out: dict[str, np.ndarray]) -> None:
  if isinstance(obj, np.ndarray):
    out[prefix[:-1]] = obj
  elif isinstance(obj, dict):
    for key, value in obj.items():
      _flatten(value, f"{prefix}{key}.", out)
  elif isinstance(obj, list):
    for index, value in enumerate(obj):
      _flatten(value, f"{prefix}{index}.", out)
  # Anything else (epoch numbers, strings, None) is not a weight and is dropped.


def _flat(obj: Any) -> dict[str, np.ndarray]:
  out: dict[str, np.ndarray] = {}
  _flatten(obj, "", out)
  return out


def to_state_dict(obj: Any, path: str) -> dict[str, np.ndarray]:
  """Unwraps ``{"state_dict": ...}``-style wrappers and flattens nesting with '.' (torch naming).

  A ``module.`` prefix on every name (left by ``nn.DataParallel``) is dropped.
  """
  while isinstance(obj, dict):
    inner = next((obj[key] for key in _WRAPPER_KEYS
                  if isinstance(obj.get(key), dict) and _flat(obj[key])), None)
    if inner is None:
      break
    obj = inner
  flat = _flat(obj)
  if not flat:
    raise WeightsError(f"{path}: holds no tensors")
  if all(name.startswith("module.") for name in flat):
    flat = {name[len("module."):]: value for name, value in flat.items()}
  return flat


def read_torch_state_dict(path: str, use_torch: bool = False) -> dict[str, np.ndarray]:
  """The tensors of a ``torch.save`` file as ``{name: np.ndarray}``.

  ``use_torch``: False (what runs use) reads through the allowlist unpickler above; True
  through ``torch.load(weights_only=True)``, kept for the tests that check both give the same
  arrays. Not torch by default even when it is installed: its weights-only unpickler has had
  code-execution bypasses (CVE-2025-32434, torch < 2.6), and a user's torch may be any version.
  """
  obj = load_with_torch(path) if use_torch else load_without_torch(path)
  return to_state_dict(obj, path)
