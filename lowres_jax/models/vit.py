"""Vision Transformer (Dosovitskiy et al., 2021) that public ViT checkpoints load into.

Pre-LN encoder blocks, as in Hugging Face ``ViTModel`` and the JAX releases (big_vision,
google-research/vision_transformer); ``vit_convert`` maps both checkpoint formats onto the
parameter tree below:

  embedding/{kernel,bias}        patch projection, a ``patch x patch`` stride-``patch`` conv
  cls                            (1, 1, hidden) class token, "cls" pooling only
  pos_embedding                  (1, grid*grid, hidden), patch tokens only
  block_{i}/norm1, norm2          LayerNorm {scale,bias}
  block_{i}/attention/{query,key,value,out}/{kernel,bias}   Dense, heads merged in the features
  block_{i}/mlp_in, mlp_out       Dense
  norm_final                     LayerNorm
  head                           Dense(num_classes), zero-initialised

Position embeddings are added to the patch tokens before the class token is prepended (the
big_vision order): the class token's own position embedding, which HF and the first JAX
release keep in the table, is a constant that the converter folds into ``cls``. That keeps
``pos_embedding`` a pure grid, so it can be resampled to another resolution on its own.
Attention projections are plain ``Dense(hidden)`` kernels split into heads in the forward
pass, so converting a checkpoint needs no head count.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lowres_jax.models.attention import SelfAttention

from lowres_jax.models.inputs import prepare_images
from lowres_jax.models.stochastic_depth import block_rate, drop_branch

# Name: (hidden, depth, num_heads, mlp_dim), from Table 2 of Zhai et al. 2022 (scaling ViTs),
# "So400m" from Alabdulmohsin et al. 2023.
VARIANTS: dict[str, tuple[int, int, int, int]] = {
    "mu": (32, 1, 2, 128),
    "Ti": (192, 12, 3, 768),
    "S": (384, 12, 6, 1536),
    "M": (512, 12, 8, 2048),
    "B": (768, 12, 12, 3072),
    "L": (1024, 24, 16, 4096),
    "So400m": (1152, 27, 16, 4304),
    "H": (1280, 32, 16, 5120),
    "g": (1408, 40, 16, 6144),
    "G": (1664, 48, 16, 8192),
}
# The small model used when no variant is named (fast tests and toy runs).
SMALL = dict(patch_size=4, hidden=64, depth=4, num_heads=4, mlp_dim=128)


def decode_variant(variant: str) -> dict[str, int]:
  """``"B/16"`` -> hidden, depth, num_heads, mlp_dim, patch_size; ``"B"`` means patch 16."""
  if not variant:
    return dict(SMALL)
  name, _, patch = variant.partition("/")
  if name not in VARIANTS:
    raise ValueError(f"unknown ViT variant {variant!r}; known sizes: {sorted(VARIANTS)}")
  hidden, depth, num_heads, mlp_dim = VARIANTS[name]
  return dict(patch_size=int(patch or 16), hidden=hidden, depth=depth, num_heads=num_heads,
              mlp_dim=mlp_dim)


class EncoderBlock(nn.Module):
  """Pre-LN block: ``x + attn(LN(x))`` then ``x + mlp(LN(x))``, dropout on each branch."""
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0
  layer_norm_eps: float = 1e-6
  gelu_approximate: bool = False
  dtype: jnp.dtype = jnp.float32
  drop_path: float = 0.0  # Stochastic depth of both residual branches.

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    norm = lambda name: nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name=name)
    drop = lambda y: nn.Dropout(self.dropout)(y, deterministic=not train)
    dense = lambda features, name: nn.Dense(features, dtype=self.dtype, name=name,
                                            kernel_init=nn.initializers.xavier_uniform())
    branch = lambda y: drop_branch(self, drop(y), self.drop_path, train)
    x = x + branch(SelfAttention(self.num_heads, dtype=self.dtype, name="attention")(
        norm("norm1")(x)))
    y = dense(self.mlp_dim, "mlp_in")(norm("norm2")(x))
    y = drop(nn.gelu(y, approximate=self.gelu_approximate))
    return x + branch(dense(x.shape[-1], "mlp_out")(y))


class ViT(nn.Module):
  """ViT classifier taking ``batch["image"]`` (NHWC pixels on the 0-255 scale).

  ``variant`` ("Ti/16", "B/32", ...) sets the architecture; ``patch_size``, ``hidden``,
  ``depth``, ``num_heads`` and ``mlp_dim`` override it when non-zero. With no variant the
  defaults are a small model (patch 4, hidden 64, depth 4, 4 heads, mlp 128).

  ``pool``: "cls" reads a class token, "gap" averages the tokens (and has no class token, as
  in big_vision). ``dropout``: on the embeddings, the MLP's hidden layer and both residual
  branches, in training only (none on attention weights: the fused kernel has no dropout).
  ``layer_norm_eps``: 1e-6 for JAX checkpoints, 1e-12 for Hugging Face ones.
  ``gelu_approximate``: False is the exact erf GELU (HF's "gelu"); the JAX releases trained
  with flax's default tanh approximation, so set True to reproduce them bit for bit (the two
  differ by < 1e-3 per activation). ``image_size``: resize inputs to it (0 keeps the size;
  the position-embedding grid follows the input size at init). ``pixel_mean``/``pixel_std``:
  pixel-unit normalisation (the defaults map to [-1, 1], the JAX releases' convention; HF
  checkpoints use their image processor's ``image_mean``/``image_std`` times 255). ``dtype``
  is the compute dtype; parameters stay float32.

  Returns ``(logits, features)``; features: "embedding" (tokens entering the encoder),
  "block_{i}" (each block's output tokens, class token first when present), "encoded" (all
  tokens after the final LayerNorm) and "pre_logits" (the pooled, normalised features).
  """
  num_classes: int
  variant: str = ""
  patch_size: int = 0
  hidden: int = 0
  depth: int = 0
  num_heads: int = 0
  mlp_dim: int = 0
  pool: str = "cls"
  dropout: float = 0.0
  drop_path: float = 0.0  # Stochastic depth: 0 in the first block rising to this in the last.
  layer_norm_eps: float = 1e-6
  gelu_approximate: bool = False
  image_size: int = 0
  channels: int = 3
  pixel_mean: float | Sequence[float] = 127.5
  pixel_std: float | Sequence[float] = 127.5
  dtype: jnp.dtype = jnp.float32

  def arch(self) -> dict[str, int]:
    """The architecture: the variant's (or the small default's) with explicit overrides."""
    arch = decode_variant(self.variant)
    for name in arch:
      if getattr(self, name):
        arch[name] = getattr(self, name)
    if arch["hidden"] % arch["num_heads"]:
      raise ValueError(f"ViT hidden {arch['hidden']} is not a multiple of "
                       f"num_heads {arch['num_heads']}")
    return arch

  @nn.compact
  def __call__(self, batch: Mapping[str, jax.Array], train: bool = False):
    if self.pool not in ("cls", "gap"):
      raise ValueError(f"ViT pool must be 'cls' or 'gap', not {self.pool!r}")
    arch = self.arch()
    images = prepare_images(batch["image"], size=self.image_size, channels=self.channels,
                            mean=self.pixel_mean, std=self.pixel_std, dtype=self.dtype)
    patch = (arch["patch_size"],) * 2
    x = nn.Conv(arch["hidden"], patch, patch, padding="VALID", dtype=self.dtype,
                name="embedding")(images)
    n, h, w, c = x.shape
    x = x.reshape(n, h * w, c)
    posemb = self.param("pos_embedding", nn.initializers.normal(0.02), (1, h * w, c))
    x = x + posemb.astype(self.dtype)
    if self.pool == "cls":
      cls = self.param("cls", nn.initializers.zeros, (1, 1, c))
      x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (n, 1, c)), x], axis=1)
    features = {"embedding": x}
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    for i in range(arch["depth"]):
      x = EncoderBlock(arch["num_heads"], arch["mlp_dim"], self.dropout, self.layer_norm_eps,
                       self.gelu_approximate, self.dtype,
                       block_rate(self.drop_path, i, arch["depth"]), name=f"block_{i}")(x, train)
      features[f"block_{i}"] = x
    x = features["encoded"] = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype,
                                           name="norm_final")(x)
    pre_logits = features["pre_logits"] = x[:, 0] if self.pool == "cls" else x.mean(axis=1)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head",
                      kernel_init=nn.initializers.zeros)(pre_logits)
    return logits, features


def layer_key(path: str) -> tuple[int, ...] | None:
  """Where a parameter sits from the bottom, for layer-wise learning-rate decay (sortable;
  None: above the last block: final norm and head). Patch embedding, position embedding and
  class token share the first layer, then ``block_i``."""
  match = re.match(r"block_(\d+)/", path)
  if match:
    return (1 + int(match.group(1)),)
  return (0,) if re.match(r"(embedding/|pos_embedding$|cls$)", path) else None
