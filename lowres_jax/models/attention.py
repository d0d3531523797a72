"""Multi-head self-attention shared by the transformer encoders (ViT, BERT)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class SelfAttention(nn.Module):
  """Self-attention through the fused ``jax.nn.dot_product_attention``.

  Parameters ``query``, ``key``, ``value`` and ``out`` are Dense layers with the heads merged
  in their features, the layout Hugging Face and big_vision checkpoints convert to. ``mask``
  (broadcastable to (B, heads, L, L), True = attend) hides padding keys. No dropout on the
  attention probabilities: the fused kernel has none.
  """
  num_heads: int
  kernel_init: Any = nn.initializers.xavier_uniform()
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    batch, length, hidden = x.shape
    head_dim = hidden // self.num_heads
    dense = lambda name: nn.Dense(hidden, dtype=self.dtype, kernel_init=self.kernel_init,
                                  name=name)
    q, k, v = (dense(name)(x).reshape(batch, length, self.num_heads, head_dim)
               for name in ("query", "key", "value"))
    # implementation=None lets JAX choose (XLA on CPU, cuDNN flash attention where it applies).
    y = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=None)
    return dense("out")(y.reshape(batch, length, hidden))
