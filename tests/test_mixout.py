"""Mixout (train/adapt/mixout.py) against a hand computation, and inside the train step."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from lowres_jax.train import adapt as adapt_lib
from lowres_jax.train.adapt import mixout
from test_methods import ANCHOR, TREE, _train

MIXED = {"body": {"kernel": True, "bias": False}, "head": {"kernel": False, "bias": False}}


def test_each_mixed_weight_is_its_pretrained_value_or_the_rescaled_kept_one():
  p = 0.4
  out = mixout.mixout(TREE, ANCHOR, MIXED, jnp.float32(p), jax.random.PRNGKey(3))
  w, u = np.asarray(TREE["body"]["kernel"]), np.asarray(ANCHOR["body"]["kernel"])
  kept_value = (w - p * u) / (1 - p)  # M = 1: (w - p u) / (1 - p); M = 0: (u - p u) / (1 - p) = u.
  got = np.asarray(out["body"]["kernel"])
  kept = np.isclose(got, kept_value, rtol=1e-6)
  swapped = np.isclose(got, u, rtol=1e-6)
  assert np.all(kept | swapped)
  # Untouched: biases and the new head.
  for path in (("body", "bias"), ("head", "kernel"), ("head", "bias")):
    np.testing.assert_array_equal(traverse_util.flatten_dict(out)[path],
                                  traverse_util.flatten_dict(TREE)[path])
  # The gradient is M / (1 - p) on a kept weight and 0 on a swapped one (where w = u both hold,
  # the element is ambiguous and skipped).
  upstream = jnp.array([[1.0, 2.0], [3.0, 4.0]])
  grads = jax.grad(lambda params: jnp.sum(mixout.mixout(
      params, ANCHOR, MIXED, jnp.float32(p), jax.random.PRNGKey(3))["body"]["kernel"]
      * upstream))(TREE)["body"]["kernel"]
  clear = kept != swapped
  np.testing.assert_allclose(np.asarray(grads)[clear],
                             (np.asarray(upstream) * kept / (1 - p))[clear], rtol=1e-6)


def test_mixout_swaps_a_fraction_p_and_is_unbiased():
  p = 0.3
  w = jax.random.normal(jax.random.PRNGKey(0), (200, 200))
  u = jax.random.normal(jax.random.PRNGKey(1), (200, 200))
  params, anchor, mixed = {"d": {"kernel": w}}, {"d": {"kernel": u}}, {"d": {"kernel": True}}
  once = mixout.mixout(params, anchor, mixed, jnp.float32(p), jax.random.PRNGKey(5))
  swapped = np.mean(np.isclose(np.asarray(once["d"]["kernel"]), np.asarray(u), rtol=1e-6))
  assert abs(swapped - p) < 0.01  # 40,000 draws: the standard error is 0.0023.
  draws = jax.vmap(lambda key: mixout.mixout(params, anchor, mixed, jnp.float32(p), key)
                   ["d"]["kernel"])(jax.random.split(jax.random.PRNGKey(6), 400))
  # Per element the mean of 400 draws has standard error ~0.05 * |w - u|; averaged over all.
  assert float(jnp.mean(jnp.abs(jnp.mean(draws, 0) - w))) < 0.05
  np.testing.assert_allclose(float(jnp.mean(draws)), float(jnp.mean(w)), atol=5e-3)


def test_mixout_at_p_zero_trains_exactly_like_fine_tuning_and_at_p_half_differently():
  plain = adapt_lib.make_spec(fresh="^head/")
  mixed = adapt_lib.make_spec(methods=("mixout",), fresh="^head/")
  _, tuned = _train(plain, "", 4)
  _, at_zero = _train(mixed, "", 4, hparam_values={"mixout": 0.0})
  _, at_half = _train(mixed, "", 4, hparam_values={"mixout": 0.5})
  for a, b in zip(jax.tree.leaves(tuned.params), jax.tree.leaves(at_zero.params)):
    np.testing.assert_array_equal(a, b)
  assert not np.allclose(tuned.params["conv0_a"]["kernel"], at_half.params["conv0_a"]["kernel"])
  # Which leaves mix: loaded kernels only, not the new head or any bias.
  chosen = mixout._mixed_leaves(mixed, tuned.params)
  assert chosen["conv0_a"]["kernel"] and not chosen["head"]["kernel"]
  assert not any(leaf for path, leaf in traverse_util.flatten_dict(chosen).items()
                 if path[-1] == "bias")
