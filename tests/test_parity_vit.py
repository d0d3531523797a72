"""Our ViT computes what Hugging Face's does from the same safetensors checkpoint.

Small random ``transformers.ViTConfig`` models (every weight perturbed, so LayerNorms and
biases are not the trivial 1/0 of a fresh init) are saved with ``save_pretrained``, read
back with ``safetensors.numpy.load_file``, converted with ``vit_convert.convert_hf`` and run
on the same normalised float images (our ``pixel_mean=0, pixel_std=1``). Measured errors
are ~4e-7 relative; the bound is 1e-5 because tanh-approximated GELU already gives ~1e-4.
"""

import numpy as np
import pytest
from flax import traverse_util

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

import jax  # noqa: E402

from lowres_jax.models import vit, vit_convert  # noqa: E402


def hf_model(cls_name, seed, **config):
  """A perturbed random HF model; its errors (a broken torchvision, say) are the test's."""
  torch.manual_seed(seed)
  model = getattr(transformers, cls_name)(transformers.ViTConfig(**config)).eval()
  with torch.no_grad():
    for param in model.parameters():
      param.add_(0.1 * torch.randn_like(param))
  return model


def load_ours(model, tmp_path, **kwargs):
  """Our ViT and variables from ``model.save_pretrained``; returns the unused names too."""
  config = model.config
  model.save_pretrained(tmp_path)
  tensors = safetensors_numpy.load_file(str(tmp_path / "model.safetensors"))
  converted, unused = vit_convert.convert_hf(tensors)
  ours = vit.ViT(num_classes=getattr(model, "num_labels", 1), hidden=config.hidden_size,
                 depth=config.num_hidden_layers, num_heads=config.num_attention_heads,
                 mlp_dim=config.intermediate_size, patch_size=config.patch_size,
                 layer_norm_eps=config.layer_norm_eps, channels=config.num_channels, **kwargs)
  size = config.image_size
  abstract = jax.eval_shape(ours.init, jax.random.PRNGKey(0),
                            {"image": np.zeros((1, size, size, config.num_channels))})
  shapes = {k: v.shape for k, v in traverse_util.flatten_dict(abstract, sep="/").items()}
  for name, value in converted.items():
    assert shapes[name] == value.shape, name
  missing = set(shapes) - set(converted)
  # ViTModel has no classifier: ours keeps its (zero) head.
  variables = {name: np.zeros(shapes[name], np.float32) for name in missing}
  variables.update(converted)
  return ours, traverse_util.unflatten_dict(variables, sep="/"), unused, missing


def relative_error(ours, theirs):
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def test_vit_model_hidden_states_match(tmp_path):
  model = hf_model("ViTModel", 0, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=64, image_size=32, patch_size=8)
  ours, variables, unused, missing = load_ours(model, tmp_path, pixel_mean=0.0, pixel_std=1.0)
  assert unused == ["pooler.dense.bias", "pooler.dense.weight"]
  assert missing == {"params/head/kernel", "params/head/bias"}
  images = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    theirs = model(torch.from_numpy(images.transpose(0, 3, 1, 2)), output_hidden_states=True)
  _, out = ours.apply(variables, {"image": images})
  errors = {"encoded": relative_error(out["encoded"], theirs.last_hidden_state),
            "pre_logits": relative_error(out["pre_logits"], theirs.last_hidden_state[:, 0])}
  for layer in range(2):
    errors[f"block_{layer}"] = relative_error(out[f"block_{layer}"],
                                              theirs.hidden_states[layer + 1])
  print("ViTModel relative errors:", errors)
  assert max(errors.values()) < 1e-5, errors


def test_vit_for_image_classification_logits_match(tmp_path):
  model = hf_model("ViTForImageClassification", 1, hidden_size=32, num_hidden_layers=2,
                   num_attention_heads=4, intermediate_size=64, image_size=16, patch_size=4,
                   num_labels=5, qkv_bias=False)
  ours, variables, unused, missing = load_ours(model, tmp_path)
  assert unused == [] and missing == set()
  pixels = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
  # ViTImageProcessor's defaults: rescale by 1/255, then mean 0.5 and std 0.5 per channel,
  # which is our default pixel_mean = pixel_std = 127.5 on the raw pixels.
  normalised = (pixels.astype(np.float32) / 255 - 0.5) / 0.5
  with torch.no_grad():
    theirs = model(torch.from_numpy(normalised.transpose(0, 3, 1, 2)),
                   output_hidden_states=True)
    their_pre_logits = model.vit.layernorm(theirs.hidden_states[-1])[:, 0]
  logits, out = ours.apply(variables, {"image": pixels})
  errors = {"logits": relative_error(logits, theirs.logits),
            "pre_logits": relative_error(out["pre_logits"], their_pre_logits)}
  print("ViTForImageClassification relative errors:", errors)
  assert max(errors.values()) < 1e-5, errors


def test_saved_directory_starts_a_run_through_config_init(tmp_path, data_dir):
  """The user path: config.init names a save_pretrained directory; the trainer loads it (the
  5-class head re-initialised for a 3-class task, the position embedding resampled from a
  4x4 to digits' 2x2 patch grid) and trains."""
  from conftest import tiny_config
  from lowres_jax.train import loop
  model = hf_model("ViTForImageClassification", 2, hidden_size=16, num_hidden_layers=1,
                   num_attention_heads=2, intermediate_size=32, image_size=16, patch_size=4,
                   num_labels=5)
  model.save_pretrained(tmp_path / "hf")
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.data.classes = (0, 1, 2)
  config.model = dict(name="vit", hidden=16, depth=1, num_heads=2, mlp_dim=32, patch_size=4,
                      layer_norm_eps=1e-12, channels=3)
  config.init.kind, config.init.path = "checkpoint", str(tmp_path / "hf")
  config.train.duration, config.log_every, config.eval.every = "2 steps", 2, 0
  config.checkpoint_every = 0
  summary = loop.run(config, str(tmp_path / "run"), show_progress=False)
  assert summary["init"]["path"] == str(tmp_path / "hf") and np.isfinite(summary["test/loss"])
