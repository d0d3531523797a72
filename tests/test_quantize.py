"""int8 quantization with qwix (compress/quantize.py) on trained runs."""

import os

import jax
import numpy as np
import pytest

from conftest import tiny_config
from lowres_jax import checkpoint
from lowres_jax.compress import quantize
from lowres_jax.config import ConfigError
from lowres_jax.data import sources
from lowres_jax.models import build_model
from lowres_jax.train import loop


@pytest.fixture(scope="module")
def float_run(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("float") / "run")
  config = tiny_config(data_dir, os.path.dirname(workdir) + "/cache")
  config.train.duration, config.optim.lr = "150 steps", 0.05
  loop.run(config, workdir, show_progress=False)
  return workdir, config


def _test_images(data_dir):
  test = sources.load_split("digits", "test", data_dir)
  return {"image": test.inputs()["image"][:64]}


@pytest.mark.parametrize("mode", ["w8a8_dynamic", "w8a8_static"])
def test_int8_runs_agree_with_their_float_model(data_dir, tmp_path, float_run, mode):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.init.kind, config.init.path, config.init.reinit = "workdir", float_run[0], ""
  config.train.duration, config.quantize.mode = "0 steps", mode
  summary = loop.run(config, str(tmp_path / "int8"), show_progress=False)
  # Stated bar: 97% top-1 agreement with the float model on test (measured 100% here).
  assert summary["int8/test/float_agreement"] >= 0.97
  assert abs(summary["int8/test/accuracy"] - summary["test/accuracy"]) <= 0.02
  assert 0 < summary["int8/disk_bytes"]
  float_params = checkpoint.load_variables(float_run[0])["params"]
  kernels = sum(leaf.size for path, leaf in jax.tree_util.tree_leaves_with_path(float_params)
                if "kernel" in jax.tree_util.keystr(path))
  # A byte per kernel value plus float scales and float32 biases: above one byte per kernel
  # value, well under the float model's four.
  float_bytes = quantize.weight_bytes(float_params)
  assert kernels <= summary["int8/weight_bytes"] < float_bytes / 2


def test_w8a8_lowers_to_int8_ops_and_weight_only_does_not(data_dir, float_run):
  model = build_model("cnn", 5, width=8, depth=1, hidden=16)
  variables = checkpoint.load_variables(float_run[0])
  batch = _test_images(data_dir)
  for mode, int8_ops in (("w8a8_dynamic", True), ("weight_only", False)):
    spec = quantize.QuantizeSpec(mode=mode)
    quantized, int8 = quantize.quantize(model, spec, variables, [batch])
    text = jax.jit(lambda v, b: quantized.apply(v, b, train=False)).lower(int8, batch).as_text()
    # The convolution and the matmuls take int8 operands with int32 results.
    assert ("xi8>) -> tensor<" in text and "xi32>" in text) == int8_ops, mode
    assert int8["params"]["head"]["kernel"].array.qvalue.dtype == np.int8


def test_a_quantized_checkpoint_restores_bit_exactly(data_dir, tmp_path, float_run):
  model = build_model("cnn", 5, width=8, depth=1, hidden=16)
  batch = _test_images(data_dir)
  spec = quantize.QuantizeSpec(mode="w8a8_static", calibration_batches=2)
  quantized, int8 = quantize.quantize(model, spec, checkpoint.load_variables(float_run[0]),
                                      [batch, batch])
  quantize.save(str(tmp_path / "int8"), int8)
  restored = quantize.restore(str(tmp_path / "int8"), quantize.abstract_variables(quantized,
                                                                                  batch))
  assert jax.tree.structure(restored) == jax.tree.structure(int8)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(int8)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(quantized.apply(restored, batch)[0],
                                quantized.apply(int8, batch)[0])


def test_quantize_config_errors(data_dir, tmp_path):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.quantize.mode = "int4"
  with pytest.raises(ConfigError, match="quantize.mode"):
    loop.run(config, str(tmp_path / "a"), show_progress=False)
  config.quantize.mode, config.quantize.qat = "w8a8_static", True
  with pytest.raises(ConfigError, match="dynamic"):
    loop.run(config, str(tmp_path / "b"), show_progress=False)
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.quantize.calibration_batches = 8
  with pytest.raises(ConfigError, match="off"):
    loop.run(config, str(tmp_path / "c"), show_progress=False)
