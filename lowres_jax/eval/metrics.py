"""Classification metrics computed on the host from logits.

Everything that depends on hard predictions (accuracy, balanced accuracy,
macro-F1, per-class recall) is derived from a single confusion matrix, so the
numbers in one report can never disagree with each other about what the model
predicted. Only numpy is used: these run after logits have been pulled off the
accelerator; the tests check them against scikit-learn.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Return the (num_classes, num_classes) count matrix, rows = true label, cols = prediction.

    Built with one ``np.bincount`` over the flattened (label, pred) index,
    which is a single vectorised pass regardless of the number of classes.
    """
    preds = np.asarray(preds).astype(np.int64).reshape(-1)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if preds.shape != labels.shape:
        raise ValueError(f"preds has {preds.size} entries but labels has {labels.size}")
    _check_class_range(preds, num_classes, "preds")
    _check_class_range(labels, num_classes, "labels")
    flat = labels * num_classes + preds
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def per_class_recall(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class; NaN for a class with no true examples.

    NaN rather than 0 (scikit-learn's default) because a class that never
    occurs gives no evidence either way: reporting 0 would claim the model
    fails on it, and averaging that 0 in would bias balanced accuracy down.
    """
    support = confusion.sum(axis=1)
    true_positives = np.diag(confusion).astype(np.float64)
    recall = np.full(confusion.shape[0], np.nan)
    present = support > 0
    recall[present] = true_positives[present] / support[present]
    return recall


def balanced_accuracy(confusion: np.ndarray) -> float:
    """Mean recall over the classes that occur in the labels.

    Matches ``sklearn.metrics.balanced_accuracy_score``: classes absent from
    the labels are skipped instead of counting as zero recall.
    """
    recall = per_class_recall(confusion)
    present = ~np.isnan(recall)
    if not present.any():
        return float("nan")
    return float(recall[present].mean())


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean F1 over all classes, with 0 for classes that have no support at all.

    Uses F1 = 2TP / (2TP + FP + FN), which equals the harmonic mean of
    precision and recall but stays defined when either is 0/0. A class that
    is neither present nor predicted scores 0, matching scikit-learn's
    ``f1_score(average='macro', labels=range(C), zero_division=0)``.
    """
    true_positives = np.diag(confusion).astype(np.float64)
    false_positives = confusion.sum(axis=0) - true_positives
    false_negatives = confusion.sum(axis=1) - true_positives
    denominator = 2.0 * true_positives + false_positives + false_negatives
    f1 = np.zeros_like(true_positives)
    defined = denominator > 0
    f1[defined] = 2.0 * true_positives[defined] / denominator[defined]
    return float(f1.mean())


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax via log-sum-exp with the max subtracted, so large logits don't overflow."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy in nats, computed from log-softmax so it never takes log(0)."""
    log_probs = log_softmax(logits)
    labels = np.asarray(labels, dtype=np.int64)
    return float(-log_probs[np.arange(labels.size), labels].mean())


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, num_bins: int = 15) -> float:
    """Expected calibration error over equal-width bins of max-softmax confidence.

    Bins are (lo, hi] on [0, 1]; each contributes |accuracy - mean confidence|
    weighted by the fraction of examples that fall in it. Empty bins
    contribute nothing.
    """
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    probs = np.exp(log_softmax(logits))
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    # side="left" puts a value equal to an edge into the bin it closes, giving
    # (lo, hi] bins; the clip keeps a confidence of exactly 0 in the first bin.
    bin_index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, num_bins - 1)
    accuracy_sum = np.bincount(bin_index, weights=correct, minlength=num_bins)
    confidence_sum = np.bincount(bin_index, weights=confidence, minlength=num_bins)
    # |sum(acc) - sum(conf)| / N equals (count / N) * |mean acc - mean conf| per bin.
    return float(np.abs(accuracy_sum - confidence_sum).sum() / confidence.size)


def classification_metrics(
    logits: np.ndarray, labels: np.ndarray, num_classes: int, ece_bins: int = 15
) -> dict[str, float | list[float]]:
    """All classification metrics for one split, as plain Python numbers.

    Plain floats/ints (not numpy scalars) so the result can go straight into
    JSON logs. Predictions are the argmax of the logits.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    _check_inputs(logits, labels, num_classes)
    preds = logits.argmax(axis=1)
    confusion = confusion_matrix(preds, labels, num_classes)
    return {
        "accuracy": float(np.trace(confusion) / labels.size),
        "balanced_accuracy": balanced_accuracy(confusion),
        "macro_f1": macro_f1(confusion),
        "per_class_recall": [float(r) for r in per_class_recall(confusion)],
        "ece": expected_calibration_error(logits, labels, ece_bins),
        "loss": cross_entropy(logits, labels),
        "num_examples": int(labels.size),
    }


def prefix_metrics(metrics: dict, split: str) -> dict:
    """Prefix every key with its split name (``accuracy`` -> ``test/accuracy``) so no number is ambiguous."""
    return {f"{split}/{key}": value for key, value in metrics.items()}


def _check_inputs(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    """Fail loudly on shape mismatches instead of silently broadcasting."""
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"logits must have shape (N, {num_classes}), got {logits.shape}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels must have shape ({logits.shape[0]},), got {labels.shape}")
    if labels.size == 0:
        raise ValueError("cannot compute metrics on zero examples")


def _check_class_range(values: np.ndarray, num_classes: int, name: str) -> None:
    """Out-of-range ids would silently land in another cell of the flattened bincount."""
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got range [{values.min()}, {values.max()}]")
