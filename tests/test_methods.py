"""Adaptation methods (train/adapt/, models/lora.py), each against a
hand computation or the plain trainer it must reduce to."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from conftest import tiny_config
from lowres_jax import parallel
from lowres_jax.config import ConfigError
from lowres_jax.data import augment
from lowres_jax.models import build_model, lora as lora_lib
from lowres_jax.train import adapt as adapt_lib, hparams as hparams_lib, loop, optim
from lowres_jax.train.adapt import bss, delta, l2sp, sam, wise_ft
from lowres_jax.train import step as step_lib
from lowres_jax.train.compiled import CompileCache
from lowres_jax.train.plan import read_plan
from lowres_jax.train.state import TrainState, split_variables

TREE = {"body": {"kernel": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "bias": jnp.array([0.5, -1.0])},
        "head": {"kernel": jnp.array([[2.0], [-1.0]]), "bias": jnp.array([0.25])}}
ANCHOR = {"body": {"kernel": jnp.array([[0.0, -2.0], [1.0, 1.0]]), "bias": jnp.array([0.0, 0.0])},
          "head": {"kernel": jnp.array([[9.0], [9.0]]), "bias": jnp.array([9.0])}}
ANCHORED = {"body": {"kernel": True, "bias": True}, "head": {"kernel": False, "bias": False}}


def test_l2_sp_value_and_gradient_by_hand():
  alpha, beta = 0.3, 0.1
  value, grads = jax.value_and_grad(l2sp.l2_sp)(TREE, ANCHOR, ANCHORED, alpha, beta)
  # Body: differences 1, 0, -0.5, 2 and 0.5, -1 -> squares sum 1 + 0.25 + 4 + 0.25 + 1 = 6.5.
  # Head (plain L2): 4 + 1 + 0.0625 = 5.0625.
  np.testing.assert_allclose(value, 0.5 * alpha * 6.5 + 0.5 * beta * 5.0625, rtol=1e-6)
  np.testing.assert_allclose(grads["body"]["kernel"], alpha * np.array([[1.0, 0.0], [-0.5, 2.0]]),
                             rtol=1e-6)
  np.testing.assert_allclose(grads["body"]["bias"], alpha * np.array([0.5, -1.0]), rtol=1e-6)
  np.testing.assert_allclose(grads["head"]["kernel"], beta * np.array([[2.0], [-1.0]]), rtol=1e-6)
  np.testing.assert_allclose(grads["head"]["bias"], beta * np.array([0.25]), rtol=1e-6)


def test_delta_feature_distance_value_and_gradient_by_hand():
  features = jnp.array([[1.0, 2.0], [3.0, -1.0]])
  anchor = jnp.array([[0.0, 2.0], [1.0, 1.0]])
  value, grad = jax.value_and_grad(delta.feature_distance)(features, anchor)
  np.testing.assert_allclose(value, 0.5 * (1 + 0 + 4 + 4) / 2, rtol=1e-6)
  np.testing.assert_allclose(grad, (features - anchor) / 2, rtol=1e-6)
  # The pretrained model's features are a constant: no gradient flows into them.
  np.testing.assert_array_equal(jax.grad(delta.feature_distance, argnums=1)(features,
                                                                                  anchor), 0.0)


@pytest.mark.parametrize("shape", [(6, 3), (3, 6)])
def test_bss_is_the_smallest_squared_singular_values_with_their_gradient(shape):
  features = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)
  k = 2
  value, grad = jax.value_and_grad(bss.smallest_singular_values_squared)(features, k)
  u, s, vt = np.linalg.svd(np.asarray(features, np.float64), full_matrices=False)
  np.testing.assert_allclose(value, np.sum(s[-k:] ** 2), rtol=1e-5)
  # d sigma_i^2 / dF = 2 sigma_i u_i v_i^T.
  expected = sum(2 * s[i] * np.outer(u[:, i], vt[i]) for i in range(len(s) - k, len(s)))
  np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="only 3"):
    bss.smallest_singular_values_squared(features, 4)


def test_sam_update_equals_the_hand_computed_two_step_update_on_a_quadratic():
  a = jnp.array([2.0, 0.5])
  loss = lambda w: 0.5 * jnp.sum(a * w**2)
  w = jnp.array([1.0, -2.0])
  rho, lr = 0.1, 0.2
  grad_fn = jax.value_and_grad(lambda p: (loss(p), None), has_aux=True)
  (value, _), sharp = sam.sam_gradients(grad_fn, w, rho, True)
  g = a * w                                  # [2, -1]
  perturbed = w + rho * g / np.linalg.norm(g)
  np.testing.assert_allclose(value, loss(w), rtol=1e-6)
  np.testing.assert_allclose(sharp, a * perturbed, rtol=1e-6)
  np.testing.assert_allclose(w - lr * sharp, w - lr * a * perturbed, rtol=1e-6)
  # Frozen parameters are not perturbed: their coordinate of the ascent step is zero.
  tree_fn = jax.value_and_grad(lambda p: (loss(jnp.stack([p["x"], p["y"]])), None), has_aux=True)
  _, sharp_tree = sam.sam_gradients(tree_fn, {"x": w[0], "y": w[1]}, rho,
                                        {"x": True, "y": False})
  np.testing.assert_allclose(sharp_tree["y"], a[1] * w[1], rtol=1e-6)
  np.testing.assert_allclose(sharp_tree["x"], a[0] * (w[0] + rho), rtol=1e-6)


def test_ema_update_and_wise_ft_mixture_by_hand():
  spec = adapt_lib.make_spec(methods=("ema", "wise_ft"), fresh="^head/", wise_ft=(0.25,))
  params = {"body": {"w": jnp.array([[4.0]])}, "head": {"w": jnp.array([[2.0]])}}
  extra = adapt_lib.initial_extra(spec, jax.tree.map(jnp.zeros_like, params))
  extra = adapt_lib.update_extra(spec, extra, params, {"ema_decay": jnp.float32(0.9)})
  np.testing.assert_allclose(extra["ema"]["body"]["w"], 0.4, rtol=1e-6)
  stacked = {"params": jax.tree.map(lambda x: x[None], params)}
  anchor = {"params": {"body": {"w": jnp.array([[0.0]])}, "head": {"w": jnp.array([[7.0]])}}}
  variants = adapt_lib.eval_variants(spec, stacked, jax.tree.map(lambda x: x[None], extra), anchor)
  assert sorted(variants) == ["ema", "wise_ft_0.25"]
  mixed = variants["wise_ft_0.25"]["params"]
  np.testing.assert_allclose(mixed["body"]["w"], [[[1.0]]])   # 0.25 * 4 + 0.75 * 0.
  np.testing.assert_allclose(mixed["head"]["w"], [[[2.0]]])   # A new head keeps its value.


def test_wise_ft_mixes_batch_statistics_and_scales_lora_deltas():
  spec = adapt_lib.make_spec(methods=("wise_ft", "lora"), fresh="^head/", wise_ft=(0.25,))
  params = {"dense": {"kernel": jnp.array([[4.0]]), "lora_a": jnp.array([[2.0]]),
                      "lora_b": jnp.array([[3.0]])}}
  stats = {"bn": {"mean": jnp.array([8.0]), "var": jnp.array([4.0])}}
  stacked = jax.tree.map(lambda x: x[None], {"params": params, "batch_stats": stats})
  anchor = {"params": {"dense": {"kernel": jnp.array([[0.0]])}},
            "batch_stats": {"bn": {"mean": jnp.array([0.0]), "var": jnp.array([1.0])}}}
  mixed = wise_ft.wise_ft_mixture(spec, stacked, anchor, 0.25)
  np.testing.assert_allclose(mixed["params"]["dense"]["kernel"], [[[1.0]]])  # 0.25 * 4.
  np.testing.assert_allclose(mixed["params"]["dense"]["lora_a"], [[[2.0]]])
  np.testing.assert_allclose(mixed["params"]["dense"]["lora_b"], [[[0.75]]])  # 0.25 * 3.
  # Merged: 0.25 * (4 + 2 * 3) + 0.75 * 0 = 1 + 2 * 0.75, the mixture of the merged kernels.
  np.testing.assert_allclose(mixed["batch_stats"]["bn"]["mean"], [[2.0]])  # 0.25 * 8.
  np.testing.assert_allclose(mixed["batch_stats"]["bn"]["var"], [[1.75]])  # 1 + 0.75.


def _bert():
  return build_model("bert", 3, hidden=16, depth=2, num_heads=2, mlp_dim=32, vocab_size=50,
                     max_positions=16)


def _tokens(n=4, length=6):
  ids = np.random.default_rng(0).integers(3, 50, (n, length)).astype(np.int32)
  return {"input_ids": ids, "attention_mask": np.ones_like(ids),
          "token_type_ids": np.zeros_like(ids)}


@pytest.mark.parametrize("name", ["bert", "vit"])
def test_layer_wise_decay_assigns_decay_to_the_power_of_depth(name):
  if name == "bert":
    model, batch = _bert(), _tokens()
  else:
    model = build_model("vit", 3, patch_size=4, hidden=16, depth=2, num_heads=2, mlp_dim=32)
    batch = {"image": np.zeros((2, 8, 8, 1), np.uint8)}
  params = model.init(jax.random.PRNGKey(0), batch)["params"]
  spec = adapt_lib.make_spec(methods=("llrd",), model_name=name)
  decay = 0.5
  got = adapt_lib.update_multipliers(spec, {"layer_decay": jnp.float32(decay)}, params,
                                   jnp.int32(0), 10)
  bottom = "embeddings/" if name == "bert" else "(embedding/|pos_embedding$|cls$)"
  block = "layer_" if name == "bert" else "block_"
  for path, value in ((("/".join(p)), v) for p, v in
                      traverse_util.flatten_dict(got).items()):
    match = re.match(block + r"(\d+)/", path)
    if match:  # Two blocks: block 1 is one below the top, block 0 two.
      expected = decay ** (2 - int(match.group(1)))
    elif re.match(bottom, path):
      expected = decay ** 3
    else:  # The head (and ViT's final norm) sit at the top.
      expected = 1.0
    np.testing.assert_allclose(value, expected, rtol=1e-6, err_msg=path)


def test_lora_counts_its_parameters_and_merges_into_the_plain_model():
  base, batch, rank = _bert(), _tokens(), 4
  spec = lora_lib.LoraSpec(rank=rank, alpha=8.0, targets=r"attention/(query|value)$")
  model = lora_lib.LoraModel(base, spec)
  variables = model.init(jax.random.PRNGKey(0), batch)
  params = variables["params"]
  adapted = lora_lib.adapted_kernels(params)
  assert adapted == [f"layer_{i}/attention/{n}" for i in range(2) for n in ("query", "value")]
  # Each adapted 16 -> 16 Dense gains A (16 x r) and B (r x 16).
  assert lora_lib.adapter_count(params) == 4 * (16 * rank + rank * 16)
  head = 16 * 3 + 3
  assert optim.count_trainable(params, lora_lib.LORA_FREEZE) == 4 * 32 * rank + head
  # B starts at zero: the adapted model starts as the base model.
  plain = {**variables, "params": lora_lib.merge(params, spec.scale)}
  embed = lambda m, v: m.apply(v, batch)[1]["pre_logits"]  # The head starts at zero.
  np.testing.assert_allclose(embed(model, variables), embed(base, plain), atol=1e-6)
  # With trained (non-zero) adapters, the merged plain model gives the same outputs.
  rng = np.random.default_rng(1)
  trained = jax.tree_util.tree_map_with_path(
      lambda path, x: x + 0.1 * rng.standard_normal(x.shape).astype(np.float32)
      if path[-1].key in lora_lib.LORA_PARAMS else x, params)
  outputs = embed(model, {**variables, "params": trained})
  merged = embed(base, {**variables, "params": lora_lib.merge(trained, spec.scale)})
  assert not np.allclose(outputs, embed(model, variables), atol=1e-3)
  np.testing.assert_allclose(outputs, merged, atol=1e-5)


def _train(adapt, freeze, steps, model=None, hparam_values=None, keep_losses=None):
  """``steps`` single-step calls of the trainer's step on a tiny separable image task."""
  model = model or build_model("cnn", 2, width=4, depth=1, hidden=8)
  rng = np.random.default_rng(0)
  labels = np.arange(8) % 2
  examples = {"image": (rng.random((8, 8, 8, 1)) * 60 + 150 * labels[:, None, None, None]
                        ).astype(np.uint8), "label": labels}
  params, model_state = split_variables(model.init(jax.random.PRNGKey(0),
                                                   {"image": examples["image"][:1]}))
  spec = step_lib.StepSpec(model, optim.OptimSpec("sgd", 0.9, 0, 2 * steps, 0.0, freeze),
                           batch_size=4, chunk_steps=1, augment=augment.AugmentSettings(),
                           adapt=adapt)
  tx = optim.build_optimizer(spec.optim, hparams_lib.placeholder(), params)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                     opt_state=tx.init(params), rng=jax.random.PRNGKey(1),
                     extra=adapt_lib.initial_extra(adapt, params))
  hparams = {name: jnp.float32(hparams_lib.DEFAULTS.get(key, 0.0))
             for name, key in hparams_lib.TRACED.items()}
  hparams.update({"lr": jnp.float32(0.1), "weight_decay": jnp.float32(1e-3),
                  **{k: jnp.float32(v) for k, v in (hparam_values or {}).items()}})
  chunk = jax.jit(step_lib.make_train_chunk(spec, parallel.batch_sharding(parallel.make_mesh())))
  frozen = {"anchor": {"params": params, **model_state}} if adapt.needs_anchor else {}
  for _ in range(steps):
    state, metrics = chunk(state, hparams, {"train": examples}, frozen)
    if keep_losses is not None:
      keep_losses.append(float(metrics["loss"][0]))
  return params, state


def test_lp_ft_first_phase_equals_a_linear_probe_then_tunes_everything():
  steps = 6  # The schedule spans 12 steps; LP-FT probes for half of them.
  initial, lpft = _train(adapt_lib.make_spec(methods=("lpft",)), "", steps,
                         hparam_values={"lpft_probe": 0.5})
  _, probe = _train(adapt_lib.make_spec(), "^(?!head/)", steps)
  for a, b in zip(jax.tree.leaves(lpft.params), jax.tree.leaves(probe.params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  for path, value in traverse_util.flatten_dict(lpft.params).items():
    if path[0] != "head":  # Bit-identical: not one update reached the backbone.
      np.testing.assert_array_equal(value, traverse_util.flatten_dict(
          initial)[path])
  _, tuned = _train(adapt_lib.make_spec(methods=("lpft",)), "", steps,
                    hparam_values={"lpft_probe": 0.25})
  assert not np.array_equal(tuned.params["conv0_a"]["kernel"], initial["conv0_a"]["kernel"])


def test_bitfit_keeps_every_non_bias_weight_bit_identical():
  initial, state = _train(adapt_lib.make_spec(), adapt_lib.BITFIT_FREEZE, 4)
  flat = traverse_util.flatten_dict
  for path, value in flat(state.params).items():
    if path[0] == "head" or path[-1] == "bias":
      assert not np.array_equal(value, flat(initial)[path]), path
    else:
      np.testing.assert_array_equal(value, flat(initial)[path])


def test_every_method_composes_in_one_step_and_strengths_are_traced():
  adapt = adapt_lib.make_spec(methods=("l2sp", "delta", "bss", "sam", "ema", "llrd"),
                               fresh="^head/", model_name="cnn")
  _, weak = _train(adapt, "", 3, hparam_values={"l2sp": 0.0, "delta": 0.0, "bss": 0.0})
  _, strong = _train(adapt, "", 3, hparam_values={"l2sp": 10.0, "delta": 1.0, "bss": 1.0})
  assert np.isfinite(jax.tree.leaves(strong.params)[0]).all()
  assert not np.allclose(weak.params["conv0_a"]["kernel"], strong.params["conv0_a"]["kernel"])
  assert set(strong.extra) == {"ema"}


def test_lr_groups_scale_each_parameter_by_its_first_matching_group():
  params = {"conv0": {"kernel": 1.0, "bias": 1.0}, "dense": {"kernel": 1.0}, "head": {"bias": 1.0}}
  spec = adapt_lib.make_spec(lr_groups=(r"/bias$", r"^conv0/", r"^head/"))
  hparams = {hparams_lib.GROUP_SCALES: jnp.array([0.5, 0.1, 3.0])}
  got = traverse_util.flatten_dict(adapt_lib.update_multipliers(spec, hparams, params, 0, 10),
                                   sep="/")
  # conv0/bias matches the bias group first; dense matches none.
  assert {k: float(v) for k, v in got.items()} == pytest.approx(
      {"conv0/kernel": 0.1, "conv0/bias": 0.5, "dense/kernel": 1.0, "head/bias": 0.5})


def test_a_group_with_multiplier_zero_stays_bit_identical_and_the_others_train():
  adapt = adapt_lib.make_spec(lr_groups=(r"^conv0_a/",))
  initial, after = _train(adapt, "", 3,
                          hparam_values={hparams_lib.GROUP_SCALES: np.float32([0.0])})
  np.testing.assert_array_equal(after.params["conv0_a"]["kernel"], initial["conv0_a"]["kernel"])
  assert not np.array_equal(after.params["head"]["kernel"], initial["head"]["kernel"])


def test_a_grid_over_group_multipliers_compiles_once(data_dir, tmp_path):
  cache = CompileCache()
  configs = []
  for scale in (0.1, 1.0):
    config = tiny_config(data_dir, str(tmp_path / "cache"))
    config.adapt = {"lr_groups": ((r"^head/", scale),)}
    configs.append(config)
  summaries = loop.train_group(configs, [str(tmp_path / f"run{i}") for i in range(2)], cache,
                               show_progress=False)
  assert len([k for k in cache._executables if k[0] == "train_chunk"]) == 1
  assert [s["hparams"][hparams_lib.GROUP_SCALES] for s in summaries] == [[0.1], [1.0]]
  assert summaries[0]["test/loss"] != summaries[1]["test/loss"]


def test_a_grid_over_a_regulariser_strength_compiles_once(data_dir, tmp_path):
  cache = CompileCache()
  configs = []
  for strength in (0.001, 0.01, 0.1):
    config = tiny_config(data_dir, str(tmp_path / "cache"), "tiny=1,init=source")
    config.adapt = {"methods": ("l2sp",), "l2sp": strength}
    configs.append(config)
  summaries = loop.train_group(configs, [str(tmp_path / f"run{i}") for i in range(3)], cache,
                               show_progress=False)
  train_compiles = [k for k in cache._executables if k[0] == "train_chunk"]
  # One train program for the three strengths (the source pretraining has its own).
  assert len([k for k in train_compiles if "l2sp" in repr(k[1])]) == 1
  assert [s["hparams"]["l2sp"] for s in summaries] == [0.001, 0.01, 0.1]
  assert all(np.isfinite(s["test/accuracy"]) for s in summaries)


def test_wise_ft_and_ema_runs_report_the_variant_chosen_on_validation(data_dir, tmp_path):
  config = tiny_config(data_dir, str(tmp_path / "cache"), "tiny=1,init=source")
  config.adapt = {"methods": ("ema", "wise_ft"), "wise_ft": (0.5,), "ema_decay": 0.9}
  summary = loop.run(config, str(tmp_path / "run"), show_progress=False)
  names = ("final", "ema", "wise_ft_0.5")
  assert summary["variant"] in names
  best = max(names, key=lambda n: summary[f"{n}/val/accuracy"])
  assert summary[f"{best}/val/accuracy"] == summary["val/accuracy"]
  assert summary["test/accuracy"] == summary[f"{summary['variant']}/test/accuracy"]


@pytest.mark.parametrize("adapt, message", [
    ({"methods": ("l2sp",)}, "init.kind = 'scratch' has none"),
    ({"methods": ("sam",), "l2sp": 0.1}, "does not select \\['l2sp'\\]"),
    ({"methods": ("l2_sp",)}, "unknown method"),
    ({"methods": ("sam",), "sam_radius": 0.1}, "unknown key"),
    ({"methods": ("llrd",)}, None),
    ({"methods": ("lora",), "lora_rank": 0}, "rank must be >= 1"),
    ({"methods": ("mixout",)}, "init.kind = 'scratch' has none"),
    ({"methods": ("mixout",), "mixout": 1.0}, "must be in \\[0.0, 1.0\\)"),
    ({"methods": ("sam",), "mixout": 0.2}, "does not select \\['mixout'\\]"),
])
def test_adapt_config_errors_name_the_problem(data_dir, tmp_path, adapt, message):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.adapt = adapt
  if message is None:
    read_plan(config)  # Valid.
    return
  with pytest.raises(ConfigError, match=message):
    read_plan(config)


def test_lora_targets_that_match_no_layer_stop_the_run(data_dir, tmp_path):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.adapt = {"methods": ("lora",), "lora_targets": "nothing_matches"}
  with pytest.raises(ValueError, match="matches no Dense layer"):
    loop.run(config, str(tmp_path / "run"), show_progress=False)


def test_lora_on_pointwise_convolutions_merges_into_the_plain_model():
  base = build_model("efficientnet_lite", 3, image_size=32)
  spec = lora_lib.LoraSpec(rank=2, alpha=4.0, targets=r"block1/(expand|project)/conv$")
  model = lora_lib.LoraModel(base, spec)
  batch = {"image": np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3)).astype(np.uint8)}
  variables = model.init(jax.random.PRNGKey(0), batch)
  assert lora_lib.adapted_kernels(variables["params"]) == ["block1/expand/conv",
                                                           "block1/project/conv"]
  rng = np.random.default_rng(1)
  trained = jax.tree_util.tree_map_with_path(
      lambda path, x: x + 0.1 * rng.standard_normal(x.shape).astype(np.float32)
      if path[-1].key in lora_lib.LORA_PARAMS else x, variables["params"])
  embed = lambda m, params: m.apply({**variables, "params": params}, batch)[1]["pre_logits"]
  adapted = embed(model, trained)
  scale = float(np.max(np.abs(adapted)))  # Untrained BatchNorm statistics: tiny features.
  np.testing.assert_allclose(embed(base, lora_lib.merge(trained, spec.scale)) / scale,
                             adapted / scale, atol=1e-4)
  assert np.max(np.abs(adapted - embed(model, variables["params"]))) > 0.01 * scale


def test_a_per_seed_source_pretrains_one_source_model_per_run_seed(data_dir, tmp_path):
  configs = []
  for seed in (0, 1):
    config = tiny_config(data_dir, str(tmp_path / "cache"), "tiny=1,init=source")
    config.seed = seed
    config.init.source_seed = "run"
    configs.append(config)
  summaries = loop.train_group(configs, [str(tmp_path / f"run{s}") for s in (0, 1)],
                               show_progress=False)
  assert summaries[0]["pretrained"] != summaries[1]["pretrained"]
  assert len(list((tmp_path / "cache").glob("source-digits-*"))) == 2
  shared = tiny_config(data_dir, str(tmp_path / "cache"), "tiny=1,init=source")
  assert loop.source_identity(read_plan(shared)).startswith("source-digits-")
  shared.adapt = {"methods": ("l2sp",)}
  shared.init.source_seed = "run"
  with pytest.raises(ConfigError, match="source_seed = 'shared'"):
    read_plan(shared)


def test_stochastic_depth_drops_whole_examples_and_keeps_the_expectation():
  import flax.linen as nn
  from lowres_jax.models.stochastic_depth import block_rate, drop_branch

  class Branch(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      return drop_branch(self, x, 0.25, train)

  x = jnp.ones((4000, 3, 2))
  dropped = Branch().apply({}, x, True, rngs={"dropout": jax.random.PRNGKey(0)})
  per_example = np.asarray(dropped).reshape(4000, -1)
  np.testing.assert_allclose(np.unique(per_example), [0.0, 1 / 0.75], rtol=1e-6)  # Rescaled.
  assert np.all(per_example.min(1) == per_example.max(1))
  assert abs(float(np.mean(per_example == 0)) - 0.25) < 0.03
  assert abs(float(per_example.mean()) - 1.0) < 0.05
  np.testing.assert_array_equal(Branch().apply({}, x, False), x)  # Identity in eval.
  assert [block_rate(0.2, i, 5) for i in (0, 4)] == [0.0, 0.2]
  vit = build_model("vit", 3, patch_size=4, hidden=16, depth=2, num_heads=2, mlp_dim=32,
                    drop_path=0.5)
  batch = {"image": np.random.default_rng(0).integers(0, 255, (8, 8, 8, 1)).astype(np.uint8)}
  variables = vit.init(jax.random.PRNGKey(0), batch)
  train = lambda key: vit.apply(variables, batch, train=True, rngs={"dropout": key})[1][
      "pre_logits"]
  assert not np.allclose(train(jax.random.PRNGKey(1)), train(jax.random.PRNGKey(2)))


def test_lora_adapters_start_fresh_when_the_base_model_loads_a_checkpoint():
  from lowres_jax.weights import init as init_lib
  base, batch = _bert(), _tokens()
  pretrained = init_lib.flatten(base.init(jax.random.PRNGKey(5), batch))
  model = lora_lib.LoraModel(base, lora_lib.LoraSpec(4, 8.0, r"attention/query$"))
  fresh = model.init(jax.random.PRNGKey(0), batch)
  merged = init_lib.merge(fresh, init_lib.Loaded(pretrained), init_lib.InitSpec(kind="scratch"))
  flat = init_lib.flatten(merged)
  query = "params/layer_0/attention/query/"
  np.testing.assert_array_equal(flat[query + "kernel"], pretrained[query + "kernel"])
  np.testing.assert_array_equal(flat[query + "lora_b"], 0.0)  # Fresh: B starts at zero.
  assert flat[query + "lora_a"].shape == (16, 4)


def test_delta_compares_in_the_same_forward_mode_so_it_starts_at_zero():
  """At the pretrained weights the penalty is exactly zero, with BatchNorm in train mode
  (batch statistics) and dropout: the anchor sees the same statistics and masks."""
  model = build_model("vit", 2, patch_size=4, hidden=16, depth=1, num_heads=2, mlp_dim=32,
                      dropout=0.3)
  losses = []
  for strength in (0.0, 100.0):
    _, state = _train(adapt_lib.make_spec(methods=("delta",), fresh="^head/"), "", 1, model=model,
                      hparam_values={"delta": strength}, keep_losses=losses)
  assert losses[0] == losses[1]
  bn = build_model("cnn", 2, width=4, depth=1, hidden=8, batch_norm=True)
  losses = []
  for strength in (0.0, 100.0):
    _train(adapt_lib.make_spec(methods=("delta",), fresh="^head/"), "", 1, model=bn,
           hparam_values={"delta": strength}, keep_losses=losses)
  assert losses[0] == losses[1]
