"""Accuracy metrics of a label map against reference labels.

Class values are 1..K (0 is background / no data, 255 is "ignore" in masks),
so the confusion matrix is indexed by value - 1. A prediction of 0 (the
predictor writes 0 where the input is nodata or background) is a miss for a
labeled pixel: it is kept apart as "unclassified" so the report can say how
many test pixels were never classified instead of silently dropping them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of [true, predicted] pairs as an int64 [K, K+1] array.

    Rows are true classes 1..K; column 0 counts predictions of 0 (or of any
    value outside 1..K), columns 1..K the predicted classes. Pixels whose
    true value is not in 1..K (0 unlabeled, 255 ignored) are not counted.
    """
    k = int(num_classes)
    if k < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in size: {t.size} != {p.size}")
    keep = (t >= 1) & (t <= k)
    t = t[keep].astype(np.int64)
    p = p[keep].astype(np.int64)
    p[(p < 1) | (p > k)] = 0
    # One bincount over a flat index is far faster than np.add.at on big tiles.
    flat = (t - 1) * (k + 1) + p
    return np.bincount(flat, minlength=k * (k + 1)).reshape(k, k + 1).astype(np.int64)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """The [true][predicted] confusion matrix over classes 1..K, int64 [K, K].

    Labeled pixels predicted as 0 are not in it; `unclassified_counts` (or
    `confusion_counts`) reports them, and `accuracy_report` counts them wrong.
    """
    return confusion_counts(y_true, y_pred, num_classes)[:, 1:].copy()


def unclassified_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Per true class, how many labeled pixels were predicted 0 (int64 [K])."""
    return confusion_counts(y_true, y_pred, num_classes)[:, 0].copy()


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def accuracy_report(
    cm: np.ndarray,
    class_names: Sequence[str],
    class_values: Sequence[int],
    unclassified: np.ndarray | Sequence[int] | None = None,
) -> dict[str, Any]:
    """The metrics.json "test" report from a [true][pred] confusion matrix.

    `cm` is [K, K], or [K, K+1] as returned by `confusion_counts` (column 0 =
    predicted 0). `unclassified` (per true class) may be given separately
    instead. Unclassified pixels count in support, pixels and the accuracy
    denominators, i.e. as wrong; when they were supplied the report also
    carries their total under "unclassified". Ratios with a zero denominator
    are reported as 0.0 (including kappa when chance agreement is 1).
    """
    m = np.asarray(cm, dtype=np.int64)
    k = len(class_names)
    if len(class_values) != k:
        raise ValueError("class_names and class_values differ in length")
    missed: np.ndarray | None = None
    if m.shape == (k, k + 1):
        missed = m[:, 0].copy()
        m = m[:, 1:]
    elif m.shape != (k, k):
        raise ValueError(f"confusion matrix shape {m.shape} does not fit {k} classes")
    if unclassified is not None:
        extra = np.asarray(unclassified, dtype=np.int64).reshape(k)
        missed = extra if missed is None else missed + extra
    missed_or_zero = missed if missed is not None else np.zeros(k, dtype=np.int64)

    tp = np.diag(m)
    predicted = m.sum(axis=0)
    support = m.sum(axis=1) + missed_or_zero
    total = int(support.sum())

    per_class = []
    for i in range(k):
        precision = _ratio(tp[i], predicted[i])
        recall = _ratio(tp[i], support[i])
        per_class.append(
            {
                "value": int(class_values[i]),
                "name": str(class_names[i]),
                "precision": precision,
                "recall": recall,
                "f1": _ratio(2 * precision * recall, precision + recall),
                "iou": _ratio(tp[i], support[i] + predicted[i] - tp[i]),
                "support": int(support[i]),
            }
        )

    observed = _ratio(tp.sum(), total)
    # Chance agreement from the marginals; the unclassified column matches no
    # row, so it only enters through the row totals (and the total).
    chance = _ratio(float((support.astype(np.float64) * predicted).sum()), float(total) ** 2)
    kappa = _ratio(observed - chance, 1.0 - chance) if chance < 1.0 else 0.0

    report: dict[str, Any] = {
        "overall_accuracy": observed,
        "kappa": kappa,
        "per_class": per_class,
        "confusion_matrix": m.tolist(),
        "class_names": [str(n) for n in class_names],
        "pixels": total,
    }
    if missed is not None:
        report["unclassified"] = int(missed.sum())
    return report
