"""k-shot split manifests: which examples a run trains and validates on, reproducibly.

A manifest is drawn from the dataset's train split restricted to the task's classes, from the
run's seed alone, and written to ``split.json`` with the example ids and their sha256, so a table
can say exactly which examples each seed saw and two machines can check they agree.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Sequence

import numpy as np

from lowres_jax.user_error import UserError
from lowres_jax.data.sources import Examples

ALL_SHOTS = -1  # ``shots = -1`` trains on every example not held out for validation.


class ShotsError(UserError, ValueError):
  """More examples were asked of a class than the dataset has."""


class UnknownClassError(ShotsError):
  """The task names a class the dataset does not have (no examples of it at all)."""


def _describe_labels(labels: np.ndarray) -> str:
  """'0-9' for a contiguous range, else the list."""
  labels = [int(l) for l in labels]
  if labels and labels == list(range(labels[0], labels[-1] + 1)) and len(labels) > 2:
    return f"{labels[0]}-{labels[-1]}"
  return str(labels)


@dataclasses.dataclass(frozen=True)
class SplitManifest:
  dataset: str
  classes: tuple[int, ...]
  shots: int
  val_per_class: int
  seed: int
  train_ids: tuple[int, ...]
  val_ids: tuple[int, ...]
  # Unlabelled examples of the training split (distillation's pool): their inputs are used,
  # never their labels. Empty unless the run asks for a pool.
  pool_ids: tuple[int, ...] = ()
  # Long-tail sets: head-to-tail ratio of the class profile (1.0: every class ``shots``).
  imbalance: float = 1.0
  train_per_class: tuple[int, ...] = ()  # Long-tail sets: the profile drawn, class by class.
  # Label-budget runs (train/selection.py): the strategy's settings and candidates' sha256.
  selection: dict | None = None
  # A user's files (data/file_builder.py): where they were read from and their sha256.
  source: dict | None = None

  def to_json(self) -> dict:
    record = dataclasses.asdict(self)
    for optional in ("selection", "source"):
      if record[optional] is None:
        del record[optional]
    if self.imbalance == 1.0:  # Balanced manifests keep the form they had before long tails.
      del record["imbalance"], record["train_per_class"]
    else:
      record["train_per_class"] = list(self.train_per_class)
    record["train_ids"], record["val_ids"] = list(self.train_ids), list(self.val_ids)
    if self.pool_ids:
      record["pool_ids"], record["pool_sha256"] = list(self.pool_ids), ids_sha256(self.pool_ids)
      record["num_pool"] = len(self.pool_ids)
    else:
      del record["pool_ids"]
    record["classes"] = list(self.classes)
    record["train_sha256"] = ids_sha256(self.train_ids)
    record["val_sha256"] = ids_sha256(self.val_ids)
    record["num_train"], record["num_val"] = len(self.train_ids), len(self.val_ids)
    return record


def ids_sha256(ids: Sequence[int]) -> str:
  """sha256 of the comma-joined decimal ids, in manifest order."""
  return hashlib.sha256(",".join(str(int(i)) for i in ids).encode()).hexdigest()


def long_tail_profile(shots: int, num_classes: int, imbalance: float) -> list[int]:
  """Training examples per class of a long-tail set: ``shots`` for the first class, decaying
  exponentially to ``shots / imbalance`` for the last (Cao et al. 2019's profile,
  n_i = shots * imbalance^(-i / (C - 1))), rounded down, at least 1."""
  if imbalance < 1.0:
    raise ShotsError(f"imbalance = {imbalance} must be >= 1 (head / tail class size)")
  if num_classes == 1 or imbalance == 1.0:
    return [shots] * num_classes
  return [max(1, int(np.floor(shots * imbalance ** (-i / (num_classes - 1)) + 1e-9)))
          for i in range(num_classes)]


def draw_manifest(pool: Examples, dataset: str, classes: Sequence[int], shots: int,
                  val_per_class: int, seed: int, imbalance: float = 1.0) -> SplitManifest:
  """Draws ``shots`` training and ``val_per_class`` validation examples per class (with
  ``imbalance`` > 1, ``long_tail_profile``'s count for each class, in the task's class order:
  the first class is the head).

  Each class is permuted by its own generator seeded with (seed, class), so adding a class to
  the task leaves the other classes' examples unchanged. Validation examples come first in the
  permutation, so growing ``shots`` keeps the same validation set and nests the training sets.
  """
  if imbalance != 1.0 and shots == ALL_SHOTS:
    raise ShotsError("a long-tail set (imbalance != 1) needs config.data.shots = the head "
                     "class's count, not -1")
  per_class = long_tail_profile(shots, len(classes), imbalance)
  present = np.unique(pool.labels)
  absent = [int(c) for c in classes if c not in present]
  if absent:
    raise UnknownClassError(
        f"config.data.classes names {absent}, which the training split of {dataset} does not "
        f"have; its classes are {_describe_labels(present)}. Pick classes from those.")
  train_ids, val_ids = [], []
  for label, class_shots in zip(classes, per_class):
    class_ids = np.sort(pool.ids[pool.labels == label])
    wanted = val_per_class + (0 if shots == ALL_SHOTS else class_shots)
    if len(class_ids) < wanted or len(class_ids) == 0:
      raise ShotsError(
          f"class {label} of {dataset} has {len(class_ids)} training examples, but "
          f"shots={class_shots} + val_per_class={val_per_class} = {wanted} were asked. Lower "
          "config.data.shots or config.data.val_per_class.")
    order = np.random.default_rng([seed, int(label)]).permutation(len(class_ids))
    permuted = class_ids[order]
    val_ids.extend(permuted[:val_per_class].tolist())
    end = len(permuted) if shots == ALL_SHOTS else val_per_class + class_shots
    train_ids.extend(permuted[val_per_class:end].tolist())
  return SplitManifest(dataset=dataset, classes=tuple(int(c) for c in classes), shots=shots,
                       val_per_class=val_per_class, seed=seed, train_ids=tuple(train_ids),
                       val_ids=tuple(val_ids), imbalance=float(imbalance),
                       train_per_class=tuple(per_class) if imbalance != 1.0 else ())


# Seeds the pool's draw apart from the classes' draws (which use (seed, class)).
_POOL_STREAM = 2**31 - 1


def with_pool(manifest: SplitManifest, pool: Examples, size: int) -> SplitManifest:
  """``manifest`` with ``size`` unlabelled pool examples drawn from the training split's
  examples of the task's classes, validation examples excluded (their inputs stay unseen by
  training); the k-shot examples may be among them. Fewer if the split has fewer."""
  candidates = pool.ids[np.isin(pool.labels, manifest.classes)
                        & ~np.isin(pool.ids, np.asarray(manifest.val_ids, np.int64))]
  rng = np.random.default_rng([manifest.seed, _POOL_STREAM])
  chosen = np.sort(rng.choice(np.sort(candidates), min(size, len(candidates)), replace=False))
  return dataclasses.replace(manifest, pool_ids=tuple(int(i) for i in chosen))


def select(pool: Examples, ids: Sequence[int], classes: Sequence[int]) -> Examples:
  """The examples with these ids, labels remapped to positions in ``classes`` (0..C-1)."""
  positions = np.searchsorted(pool.ids, np.asarray(ids, dtype=np.int64))
  if len(ids) and not np.array_equal(pool.ids[positions], np.asarray(ids)):
    raise ValueError("split manifest names ids that are not in the dataset; was it rebuilt?")
  subset = pool.take(positions)
  return subset.replace(label=remap_labels(subset.labels, classes))


def restrict_to_classes(pool: Examples, classes: Sequence[int]) -> Examples:
  """All examples of the given classes (e.g. a test split), labels remapped to 0..C-1."""
  subset = pool.take(np.flatnonzero(np.isin(pool.labels, classes)))
  return subset.replace(label=remap_labels(subset.labels, classes))


def remap_labels(labels: np.ndarray, classes: Sequence[int]) -> np.ndarray:
  lookup = np.full(max(max(classes), int(labels.max(initial=0))) + 1, -1, dtype=np.int32)
  lookup[np.asarray(classes)] = np.arange(len(classes), dtype=np.int32)
  return lookup[labels]


def write_manifest(manifest: SplitManifest, path: str) -> None:
  from lowres_jax import storage  # Local: keeps the data package free of the run machinery.
  storage.write_json(path, manifest.to_json(), indent=1)
