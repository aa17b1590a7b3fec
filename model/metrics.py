"""Classification metrics as the paper reports them (§4: weighted F1 and accuracy), per class
user's/producer's accuracy, and mean ± 95% confidence intervals over seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from pipeline.core.confusion import class_accuracies


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Overall accuracy, weighted F1 and per-class metrics.

    Args:
        y_true, y_pred: int arrays (N,) of class ids 0..len(names)-1.
        names: class names in id order.

    Returns:
        ``{"overall_accuracy", "weighted_f1", "n", "per_class": {name: {"users_accuracy",
        "producers_accuracy", "f1", "support"}}, "confusion": {"rows": "map", "columns": "reference",
        ...}}``: one orientation everywhere in eulc (rows = map/predicted class, columns = reference,
        as in Olofsson et al. 2014 and ``eulc agreement``/``report``). User's accuracy = precision
        (of the predicted class), producer's = recall.
    """
    labels = list(range(len(names)))
    cm = confusion_matrix(y_true, y_pred, labels=labels).T  # rows = map (predicted), columns = reference
    acc = class_accuracies(cm, names, rows="map", undefined=0.0)  # sklearn's zero_division=0
    return {
        "overall_accuracy": float(accuracy_score(y_true, y_pred)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "n": int(len(y_true)),
        "per_class": {
            n: {
                "users_accuracy": a["users_accuracy"],
                "producers_accuracy": a["producers_accuracy"],
                "f1": a["f1"],
                "support": a["reference_total"],
            }
            for n, a in acc.items()
        },
        "confusion": {"rows": "map", "columns": "reference", "classes": names, "matrix": cm.tolist()},
    }


def mean_ci95(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its two-sided 95% confidence interval (Student t, n − 1 dof).

    With one value the half-width is NaN (no interval from a single seed).
    """
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()) if len(v) else float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half)
