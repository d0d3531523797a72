"""Magnitude pruning (compress/prune.py): masks against numpy, schedules by hand, runs."""

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from lowres_jax import checkpoint
from lowres_jax.compress import prune
from lowres_jax.config import ConfigError
from lowres_jax.train import loop

RNG = np.random.default_rng(0)
PARAMS = {"conv": {"kernel": jnp.asarray(RNG.normal(size=(3, 3, 8, 4)), jnp.float32),
                   "bias": jnp.ones(4)},
          "dense": {"kernel": jnp.asarray(RNG.normal(size=(16, 6)) * 3, jnp.float32)},
          "head": {"kernel": jnp.asarray(RNG.normal(size=(6, 2)), jnp.float32)}}


def test_two_of_four_masks_keep_exactly_the_two_largest_of_each_group():
  spec = prune.PruneSpec(method="magnitude", pattern="2:4")
  masks = prune.update_masks(spec, PARAMS, jnp.float32(0.0))
  for name in ("conv", "dense"):
    kernel, keep = np.asarray(PARAMS[name]["kernel"]), np.asarray(masks[name]["kernel"])
    # Groups of four consecutive inputs (the second-last axis) for every other index.
    groups = np.moveaxis(keep, -2, -1).reshape(-1, 4)
    values = np.abs(np.moveaxis(kernel, -2, -1)).reshape(-1, 4)
    assert (groups.sum(-1) == 2).all()
    kept_min = np.where(groups, values, np.inf).min(-1)
    dropped_max = np.where(groups, -np.inf, values).max(-1)
    assert (kept_min >= dropped_max).all()
  assert np.asarray(masks["head"]["kernel"]).all() and np.asarray(masks["conv"]["bias"]).all()


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_unstructured_masks_prune_exactly_the_smallest_magnitudes(scope):
  spec = prune.PruneSpec(method="magnitude", scope=scope)
  masks = prune.update_masks(spec, PARAMS, jnp.float32(0.3))
  names = ("conv", "dense")
  if scope == "global":
    values = np.concatenate([np.abs(np.asarray(PARAMS[n]["kernel"])).ravel() for n in names])
    keep = np.concatenate([np.asarray(masks[n]["kernel"]).ravel() for n in names])
    assert (~keep).sum() == int(0.3 * values.size)
    assert values[~keep].max() <= values[keep].min()
    # The global threshold prunes the dense kernel (3x larger weights) less than the conv.
    assert np.asarray(masks["dense"]["kernel"]).mean() > np.asarray(masks["conv"]["kernel"]).mean()
  else:
    for n in names:
      values, keep = np.abs(np.asarray(PARAMS[n]["kernel"])), np.asarray(masks[n]["kernel"])
      assert (~keep).sum() == int(0.3 * values.size)
      assert values[~keep].max() <= values[keep].min()


def test_gradual_schedule_is_the_cubic_polynomial():
  spec = prune.PruneSpec(method="magnitude", schedule="gradual", sparsity=0.8, begin=0.1,
                         end=0.6, every=10)
  assert prune.target_sparsity(spec, 0, 100) == 0.0
  assert prune.target_sparsity(spec, 35, 100) == pytest.approx(0.8 * (1 - 0.5 ** 3))
  assert prune.target_sparsity(spec, 60, 100) == 0.8
  assert prune.mask_update_steps(spec, 100) == [10, 20, 30, 40, 50, 60]
  one_shot = prune.PruneSpec(method="magnitude", sparsity=0.8)
  assert prune.mask_update_steps(one_shot, 100) == [0]
  assert prune.target_sparsity(one_shot, 0, 100) == 0.8


def test_a_one_shot_pruned_run_trains_with_its_zeros_kept(data_dir, tmp_path):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.prune.method, config.prune.scope, config.prune.sparsity = "magnitude", "layer", 0.75
  summary = loop.run(config, str(tmp_path / "run"), show_progress=False)
  params = checkpoint.load_variables(str(tmp_path / "run"))["params"]
  for name in ("conv0_a", "conv0_b", "pre_logits"):
    kernel = np.asarray(params[name]["kernel"])
    assert (kernel == 0).sum() == int(0.75 * kernel.size), name
    assert summary["prune/layers"][f"{name}/kernel"] == pytest.approx(
        int(0.75 * kernel.size) / kernel.size)
  assert (np.asarray(params["head"]["kernel"]) != 0).all()
  assert summary["model/nonzero_params"] < summary["model/params"]


def test_prune_config_errors(data_dir, tmp_path):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.prune.sparsity = 0.9  # method '' (off)
  with pytest.raises(ConfigError, match="method is ''"):
    loop.run(config, str(tmp_path / "a"), show_progress=False)
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.prune.method, config.prune.pattern = "magnitude", "2:4"  # conv0_a has 1 input channel.
  with pytest.raises(ConfigError, match="conv0_a"):
    loop.run(config, str(tmp_path / "b"), show_progress=False)
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.prune.method, config.prune.pattern = "magnitude", "4:2"
  with pytest.raises(ConfigError, match="N:M"):
    loop.run(config, str(tmp_path / "c"), show_progress=False)
