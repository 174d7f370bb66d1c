"""Confusion matrix and accuracy report against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sipd.accuracy import (
    accuracy_report,
    confusion_counts,
    confusion_matrix,
    unclassified_counts,
)

NAMES = ["ice", "water", "land"]
VALUES = [1, 2, 3]


def _pairs(cm: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels realising a given [true][pred] matrix, in shuffled order."""
    t, p = [], []
    for i, row in enumerate(cm):
        for j, n in enumerate(row):
            t += [i + 1] * n
            p += [j + 1] * n
    order = np.random.default_rng(0).permutation(len(t))
    return np.array(t, np.uint8)[order], np.array(p, np.uint8)[order]


HAND = [[50, 3, 2], [5, 30, 5], [0, 5, 0]]  # rows true, columns predicted; total 100


def test_confusion_matrix_counts_pairs_and_ignores_unlabeled():
    t, p = _pairs(HAND)
    t = np.concatenate([t, [0, 255, 0]]).astype(np.uint8)
    p = np.concatenate([p, [1, 2, 3]]).astype(np.uint8)
    cm = confusion_matrix(t.reshape(-1, 1), p.reshape(-1, 1), 3)
    assert cm.dtype == np.int64 and cm.shape == (3, 3)
    assert cm.tolist() == HAND


def test_report_hand_computed():
    report = accuracy_report(np.array(HAND), NAMES, VALUES)
    # OA = (50 + 30 + 0) / 100
    assert report["overall_accuracy"] == pytest.approx(0.80)
    # Rows 55, 40, 5; columns 55, 38, 7 -> pe = (55*55 + 40*38 + 5*7) / 100^2 = 0.458
    # kappa = (0.80 - 0.458) / (1 - 0.458)
    assert report["kappa"] == pytest.approx((0.80 - 0.458) / 0.542)
    ice, water, land = report["per_class"]
    assert ice == {
        "value": 1,
        "name": "ice",
        "precision": pytest.approx(50 / 55),
        "recall": pytest.approx(50 / 55),
        "f1": pytest.approx(50 / 55),
        "iou": pytest.approx(50 / 60),
        "support": 55,
    }
    assert water["precision"] == pytest.approx(30 / 38)
    assert water["recall"] == pytest.approx(30 / 40)
    assert water["f1"] == pytest.approx(2 * (30 / 38) * (30 / 40) / (30 / 38 + 30 / 40))
    assert water["iou"] == pytest.approx(30 / (40 + 38 - 30))
    # land: never right -> zero divisions inside F1 reported as 0.0
    assert (land["precision"], land["recall"], land["f1"], land["iou"]) == (0.0, 0.0, 0.0, 0.0)
    assert report["confusion_matrix"] == HAND
    assert report["class_names"] == NAMES
    assert report["pixels"] == 100
    assert "unclassified" not in report
    json.dumps(report)  # plain types only: it goes into metrics.json as is


def test_prediction_zero_counts_as_wrong_and_is_reported():
    t = np.array([1, 1, 1, 1, 2, 2, 0, 255], np.uint8)
    p = np.array([1, 1, 0, 0, 2, 0, 0, 0], np.uint8)
    counts = confusion_counts(t, p, 2)
    assert counts.tolist() == [[2, 2, 0], [1, 0, 1]]
    assert confusion_matrix(t, p, 2).tolist() == [[2, 0], [0, 1]]
    assert unclassified_counts(t, p, 2).tolist() == [2, 1]
    report = accuracy_report(counts, ["a", "b"], [1, 2])
    assert report["pixels"] == 6
    assert report["unclassified"] == 3
    assert report["overall_accuracy"] == pytest.approx(3 / 6)
    a, b = report["per_class"]
    assert (a["support"], a["recall"], a["precision"]) == (4, 0.5, 1.0)
    assert (b["support"], b["recall"], b["precision"]) == (2, 0.5, 1.0)
    # Same report with the unclassified counts passed beside a K x K matrix.
    same = accuracy_report(confusion_matrix(t, p, 2), ["a", "b"], [1, 2], unclassified=[2, 1])
    assert same == report


def test_predictions_out_of_range_are_unclassified():
    counts = confusion_counts(np.array([1, 2]), np.array([7, 2]), 2)
    assert counts.tolist() == [[1, 0, 0], [0, 0, 1]]


def test_perfect_and_empty():
    perfect = accuracy_report(np.diag([10, 20]), ["a", "b"], [1, 2])
    assert perfect["overall_accuracy"] == 1.0 and perfect["kappa"] == pytest.approx(1.0)
    empty = accuracy_report(np.zeros((2, 2), np.int64), ["a", "b"], [1, 2])
    assert empty["overall_accuracy"] == 0.0 and empty["kappa"] == 0.0 and empty["pixels"] == 0
    one_class = accuracy_report(np.array([[5]]), ["a"], [1])
    assert one_class["overall_accuracy"] == 1.0 and one_class["kappa"] == 0.0


def test_shape_errors():
    with pytest.raises(ValueError):
        accuracy_report(np.zeros((2, 3)), ["a", "b", "c"], [1, 2, 3])
    with pytest.raises(ValueError):
        confusion_matrix(np.ones(3), np.ones(4), 2)
