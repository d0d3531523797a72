"""Probes on a run's frozen ``pre_logits``, reported beside its own metrics (``config.eval.probes``).

Whatever a run trains, ``ridge`` and ``class_means`` probes fitted on its final embeddings of
the k-shot set say how linearly separable its representation is, the number big_vision's and
kauldron's few-shot evaluators report. The ridge's L2 strength is chosen per run on
validation accuracy from ``RIDGE_L2_GRID`` (big_vision fixes one value; kauldron selects),
and recorded; without a validation split the middle of the grid is used.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from lowres_jax.eval import metrics
from lowres_jax.train import head_init

PROBES = ("ridge", "class_means")
RIDGE_L2_GRID = tuple(float(v) for v in 10.0 ** np.arange(-5, 3))


def _split_metrics(features, kernel, bias, labels, num_classes, prefix) -> dict:
  logits = features @ kernel + bias
  return metrics.prefix_metrics(metrics.classification_metrics(logits, labels, num_classes),
                                prefix)


def probe_metrics(kind: str, train: tuple[np.ndarray, np.ndarray],
                  val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                  num_classes: int) -> dict:
  """``probe_{kind}/val/...`` and ``probe_{kind}/test/...`` of a probe fitted on ``train``;
  each argument is (features, labels)."""
  prefix = f"probe_{kind}"
  (train_x, train_y), (val_x, val_y), (test_x, test_y) = train, val, test
  if kind == "class_means":
    kernel = head_init.class_mean_rows(train_x, train_y, num_classes).T
    bias, chosen = np.zeros(num_classes, np.float32), {}
  elif kind == "ridge":
    fits = {l2: head_init.ridge_head(train_x, train_y, num_classes, l2) for l2 in RIDGE_L2_GRID}
    if len(val_y):
      accuracy = {l2: float(np.mean(np.argmax(val_x @ k + b, -1) == val_y))
                  for l2, (k, b) in fits.items()}
      best = max(RIDGE_L2_GRID, key=lambda l2: accuracy[l2])  # Ties: the smallest L2.
    else:
      best = RIDGE_L2_GRID[len(RIDGE_L2_GRID) // 2]
    kernel, bias = fits[best]
    chosen = {f"{prefix}/l2": best}
  else:
    raise ValueError(f"unknown probe {kind!r}; known: {PROBES}")
  result = dict(chosen)
  if len(val_y):
    result.update(_split_metrics(val_x, kernel, bias, val_y, num_classes, f"{prefix}/val"))
  result.update(_split_metrics(test_x, kernel, bias, test_y, num_classes, f"{prefix}/test"))
  return result


def run_probes(kinds: tuple[str, ...], features: Callable[[str], np.ndarray],
               labels: dict[str, np.ndarray], num_classes: int) -> dict:
  """Every probe of ``kinds`` for one run; ``features(split)`` embeds 'train', 'val' or
  'test' (each asked once)."""
  if not kinds:
    return {}
  embedded = {split: (features(split), labels[split]) for split in ("train", "val", "test")}
  result = {}
  for kind in kinds:
    result.update(probe_metrics(kind, embedded["train"], embedded["val"], embedded["test"],
                                num_classes))
  return result
