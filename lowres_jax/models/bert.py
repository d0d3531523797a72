"""BERT-style sentence encoder (Devlin et al., 2019) that Hugging Face ``BertModel`` loads into.

Post-LN encoder blocks in Hugging Face's layout, so ``bert_convert`` maps ``BertModel`` and
``BertForSequenceClassification`` checkpoints (all-MiniLM-L6-v2 and other sentence-transformers
BERTs among them) onto the parameter tree below:

  embeddings/word, position, type   Embed tables (vocab, max_positions, type_vocab) x hidden
  embeddings/norm                   LayerNorm after summing the three
  layer_{i}/attention/{query,key,value,out}/{kernel,bias}   Dense, heads merged in features
  layer_{i}/attention_norm          LayerNorm of ``x + attention(x)``
  layer_{i}/mlp_in, mlp_out         Dense (hidden -> mlp_dim -> hidden), exact-erf GELU between
  layer_{i}/mlp_norm                LayerNorm of ``x + mlp(x)``
  head                              Dense(num_classes) on the pooled embedding, zero-initialised

Pooling is sentence-transformers' (not BERT's tanh "pooler", which has no counterpart here):
"mean" averages the last layer's tokens over ``attention_mask``, "cls" takes the first token;
``normalize`` then divides by the L2 norm, as its ``Normalize`` module does.
"""

from __future__ import annotations

import re
from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from lowres_jax.models.attention import SelfAttention

# BERT's initialiser for every Dense kernel and embedding table (biases zero, LayerNorms 1/0).
_INIT = nn.initializers.normal(stddev=0.02)


def key_mask(attention_mask: jax.Array) -> jax.Array:
  """``(B, L)`` 0/1 -> boolean ``(B, 1, 1, L)`` keys mask for ``jax.nn.dot_product_attention``.

  A row with no valid token (all zeros) attends to every position instead: its tokens then
  stay finite whatever the attention implementation does with a fully masked row, and mean
  pooling still gives it a zero embedding.
  """
  valid = attention_mask > 0
  valid = valid | ~jnp.any(valid, axis=-1, keepdims=True)
  return valid[:, None, None, :]


class Embeddings(nn.Module):
  """Sum of word, position (``0..L-1``) and token-type embeddings, then a LayerNorm."""
  vocab_size: int
  hidden: int
  max_positions: int
  type_vocab_size: int
  layer_norm_eps: float = 1e-12
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array) -> jax.Array:
    embed = lambda num, name: nn.Embed(num, self.hidden, embedding_init=_INIT,
                                       dtype=self.dtype, name=name)
    positions = jnp.arange(input_ids.shape[1])[None]
    x = (embed(self.vocab_size, "word")(input_ids)
         + embed(self.max_positions, "position")(positions)
         + embed(self.type_vocab_size, "type")(token_type_ids))
    return nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name="norm")(x)


class EncoderLayer(nn.Module):
  """Post-LN block: ``LN(x + drop(attn(x)))`` then ``LN(x + drop(mlp(x)))``."""
  num_heads: int
  mlp_dim: int
  dropout: float = 0.1
  layer_norm_eps: float = 1e-12
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, train: bool) -> jax.Array:
    norm = lambda name: nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name=name)
    drop = lambda y: nn.Dropout(self.dropout)(y, deterministic=not train)
    dense = lambda features, name: nn.Dense(features, dtype=self.dtype, kernel_init=_INIT,
                                            name=name)
    y = SelfAttention(self.num_heads, _INIT, self.dtype, name="attention")(x, mask)
    x = norm("attention_norm")(x + drop(y))
    y = nn.gelu(dense(self.mlp_dim, "mlp_in")(x), approximate=False)
    return norm("mlp_norm")(x + drop(dense(x.shape[-1], "mlp_out")(y)))


def mean_pool(tokens: jax.Array, attention_mask: jax.Array) -> jax.Array:
  """Average of the tokens where ``attention_mask`` is 1; zeros for a row with none."""
  weights = (attention_mask > 0).astype(jnp.float32)[..., None]
  total = jnp.sum(tokens.astype(jnp.float32) * weights, axis=1)
  return total / jnp.maximum(jnp.sum(weights, axis=1), 1e-9)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """``x / max(||x||, eps)`` along the last axis (torch's ``F.normalize``); zeros stay zeros.

  Written as ``rsqrt(max(||x||^2, eps^2))`` so a zero vector also has a finite gradient.
  """
  squared = jnp.sum(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(squared, eps * eps))


class BertEncoder(nn.Module):
  """BERT encoder with sentence pooling and a classifier, taking a tokenised text batch.

  Reads ``batch["input_ids"]`` (int, (B, L)), ``batch["attention_mask"]`` ((B, L), 1 for real
  tokens) and optionally ``batch["token_type_ids"]`` (zeros if absent); L must not exceed
  ``max_positions``. Positions are ``0..L-1`` whatever the padding (padding on the right, as
  BERT tokenisers do, is what checkpoints expect).

  The defaults are all-MiniLM-L6-v2's architecture. ``dropout``: hidden dropout (after the
  embedding LayerNorm and on both residual branches), in training only and from the
  ``dropout`` rng; the fused attention kernel has no dropout on the attention probabilities.
  ``pool``: "mean" (over the attention mask) or "cls" (the first token). ``normalize``:
  L2-normalise the pooled embedding. ``dtype`` is the compute dtype; parameters stay float32
  and the pooled embedding is float32.

  Returns ``(logits, features)``; features: "pre_logits" (the pooled, optionally normalised
  embedding the head reads), "hidden_states" (the embedding output then every layer's output,
  ``depth + 1`` arrays of shape (B, L, hidden)) and "tokens" (the last layer's).
  """
  num_classes: int
  vocab_size: int = 30522
  hidden: int = 384
  depth: int = 6
  num_heads: int = 12
  mlp_dim: int = 1536
  max_positions: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  dropout: float = 0.1
  pool: str = "mean"
  normalize: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, batch: Mapping[str, jax.Array], train: bool = False):
    if self.pool not in ("mean", "cls"):
      raise ValueError(f"BertEncoder pool must be 'mean' or 'cls', not {self.pool!r}")
    if self.hidden % self.num_heads:
      raise ValueError(f"BertEncoder hidden {self.hidden} is not a multiple of "
                       f"num_heads {self.num_heads}")
    input_ids = jnp.asarray(batch["input_ids"]).astype(jnp.int32)
    attention_mask = jnp.asarray(batch["attention_mask"])
    if input_ids.ndim != 2 or attention_mask.shape != input_ids.shape:
      raise ValueError(f"BertEncoder takes input_ids and attention_mask of one (batch, length) "
                       f"shape; got {input_ids.shape} and {attention_mask.shape}")
    length = input_ids.shape[1]
    if length > self.max_positions:
      raise ValueError(f"sequences of {length} tokens exceed BertEncoder's max_positions "
                       f"{self.max_positions}; truncate them when tokenising")
    token_type_ids = batch.get("token_type_ids")
    token_type_ids = (jnp.zeros_like(input_ids) if token_type_ids is None
                      else jnp.asarray(token_type_ids).astype(jnp.int32))

    x = Embeddings(self.vocab_size, self.hidden, self.max_positions, self.type_vocab_size,
                   self.layer_norm_eps, self.dtype, name="embeddings")(input_ids, token_type_ids)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    hidden_states = [x]
    mask = key_mask(attention_mask)
    for i in range(self.depth):
      x = EncoderLayer(self.num_heads, self.mlp_dim, self.dropout, self.layer_norm_eps,
                       self.dtype, name=f"layer_{i}")(x, mask, train)
      hidden_states.append(x)

    pooled = (mean_pool(x, attention_mask) if self.pool == "mean"
              else x[:, 0].astype(jnp.float32))
    if self.normalize:
      pooled = l2_normalize(pooled)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=nn.initializers.zeros,
                      name="head")(pooled)
    return logits, {"pre_logits": pooled, "hidden_states": tuple(hidden_states), "tokens": x}


def layer_key(path: str) -> tuple[int, ...] | None:
  """Where a parameter sits from the bottom, for layer-wise learning-rate decay (sortable;
  None: above the last layer, the head). Embeddings, then ``layer_i``."""
  match = re.match(r"layer_(\d+)/", path)
  if match:
    return (1 + int(match.group(1)),)
  return (0,) if path.startswith("embeddings/") else None
