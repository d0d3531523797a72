"""Models, augmentation and optimizer pieces on small real inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowres_jax.data import augment
from lowres_jax.models import build_model
from lowres_jax.train import hparams as hparams_lib, optim


@pytest.mark.parametrize("name, kwargs", [
    ("cnn", dict(width=4, depth=2, hidden=8)),
    ("resnet", dict(width=4, stage_sizes=(1, 1), groups=2)),
    ("vit", dict(patch_size=4, hidden=8, depth=1, num_heads=2, mlp_dim=16))])
def test_models_return_logits_and_pre_logits(name, kwargs):
  model = build_model(name, num_classes=3, **kwargs)
  batch = {"image": jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, 1)) * 255}
  params = model.init(jax.random.PRNGKey(1), batch)["params"]
  logits, out = model.apply({"params": params}, batch)
  assert logits.shape == (2, 3)
  assert out["pre_logits"].ndim == 2 and out["pre_logits"].shape[0] == 2
  assert "head" in params and params["head"]["kernel"].shape[-1] == 3


@pytest.mark.parametrize("shape, ties", [((3, 8, 8, 4), False), ((2, 7, 5, 3), False),
                                         ((4, 8, 8, 3), True)])
def test_reshape_max_pool_equals_reduce_window_pool_and_its_gradient(shape, ties):
  import flax.linen as nn
  from lowres_jax.models.cnn import max_pool_2x2
  rng = np.random.default_rng(0)
  x = rng.standard_normal(shape)
  if ties:  # Few distinct values, as in 8x8 digits: most windows hold a tied maximum.
    x = np.round(np.abs(x))
  x = jnp.asarray(x, jnp.float32)
  reference = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  np.testing.assert_array_equal(max_pool_2x2(x), reference(x))
  cotangent = jnp.asarray(rng.standard_normal(reference(x).shape), jnp.float32)
  np.testing.assert_array_equal(jax.vjp(max_pool_2x2, x)[1](cotangent)[0],
                                jax.vjp(reference, x)[1](cotangent)[0])


def test_unknown_model_lists_known_ones():
  with pytest.raises(ValueError, match="known: \\['bert', 'cnn', 'efficientnet_lite', 'resnet', 'vit'\\]"):
    build_model("mlp", 3)


def test_pad_crop_shifts_content_within_the_padding():
  image = jnp.arange(16, dtype=jnp.float32).reshape(1, 4, 4, 1) + 1
  images = jnp.repeat(image, 64, axis=0)
  cropped = augment.random_pad_crop(jax.random.PRNGKey(0), {"image": images}, {}, pad=1)["image"]
  assert cropped.shape == images.shape
  # Every crop is the image shifted by at most one pixel, zeros filling the border.
  shifts = set()
  for crop in np.asarray(cropped):
    for dy in (-1, 0, 1):
      for dx in (-1, 0, 1):
        padded = np.pad(np.asarray(image[0]), ((1, 1), (1, 1), (0, 0)))
        if np.array_equal(crop, padded[1 + dy:5 + dy, 1 + dx:5 + dx]):
          shifts.add((dy, dx))
  assert len(shifts) > 3


def test_flip_mirrors_about_half_of_the_images():
  images = jnp.tile(jnp.arange(4.0).reshape(1, 1, 4, 1), (200, 2, 1, 1))
  flipped = np.asarray(augment.random_flip(jax.random.PRNGKey(0), {"image": images}, {})["image"])
  mirrored = (flipped[:, 0, 0, 0] == 3).mean()
  assert 0.35 < mirrored < 0.65
  assert set(flipped[:, 0, 0, 0]) == {0.0, 3.0}


def test_unknown_augmentation_is_an_error():
  with pytest.raises(ValueError, match="unknown augmentation\\(s\\) \\['rotat'\\]; known: .*'rotate'"):
    augment.check_names(["crop", "rotat"])


def test_frozen_params_do_not_move_and_decay_skips_biases():
  params = {"body": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
            "head": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
  spec = optim.OptimSpec("sgd", momentum=0.0, warmup_steps=0, total_steps=10, grad_clip=0.0,
                         freeze="^(?!head/)")
  hparams = {"lr": jnp.float32(0.1), "weight_decay": jnp.float32(0.5)}
  tx = optim.build_optimizer(spec, hparams, params)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  assert all((u == 0).all() for u in jax.tree.leaves(updates["body"]))
  # Step 0 of warm-up-free cosine: lr = 0.1. Kernel: -(g + wd * w) * lr; bias: -g * lr.
  np.testing.assert_allclose(updates["head"]["kernel"], -0.1 * (1 + 0.5), rtol=1e-6)
  np.testing.assert_allclose(updates["head"]["bias"], -0.1, rtol=1e-6)
  assert optim.count_trainable(params, spec.freeze) == 6


def test_schedule_warms_up_then_decays_to_zero():
  spec = optim.OptimSpec("sgd", 0.9, warmup_steps=10, total_steps=100, grad_clip=0.0, freeze="")
  lr = optim.learning_rate_fn(spec, jnp.float32(0.2))
  np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(100)], [0.0, 0.1, 0.2, 0.0], atol=1e-6)


def test_resume_truncates_the_log_to_the_restored_step(tmp_path):
  import json
  from lowres_jax.train.writer import truncate_jsonl
  path = tmp_path / "metrics.jsonl"
  records = [{"step": 10, "train/loss": 1.0}, {"step": 20, "train/loss": 0.5},
             {"step": 20, "test/accuracy": 0.9}, {"step": 30, "train/loss": 0.2}]
  path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 40, "tr')
  truncate_jsonl(str(path), 20)
  assert [json.loads(l) for l in path.read_text().splitlines()] == records[:2]


def test_scanned_chunk_equals_repeated_single_steps():
  """Accelerators run `log_every` steps per call in a scan; CPU runs one per call. Same result."""
  from lowres_jax import parallel
  from lowres_jax.train import step as step_lib
  from lowres_jax.train.state import TrainState
  model = build_model("cnn", 3, width=4, depth=1, hidden=8)
  params = model.init(jax.random.PRNGKey(0), {"image": jnp.zeros((1, 8, 8, 1))})["params"]
  spec_kwargs = dict(model=model, optim=optim.OptimSpec("sgd", 0.9, 2, 10, 0.0, ""),
                     batch_size=4, augment=augment.AugmentSettings(("crop",), crop_pad=1))
  tx = optim.build_optimizer(spec_kwargs["optim"], hparams_lib.placeholder(), params)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state={},
                     opt_state=tx.init(params), rng=jax.random.PRNGKey(1), extra={})
  hparams = {"lr": jnp.float32(0.1), "weight_decay": jnp.float32(1e-3),
             "label_smoothing": jnp.float32(0.1)}
  images = jax.random.randint(jax.random.PRNGKey(2), (6, 8, 8, 1), 0, 255).astype(jnp.uint8)
  examples = {"image": images, "label": jnp.array([0, 1, 2, 0, 1, 2])}
  sharding = parallel.batch_sharding(parallel.make_mesh())
  scanned = jax.jit(step_lib.make_train_chunk(step_lib.StepSpec(chunk_steps=5, **spec_kwargs),
                                              sharding))
  single = jax.jit(step_lib.make_train_chunk(step_lib.StepSpec(chunk_steps=1, **spec_kwargs),
                                             sharding))
  scan_state, scan_metrics = scanned(state, hparams, {"train": examples})
  losses = []
  for _ in range(5):
    state, metrics = single(state, hparams, {"train": examples})
    losses.append(metrics["loss"][0])
  np.testing.assert_allclose(scan_metrics["loss"], losses, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(scan_state.params), jax.tree.leaves(state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert int(scan_state.step) == int(state.step) == 5
