"""EDA-style text augmentation on token ids, inside the jitted train step.

EDA (Wei & Zou, 2019) perturbs sentences by deleting, swapping and inserting words. Here the
words are already WordPiece ids in fixed-length rows ``[CLS] tok ... tok [SEP] pad ...``, so the
ops work on ids: they follow ``augment.py``'s convention ``(key, batch, hparams) -> batch`` and
read their rate from ``hparams`` (a traced float32, so sweeping it does not recompile). Every
decision is per example and per token, drawn from the key.

Only the "content" tokens move: attended positions other than [CLS] (position 0) and the last
attended one ([SEP]). A row is treated as one sentence; in a sentence pair the middle [SEP]
counts as content. Padding is assumed on the right, with id, mask and type 0 (BERT's [PAD]);
rebuilt rows are padded that way. At rate 0 every op returns its input unchanged.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp

Batch = dict[str, jax.Array]
AugmentOp = Callable[[jax.Array, Batch, Mapping[str, jax.Array]], Batch]

PAD_ID = 0  # BERT's [PAD]; also the type id written after the new end of a row.


# --- shared helpers -------------------------------------------------------------------------

def _ids(batch: Batch, op: str) -> jax.Array:
  if "input_ids" not in batch:
    raise ValueError(f"text augmentation {op!r} needs 'input_ids'; this batch has "
                     f"{sorted(batch)}")
  ids = batch["input_ids"]
  if ids.ndim != 2:
    raise ValueError(f"text augmentation {op!r} needs input_ids of shape (B, L), got "
                     f"{ids.shape}")
  return ids


def _rate(hparams: Mapping[str, jax.Array], name: str, op: str) -> jax.Array:
  if name not in hparams:
    raise ValueError(f"text augmentation {op!r} reads hparams[{name!r}]; it is not set "
                     f"(have {sorted(hparams)})")
  return jnp.asarray(hparams[name], jnp.float32)


def _lengths(batch: Batch, ids: jax.Array) -> jax.Array:
  """(B,) attended tokens per row; without a mask, the non-[PAD] ids are the attended ones."""
  mask = batch.get("attention_mask")
  attended = ids != PAD_ID if mask is None else mask != 0
  return attended.sum(axis=1).astype(jnp.int32)


def _content(batch: Batch, op: str) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``ids``, ``lengths`` (B,) and ``content`` (B, L) bool: positions 1 .. length-2.

  Padding is on the right, so the attended region is a prefix and its content is the slice
  between [CLS] and [SEP]; a row ``[CLS][SEP]`` (or shorter) has none.
  """
  ids = _ids(batch, op)
  lengths = _lengths(batch, ids)
  positions = jnp.arange(ids.shape[1])[None, :]
  content = (positions >= 1) & (positions < lengths[:, None] - 1)
  return ids, lengths, content


def _reorder(batch: Batch, order: jax.Array, new_lengths: jax.Array,
             type_order: jax.Array | None = None) -> Batch:
  """Rows rebuilt as ``new[j] = old[order[j]]`` for ``j < new_length``, padding after.

  ``type_order`` picks each position's token type separately (default: the token's own), so
  that a swap can move ids while the segment layout stays put. Every other batch entry
  (labels, ...) passes through.
  """
  new_lengths = new_lengths.astype(jnp.int32)
  valid = jnp.arange(order.shape[1])[None, :] < new_lengths[:, None]

  def gather(array, index):
    return jnp.where(valid, jnp.take_along_axis(array, index, axis=1),
                     jnp.asarray(PAD_ID, array.dtype))

  out = {**batch, "input_ids": gather(batch["input_ids"], order)}
  if "attention_mask" in batch:
    out["attention_mask"] = valid.astype(batch["attention_mask"].dtype)
  if "token_type_ids" in batch:
    out["token_type_ids"] = gather(batch["token_type_ids"],
                                   order if type_order is None else type_order)
  return out


def _exclusive_cumsum(x: jax.Array) -> jax.Array:
  return jnp.cumsum(x, axis=1) - x


# --- the ops --------------------------------------------------------------------------------

def token_delete(key: jax.Array, batch: Batch, hparams) -> Batch:
  """Drops each content token with probability ``hparams["aug_delete"]``; the rest shift left.

  EDA never deletes a whole sentence, so a row that would lose all its content keeps one
  token, chosen at random (the one whose draw was largest, i.e. furthest from being dropped).
  """
  ids, lengths, content = _content(batch, "token_delete")
  rate = _rate(hparams, "aug_delete", "token_delete")
  draws = jax.random.uniform(key, ids.shape)
  # uniform is in [0, 1), so ``draws < 0`` is never true: rate 0 drops nothing.
  drop = content & (draws < rate)
  emptied = content.any(axis=1) & ~(content & ~drop).any(axis=1)
  survivor = jnp.argmax(jnp.where(content, draws, -1.0), axis=1)
  rescued = jax.nn.one_hot(survivor, ids.shape[1], dtype=bool) & emptied[:, None]
  drop = drop & ~rescued

  positions = jnp.arange(ids.shape[1])[None, :]
  attended = positions < lengths[:, None]
  keep = attended & ~drop
  # Kept positions sort first, in their old order; dropped ones and padding follow.
  order = jnp.argsort(jnp.where(keep, positions, ids.shape[1] + positions), axis=1)
  return _reorder(batch, order, keep.sum(axis=1))


def token_swap(key: jax.Array, batch: Batch, hparams) -> Batch:
  """Swaps random pairs of content tokens, each pair with probability ``hparams["aug_swap"]``.

  A random permutation lists each row's content positions; entries 2k and 2k+1 form a pair
  (an odd one out stays). Pairs are disjoint, so all swaps apply at once as one gather.
  """
  ids, lengths, content = _content(batch, "token_swap")
  rate = _rate(hparams, "aug_swap", "token_swap")
  shuffle_key, swap_key = jax.random.split(key)
  width = ids.shape[1]
  # Content first in random order (padding and specials sort last with key 2).
  perm = jnp.argsort(jnp.where(content, jax.random.uniform(shuffle_key, ids.shape), 2.0),
                     axis=1)
  rank = jnp.argsort(perm, axis=1)  # position -> its index in perm
  partner_rank = jnp.bitwise_xor(rank, 1)
  partner = jnp.take_along_axis(perm, jnp.minimum(partner_rank, width - 1), axis=1)
  # Both members of a pair read the same draw (at the pair's even index), so they agree.
  pair_draw = jnp.take_along_axis(jax.random.uniform(swap_key, ids.shape),
                                  jnp.bitwise_and(rank, ~1), axis=1)
  has_partner = partner_rank < content.sum(axis=1, keepdims=True)
  swap = content & has_partner & (pair_draw < rate)
  positions = jnp.broadcast_to(jnp.arange(width)[None, :], ids.shape)
  order = jnp.where(swap, partner, positions)
  # Types stay with positions: a swap moves words, not segment boundaries.
  return _reorder(batch, order, lengths, type_order=positions)


def token_insert(key: jax.Array, batch: Batch, hparams) -> Batch:
  """After each content token, with probability ``hparams["aug_insert"]``, inserts a copy of a
  random content token of the same row.

  EDA inserts a synonym of a random word; with ids only there is no thesaurus, so a word of
  the same sentence is the closest stand-in. Insertions past the room left in L are dropped
  (the latest ones first) so that [SEP] always survives.
  """
  ids, lengths, content = _content(batch, "token_insert")
  rate = _rate(hparams, "aug_insert", "token_insert")
  insert_key, source_key = jax.random.split(key)
  width = ids.shape[1]
  insert = content & (jax.random.uniform(insert_key, ids.shape) < rate)
  room = (width - lengths)[:, None]
  insert = insert & (_exclusive_cumsum(insert.astype(jnp.int32)) < room)
  added = insert.astype(jnp.int32)

  # Content is the contiguous slice 1 .. length-2, so its r-th token is at position 1 + r.
  num_content = jnp.maximum(lengths - 2, 1)[:, None]
  source = 1 + jnp.minimum(
      jnp.floor(jax.random.uniform(source_key, ids.shape) * num_content).astype(jnp.int32),
      num_content - 1)

  # Old position i fills new slots [start_i, end_i): itself, then its insertion if any.
  positions = jnp.arange(width)
  end = positions[None, :] + 1 + jnp.cumsum(added, axis=1)
  owner = jax.vmap(lambda e: jnp.searchsorted(e, positions, side="right"))(end)
  owner = jnp.minimum(owner, width - 1)  # slots past the new length; padded by _reorder
  start = jnp.take_along_axis(end - 1 - added, owner, axis=1)
  is_inserted = positions[None, :] > start
  order = jnp.where(is_inserted, jnp.take_along_axis(source, owner, axis=1), owner)
  # An inserted token takes the type of the token it follows, keeping segments contiguous.
  return _reorder(batch, order, lengths + added.sum(axis=1), type_order=owner)


def token_mask(key: jax.Array, batch: Batch, hparams, *, mask_token: int) -> Batch:
  """Replaces each content token by ``mask_token`` with probability ``hparams["aug_mask"]``."""
  ids, _, content = _content(batch, "token_mask")
  rate = _rate(hparams, "aug_mask", "token_mask")
  masked = content & (jax.random.uniform(key, ids.shape) < rate)
  return {**batch, "input_ids": jnp.where(masked, jnp.asarray(mask_token, ids.dtype), ids)}


def _build_mask(settings) -> AugmentOp:
  # The id is static (it shapes no array but is baked into the program), read once here.
  mask_token = getattr(settings, "mask_token", None)
  if mask_token is None or int(mask_token) < 0:
    raise ValueError("token_mask needs the tokenizer's [MASK] id (settings.mask_token >= 0); "
                     f"got {mask_token!r}")
  mask_token = int(mask_token)
  return lambda key, batch, hp: token_mask(key, batch, hp, mask_token=mask_token)


# name -> builder from the static settings to the op (as ``augment.AUGMENTATIONS``).
TEXT_AUGMENTATIONS: dict[str, Callable[[object], AugmentOp]] = {
    "token_delete": lambda s: token_delete,
    "token_swap": lambda s: token_swap,
    "token_insert": lambda s: token_insert,
    "token_mask": _build_mask,
}
