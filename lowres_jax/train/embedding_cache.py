"""Frozen-backbone features, computed once per (backbone, example) and reused across runs.

Every model here ends in a Dense named ``head`` on ``pre_logits`` (models/__init__.py), so a
run whose backbone is unchanged from another's (zero-shot, nearest class mean, a fitted linear
head, a probe with the backbone frozen in inference mode) has logits ``features @ kernel +
bias`` with the same features. A sweep of such runs embeds each example once instead of once
per run: the test set of a 60-run frozen text grid goes through the encoder one time.

A backbone is identified by a fingerprint of its bytes (every variable but ``params/head``),
so reuse never rests on a guess about which runs "should" share weights: two runs share
features exactly when their backbones are bit-identical.
"""

from __future__ import annotations

import collections
import hashlib
from typing import Callable, Hashable

import jax
import numpy as np

HEAD = "head"

# (dataset, split, data_dir, tokenizer, max_length): which inputs an example id stands for.
SourceKey = Hashable


def _backbone_leaves(variables: dict) -> list[tuple[str, np.ndarray]]:
  leaves = jax.tree_util.tree_flatten_with_path(variables)[0]
  named = [(jax.tree_util.keystr(path), leaf) for path, leaf in leaves]
  return sorted((name, leaf) for name, leaf in named
                if not name.startswith(f"['params']['{HEAD}']"))


def shared_fingerprint(stacked_variables: dict) -> str | None:
  """The fingerprint of the backbone all stacked runs share, or None when any two differ."""
  leaves = [(name, np.asarray(leaf)) for name, leaf in _backbone_leaves(stacked_variables)]
  if any(not (leaf == leaf[:1]).all() for _, leaf in leaves):  # Stops at the first that differs.
    return None
  digest = hashlib.blake2b(digest_size=16)
  for name, leaf in leaves:
    digest.update(f"{name}:{leaf.dtype}:{leaf.shape[1:]}".encode())
    digest.update(np.ascontiguousarray(leaf[0]).tobytes())
  return digest.hexdigest()


def head_logits(features: np.ndarray, stacked_params: dict) -> np.ndarray:
  """(N, D) features through each stacked run's head: (S, N, classes), in float32."""
  head = stacked_params[HEAD]
  kernel = np.asarray(head["kernel"], np.float32)
  bias = np.asarray(head["bias"], np.float32)
  return np.einsum("nd,sdc->snc", features.astype(np.float32), kernel) + bias[:, None, :]


class FeatureCache:
  """``pre_logits`` rows by (backbone fingerprint, source, example id), for a few backbones.

  Bounded to ``max_backbones`` (least recently used dropped): a sweep moves from one frozen
  backbone to the next, it does not come back.
  """

  def __init__(self, max_backbones: int = 2):
    self._max = max_backbones
    self._rows: collections.OrderedDict[str, dict[tuple, np.ndarray]] = (
        collections.OrderedDict())
    self.computed = 0  # Examples embedded (tests read it to check reuse).

  def clear(self) -> None:
    self._rows.clear()
    self.computed = 0

  def features(self, fingerprint: str, source: SourceKey, ids: np.ndarray,
               compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Rows for ``ids``; ``compute(positions)`` embeds the examples at those positions of
    ``ids`` (only the ones not cached yet)."""
    rows = self._rows.setdefault(fingerprint, {})
    self._rows.move_to_end(fingerprint)
    while len(self._rows) > self._max:
      self._rows.popitem(last=False)
    keys = [(source, int(i)) for i in ids]
    missing = np.array([p for p, key in enumerate(keys) if key not in rows], np.int64)
    if len(missing):
      for position, row in zip(missing, compute(missing)):
        rows[keys[position]] = row
      self.computed += len(missing)
    return np.stack([rows[key] for key in keys]) if keys else np.zeros((0, 0), np.float32)


FEATURES = FeatureCache()  # One per process, like the compile and pretrained-weight caches.
