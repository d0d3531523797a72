"""A small Vision Transformer (Dosovitskiy et al., 2021) with a class token."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class EncoderBlock(nn.Module):
  num_heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, x):
    y = nn.LayerNorm(name="norm1")(x)
    y = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, name="attention")(y, y)
    x = x + y
    y = nn.LayerNorm(name="norm2")(x)
    y = nn.Dense(self.mlp_dim, name="mlp_in")(y)
    y = nn.Dense(x.shape[-1], name="mlp_out")(nn.gelu(y))
    return x + y


class ViT(nn.Module):
  num_classes: int
  patch_size: int = 4
  hidden: int = 64
  depth: int = 4
  num_heads: int = 4
  mlp_dim: int = 128

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False):
    del train
    x = nn.Conv(self.hidden, (self.patch_size,) * 2, (self.patch_size,) * 2, padding="VALID",
                name="embedding")(images)
    batch, height, width, channels = x.shape
    x = x.reshape(batch, height * width, channels)
    cls = self.param("cls", nn.initializers.zeros, (1, 1, channels))
    x = jnp.concatenate([jnp.broadcast_to(cls, (batch, 1, channels)), x], axis=1)
    posemb = self.param("pos_embedding", nn.initializers.normal(0.02), (1, x.shape[1], channels))
    x = x + posemb
    for layer in range(self.depth):
      x = EncoderBlock(self.num_heads, self.mlp_dim, name=f"block{layer}")(x)
    pre_logits = nn.LayerNorm(name="norm_final")(x)[:, 0]
    logits = nn.Dense(self.num_classes, name="head", kernel_init=nn.initializers.zeros)(pre_logits)
    return logits, {"pre_logits": pre_logits}
