"""Per-class accuracy from a confusion matrix: the one place the rule is written.

User's accuracy (map class i: the share of pixels/points mapped as i that are i in the
reference; precision) and producer's accuracy (reference class i: the share found by the map;
recall), and their harmonic mean F1, as in Olofsson et al. (2014) and the paper's §4 tables.
Matrices come in two orientations in the field; callers say which they hold.
"""

from __future__ import annotations

from typing import Literal

import numpy as np


def class_accuracies(
    cm: np.ndarray, names: list[str], rows: Literal["map", "reference"], undefined: float | None = None
) -> dict[str, dict[str, float | int | None]]:
    """User's and producer's accuracy and F1 per class.

    Args:
        cm: (K, K) counts or areas (any numeric dtype).
        names: the K class names, in matrix order.
        rows: what the rows are: ``map`` (remote-sensing convention: rows = map class, columns =
            reference) or ``reference`` (scikit-learn's ``confusion_matrix``: rows = truth).
        undefined: the value where a total is zero (no pixel mapped / none in the reference).

    Returns:
        name → ``users_accuracy``, ``producers_accuracy``, ``f1`` (0.0 where both accuracies
        are defined and zero), ``map_total`` and ``reference_total`` (row/column sums).
    """
    m = np.asarray(cm, dtype=float)
    if rows == "reference":
        m = m.T
    diag, mapped, ref = np.diag(m), m.sum(1), m.sum(0)
    out: dict[str, dict[str, float | int | None]] = {}
    for i, n in enumerate(names):
        ua = float(diag[i] / mapped[i]) if mapped[i] else undefined
        pa = float(diag[i] / ref[i]) if ref[i] else undefined
        f1: float | None = undefined
        if ua is not None and pa is not None and mapped[i] and ref[i]:
            f1 = 2 * ua * pa / (ua + pa) if ua + pa else 0.0
        out[n] = {
            "users_accuracy": ua,
            "producers_accuracy": pa,
            "f1": f1,
            "map_total": int(round(mapped[i])),
            "reference_total": int(round(ref[i])),
        }
    return out
