"""Tests for lowres_jax.eval.metrics against scikit-learn and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from lowres_jax.eval.metrics import (
    classification_metrics,
    confusion_matrix,
    expected_calibration_error,
    prefix_metrics,
)

EXPECTED_KEYS = {
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "per_class_recall",
    "ece",
    "loss",
    "num_examples",
}


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _noisy_logits(rng: np.random.Generator, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Logits that are right more often than chance but far from perfect."""
    logits = rng.normal(size=(labels.size, num_classes)) * 2.0
    logits[np.arange(labels.size), labels] += 1.5
    return logits


def _assert_matches_sklearn(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    result = classification_metrics(logits, labels, num_classes)
    preds = logits.argmax(axis=1)
    class_ids = list(range(num_classes))
    assert set(result) == EXPECTED_KEYS
    assert result["num_examples"] == labels.size
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(labels, preds), abs=1e-12)
    assert result["balanced_accuracy"] == pytest.approx(
        skm.balanced_accuracy_score(labels, preds), abs=1e-12
    )
    assert result["macro_f1"] == pytest.approx(
        skm.f1_score(labels, preds, average="macro", labels=class_ids, zero_division=0), abs=1e-12
    )
    sk_recall = skm.recall_score(labels, preds, average=None, labels=class_ids, zero_division=0)
    present = np.isin(class_ids, labels)
    ours = np.array(result["per_class_recall"])
    assert len(result["per_class_recall"]) == num_classes
    np.testing.assert_allclose(ours[present], sk_recall[present], atol=1e-12)
    assert np.all(np.isnan(ours[~present]))
    assert result["loss"] == pytest.approx(
        skm.log_loss(labels, _softmax(logits), labels=class_ids), rel=1e-9
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_inputs_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_classes = 7
    labels = rng.integers(0, num_classes, size=500)
    _assert_matches_sklearn(_noisy_logits(rng, labels, num_classes), labels, num_classes)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_absent_class_is_nan_recall_and_skipped_by_balanced_accuracy() -> None:
    rng = np.random.default_rng(3)
    num_classes = 5
    # Class 3 never occurs in the labels, but the model is pushed to predict it sometimes.
    labels = rng.choice([0, 1, 2, 4], size=200)
    logits = _noisy_logits(rng, labels, num_classes)
    logits[:20, 3] += 10.0
    assert (logits.argmax(axis=1) == 3).any()
    _assert_matches_sklearn(logits, labels, num_classes)
    result = classification_metrics(logits, labels, num_classes)
    assert math.isnan(result["per_class_recall"][3])
    present_recalls = [r for i, r in enumerate(result["per_class_recall"]) if i != 3]
    assert result["balanced_accuracy"] == pytest.approx(np.mean(present_recalls))


def test_class_neither_present_nor_predicted_counts_zero_in_macro_f1() -> None:
    labels = np.array([0, 0, 1, 1])
    logits = np.array([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 5.0, 0.0]])
    result = classification_metrics(logits, labels, num_classes=3)
    # Classes 0 and 1 are perfect (F1 = 1), class 2 contributes 0: macro-F1 = 2/3.
    assert result["macro_f1"] == pytest.approx(2.0 / 3.0)
    assert result["balanced_accuracy"] == pytest.approx(1.0)
    _assert_matches_sklearn(logits, labels, 3)


def test_perfect_predictions() -> None:
    labels = np.array([0, 1, 2, 3, 2, 1, 0])
    logits = np.full((labels.size, 4), -50.0)
    logits[np.arange(labels.size), labels] = 50.0
    result = classification_metrics(logits, labels, num_classes=4)
    assert result["accuracy"] == 1.0
    assert result["balanced_accuracy"] == 1.0
    assert result["macro_f1"] == 1.0
    assert result["per_class_recall"] == [1.0, 1.0, 1.0, 1.0]
    assert result["loss"] == pytest.approx(0.0, abs=1e-30)
    assert result["ece"] == pytest.approx(0.0, abs=1e-12)
    _assert_matches_sklearn(logits, labels, 4)


def test_loss_is_stable_for_huge_logits() -> None:
    # A naive exp() would overflow to inf/nan here.
    logits = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    labels = np.array([1, 1])
    result = classification_metrics(logits, labels, num_classes=2)
    assert result["loss"] == pytest.approx(500.0)
    assert result["accuracy"] == 0.5


def test_confusion_matrix_counts() -> None:
    preds = np.array([0, 1, 1, 2, 2, 2])
    labels = np.array([0, 1, 2, 2, 0, 2])
    expected = np.array([[1, 0, 1], [0, 1, 0], [0, 1, 2]])
    np.testing.assert_array_equal(confusion_matrix(preds, labels, 3), expected)
    np.testing.assert_array_equal(
        confusion_matrix(preds, labels, 3), skm.confusion_matrix(labels, preds, labels=[0, 1, 2])
    )


def test_confusion_matrix_rejects_out_of_range_labels() -> None:
    with pytest.raises(ValueError, match="labels"):
        confusion_matrix(np.array([0, 1]), np.array([0, 3]), 3)


def test_ece_hand_computed_four_examples() -> None:
    # Two classes, logits chosen so max-softmax confidences are exactly known:
    # softmax([log p, log(1-p)]) = [p, 1-p].
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    logits = np.log(probs)
    labels = np.array([0, 1, 1, 1])
    # confidences 0.9, 0.8, 0.7, 0.6; correct = 1, 0, 1, 1.
    # With 5 bins of width 0.2 on (lo, hi]:
    #   (0.4, 0.6]: {0.6}       acc 1.0, conf 0.60 -> 1/4 * 0.40 = 0.100
    #   (0.6, 0.8]: {0.8, 0.7}  acc 0.5, conf 0.75 -> 2/4 * 0.25 = 0.125
    #   (0.8, 1.0]: {0.9}       acc 1.0, conf 0.90 -> 1/4 * 0.10 = 0.025
    assert expected_calibration_error(logits, labels, num_bins=5) == pytest.approx(0.25)
    # With a single bin ECE is |overall accuracy - mean confidence| = |0.75 - 0.75|.
    assert expected_calibration_error(logits, labels, num_bins=1) == pytest.approx(0.0, abs=1e-12)
    result = classification_metrics(logits, labels, num_classes=2, ece_bins=5)
    assert result["ece"] == pytest.approx(0.25)


def test_ece_bins_are_closed_on_the_right() -> None:
    # Confidence exactly 0.5 must land in (0.25, 0.5], not (0.5, 0.75].
    # With 4 bins: the 0.5 example (wrong) is alone; if it were merged with the
    # 0.75 example (right) the ECE would differ.
    logits = np.log(np.array([[0.5, 0.5], [0.75, 0.25]]))
    labels = np.array([1, 0])  # argmax ties pick class 0, so example 0 is wrong.
    # Separate bins: 1/2 * |0 - 0.5| + 1/2 * |1 - 0.75| = 0.375.
    # Merged bin would give |0.5 - 0.625| = 0.125.
    assert expected_calibration_error(logits, labels, num_bins=4) == pytest.approx(0.375)


def test_ece_random_matches_reference_loop() -> None:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 10, size=300)
    logits = _noisy_logits(rng, labels, 10)
    probs = _softmax(logits)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, 16)
    expected = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            expected += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    assert classification_metrics(logits, labels, 10)["ece"] == pytest.approx(expected, abs=1e-12)


def test_returns_plain_python_numbers() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, size=20)
    result = classification_metrics(_noisy_logits(rng, labels, 3), labels, 3)
    assert type(result["num_examples"]) is int
    for key in EXPECTED_KEYS - {"num_examples", "per_class_recall"}:
        assert type(result[key]) is float, key
    assert all(type(r) is float for r in result["per_class_recall"])


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="logits"):
        classification_metrics(np.zeros((4, 3)), np.zeros(4, dtype=int), num_classes=5)
    with pytest.raises(ValueError, match="labels"):
        classification_metrics(np.zeros((4, 3)), np.zeros(5, dtype=int), num_classes=3)


def test_prefix_metrics() -> None:
    prefixed = prefix_metrics({"accuracy": 0.5, "loss": 1.2}, "test")
    assert prefixed == {"test/accuracy": 0.5, "test/loss": 1.2}
