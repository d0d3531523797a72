"""What class imbalance changes in evaluation: post-hoc logit adjustment and the accuracy of
the many-, medium- and few-shot class groups.

Long-tail papers report accuracy on class groups by training frequency (Liu et al. 2019 use
fixed counts, > 100 / 20-100 / < 20 images, made for ImageNet-LT's thousands). A few-shot
long tail has tens of examples at most, so the groups here are relative: the classes ranked by
their training count, top third "many", bottom third "few", the rest "medium". A group's
accuracy is its classes' mean recall (equal to its test accuracy on a balanced test set).
"""

from __future__ import annotations

import numpy as np

from lowres_jax.eval import metrics

GROUPS = ("many", "medium", "few")


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
  return np.bincount(np.asarray(labels, np.int64), minlength=num_classes).astype(np.float64)


def log_prior(counts, xp=np):
  """log of the class frequencies (``xp`` = numpy or jax.numpy, so the training loss and the
  post-hoc adjustment share one definition); a class never seen gets log(1e-12), a strong but
  finite offset."""
  return xp.log(xp.maximum(counts / xp.sum(counts), 1e-12))


def adjust_logits(logits: np.ndarray, counts: np.ndarray, tau: float) -> np.ndarray:
  """Post-hoc logit adjustment (Menon et al. 2021): logits - tau * log prior, the Bayes rule
  for balanced error when the logits estimate the training (imbalanced) posterior."""
  return np.asarray(logits, np.float64) - tau * log_prior(np.asarray(counts, np.float64))


def as_predicted(logits: np.ndarray, train_labels: np.ndarray, num_classes: int,
                 tau: float) -> np.ndarray:
  """The logits a run predicts from: adjusted by its training set's prior when ``tau`` > 0
  (``config.eval.logit_adjust``), else as they are."""
  if not tau:
    return logits
  return adjust_logits(logits, class_counts(train_labels, num_classes), tau)


def shot_groups(counts: np.ndarray) -> dict[str, np.ndarray]:
  """Class indices of each group: ranked by training count (ties by class index), top third
  'many', bottom third 'few', the rest 'medium'. Empty when every class has the same count
  (a balanced set has no tail)."""
  counts = np.asarray(counts)
  if np.all(counts == counts[0]):
    return {}
  order = np.lexsort((np.arange(len(counts)), -counts))
  third = max(1, int(round(len(counts) / 3)))
  return {"many": np.sort(order[:third]), "medium": np.sort(order[third:len(counts) - third]),
          "few": np.sort(order[len(counts) - third:])}


def group_metrics(logits: np.ndarray, labels: np.ndarray, counts: np.ndarray,
                  split: str) -> dict[str, float]:
  """``{split}/{many,medium,few}_accuracy``: mean recall over each group's classes (NaN-free:
  classes absent from ``labels`` are skipped); {} for a balanced training set."""
  groups = shot_groups(counts)
  if not groups:
    return {}
  confusion = metrics.confusion_matrix(np.argmax(logits, axis=1), labels, len(counts))
  recall = metrics.per_class_recall(confusion)
  result = {}
  for name, classes in groups.items():
    present = [c for c in classes if not np.isnan(recall[c])]
    if present:
      result[f"{split}/{name}_accuracy"] = float(np.mean(recall[present]))
  return result
