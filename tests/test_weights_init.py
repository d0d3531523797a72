"""config.init end to end: foreign checkpoints start runs, and every bad one is one clear error."""

import jax
import numpy as np
import pytest

from conftest import DEFAULT_CONFIG, cli_flags, run_main, tiny_config
from lowres_jax.models import build_model
from lowres_jax.train import loop
from lowres_jax.weights import init as init_lib
from test_vit import SMALL, flat, random_params, to_vision_transformer
from test_weights_files import _unsafe_bodies, _write_legacy

# test_vit's inverse mapping is written for its SMALL sizes.
TINY_VIT = dict(name="vit", **{**SMALL, "depth": 1}, channels=3)


def write_vit_npz(path, image_size: int) -> dict:
  """A vision_transformer-style .npz of a random ViT made for ``image_size`` pixels."""
  model = build_model(**TINY_VIT, num_classes=10)
  batch = {"image": np.zeros((1, image_size, image_size, 1), np.uint8)}
  params = random_params(model, batch)
  np.savez(path, **to_vision_transformer(params, depth=1))
  return flat(params)


def fresh_tiny_vit() -> dict:
  model = build_model(**TINY_VIT, num_classes=5)
  return jax.device_get(model.init(jax.random.PRNGKey(0),
                                   {"image": np.zeros((1, 8, 8, 1), np.uint8)}))


def test_npz_checkpoint_starts_a_run_resampled_to_the_new_image_size(tmp_path, data_dir):
  saved = write_vit_npz(tmp_path / "vit.npz", image_size=16)  # A 4x4 grid; digits give 2x2.
  spec = init_lib.InitSpec("checkpoint", str(tmp_path / "vit.npz"), reinit="^head/",
                           dont_load="^pre_logits")
  fresh = fresh_tiny_vit()
  merged = init_lib.flatten(init_lib.merge(fresh, init_lib.load(spec, "vit", None), spec))
  np.testing.assert_array_equal(merged["params/embedding/kernel"],
                                saved["params/embedding/kernel"])
  np.testing.assert_array_equal(merged["params/block_0/mlp_in/kernel"],
                                saved["params/block_0/mlp_in/kernel"])
  assert merged["params/pos_embedding"].shape == (1, 4, 16)  # Resampled from (1, 16, 16).
  np.testing.assert_allclose(merged["params/pos_embedding"].mean(),
                             saved["params/pos_embedding"].mean(), atol=0.05)
  assert merged["params/head/kernel"].shape == (16, 5)  # Re-initialised for 5 classes.

  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.model = TINY_VIT
  config.init.kind, config.init.path = "checkpoint", str(tmp_path / "vit.npz")
  config.init.dont_load = "^pre_logits"
  config.train.duration = "4 steps"
  config.log_every, config.eval.every, config.checkpoint_every = 2, 0, 0
  summary = loop.run(config, str(tmp_path / "run"), show_progress=False)
  assert summary["init"]["kind"] == "checkpoint" and np.isfinite(summary["test/loss"])


def test_unplaced_checkpoint_names_are_reported_unless_dont_load(tmp_path):
  write_vit_npz(tmp_path / "vit.npz", image_size=8)
  spec = init_lib.InitSpec("checkpoint", str(tmp_path / "vit.npz"))
  fresh = fresh_tiny_vit()
  with pytest.raises(init_lib.InitError, match=r"unexpected in checkpoint: \['pre_logits/kernel'\]"):
    init_lib.merge(fresh, init_lib.load(spec, "vit", None), spec)


def error_line(tmp_path, data_dir, model: dict, *overrides: str) -> str:
  """Runs main on ``model`` with ``overrides``; asserts it fails with one error line."""
  config = tmp_path / "config.py"
  config.write_text(
      "from lowres_jax.config import load_module\n"
      f"def get_config():\n"
      f"  c = load_module({str(DEFAULT_CONFIG)!r}).get_config(\n"
      "      'tiny=1,init=scratch,stages=finetune')\n"
      f"  c.model = {model!r}\n"
      "  return c\n")
  result = run_main([f"--config={config}",
                     f"--workdir={tmp_path / 'run'}", *cli_flags(data_dir, str(tmp_path)),
                     *overrides])
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  lines = [l for l in result.stderr.splitlines() if l.startswith("lowres_jax: error:")]
  assert len(lines) == 1, result.stderr[-2000:]
  return result.stderr[result.stderr.index("lowres_jax: error:"):]


def test_checkpoint_of_another_architecture_is_one_clear_error(tmp_path, data_dir):
  message = error_line(tmp_path, data_dir, TINY_VIT, "--config.init.kind=checkpoint",
                       "--config.init.path=package:efficientnet_lite0")
  assert "package:efficientnet_lite0 is not a vit checkpoint" in message


def test_pickle_holding_more_than_tensors_is_refused_and_never_runs(tmp_path, data_dir):
  marker = tmp_path / "pwned"
  body, _ = _unsafe_bodies(marker)["os.system"]
  path = _write_legacy(tmp_path / "evil.pth", body, {"0": np.zeros(1, np.float32)})
  message = error_line(tmp_path, data_dir, {"name": "efficientnet_lite"},
                       "--config.init.kind=checkpoint", f"--config.init.path={path}")
  assert "os.system" in message
  assert not marker.exists()


def test_rename_maps_a_deeper_teachers_layers_onto_a_shallower_student():
  """A 2-layer BERT student started from layers 0 and 2 of a 4-layer teacher: every student
  layer holds its teacher layer's weights, and the embeddings are shared."""
  kwargs = dict(hidden=16, num_heads=2, mlp_dim=32, vocab_size=50, max_positions=16)
  tokens = {"input_ids": np.ones((1, 4), np.int32), "attention_mask": np.ones((1, 4), np.int32),
            "token_type_ids": np.zeros((1, 4), np.int32)}
  teacher = build_model("bert", 3, depth=4, **kwargs).init(jax.random.PRNGKey(0), tokens)
  student = build_model("bert", 3, depth=2, **kwargs).init(jax.random.PRNGKey(1), tokens)
  rules = ((r"/layer_0/", "/layer_0/"), (r"/layer_2/", "/layer_1/"), (r"/layer_[13]/", ""))
  spec = init_lib.InitSpec(kind="scratch", rename=rules, reinit="")
  merged = init_lib.merge(student, init_lib.Loaded(init_lib.flatten(teacher)), spec)
  got, want = init_lib.flatten(merged), init_lib.flatten(teacher)
  for name, value in got.items():
    source = name.replace("/layer_1/", "/layer_2/")
    np.testing.assert_array_equal(value, want[source], err_msg=name)
  assert any("/layer_1/" in name for name in got)
  with pytest.raises(init_lib.InitError, match="onto"):
    init_lib.renamed(init_lib.flatten(teacher), ((r"/layer_\d/", "/layer_0/"),))


def test_weights_holding_nan_are_refused_with_the_tensor_names_unless_kept_fresh():
  model = build_model("cnn", 3, width=2, depth=1, hidden=4)
  fresh = model.init(jax.random.PRNGKey(0), {"image": np.ones((1, 8, 8, 1), np.uint8)})
  loaded = init_lib.flatten(fresh)
  name = next(n for n in loaded if n.endswith("kernel") and "head" not in n)
  loaded[name] = np.array(loaded[name], copy=True)
  loaded[name].flat[0] = np.nan
  spec = init_lib.InitSpec(kind="scratch", reinit="")
  with pytest.raises(init_lib.InitError, match="non-finite") as error:
    init_lib.merge(fresh, init_lib.Loaded(loaded), spec)
  assert f"{name} (1 of" in str(error.value)
  kept = init_lib.InitSpec(kind="scratch", reinit=name.split("/")[1])  # That layer stays fresh.
  init_lib.merge(fresh, init_lib.Loaded(loaded), kept)
