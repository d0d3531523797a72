"""The CPU depthwise convolution equals XLA's grouped convolution, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowres_jax.models.depthwise import DepthwiseConv, depthwise_shift_add, same_padding


@pytest.mark.parametrize("size, kernel, stride", [(9, 3, 1), (9, 3, 2), (8, 5, 2), (7, 5, 1),
                                                  (1, 3, 2)])
def test_shift_add_equals_grouped_conv_with_gradients(size, kernel, stride):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, size, size + 1, 6)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, 1, 6)), jnp.float32)

  def xla(x, w):
    return jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=6)

  np.testing.assert_allclose(depthwise_shift_add(x, w, stride), xla(x, w), rtol=1e-5, atol=1e-5)
  loss = lambda f: (lambda x, w: jnp.sum(jnp.sin(f(x, w))))
  ours = jax.grad(loss(lambda x, w: depthwise_shift_add(x, w, stride)), argnums=(0, 1))(x, w)
  theirs = jax.grad(loss(xla), argnums=(0, 1))(x, w)
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_same_padding_puts_the_larger_half_after():
  assert same_padding(224, 3, 2) == (0, 1)
  assert same_padding(224, 5, 1) == (2, 2)
  assert same_padding(7, 5, 2) == (2, 2)


def test_module_implementations_agree_and_share_the_parameter_layout():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 6, 6, 4)), jnp.float32)
  variables = DepthwiseConv(3, 2, impl="shift").init(jax.random.PRNGKey(0), x)
  assert variables["params"]["kernel"].shape == (3, 3, 1, 4)
  np.testing.assert_allclose(DepthwiseConv(3, 2, impl="shift").apply(variables, x),
                             DepthwiseConv(3, 2, impl="xla").apply(variables, x),
                             rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="unknown"):
    DepthwiseConv(3, impl="fast").init(jax.random.PRNGKey(0), x)
