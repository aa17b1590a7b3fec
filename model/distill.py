"""Knowledge distillation from a gradient-boosting teacher into the fused MLP student
(Hinton et al. 2015; issue #15 candidate): the teacher is XGBoost with the paper's baseline
settings (FEATURES.md §5: ``hist`` trees, 300 rounds), fitted on exactly the student's training
rows; the student's loss mixes the label cross-entropy with the cross-entropy against the
teacher's class probabilities (:mod:`model.train`, ``distill``).

The teacher's probabilities of its training rows come from cross-fitting (each row predicted by
a teacher that did not see it), so the soft targets carry the teacher's uncertainty instead of
its in-sample overconfidence. Inference stays one fused network: the teacher is not shipped.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

TEACHER_ROUNDS = 300
TEACHER_FOLDS = 2
"""K of the cross-fitting: 2 halves the teacher's cost against 3 (issue #15 CPU budget)."""


def _xgb(seed: int, n_jobs: int = -1) -> object:
    from xgboost import XGBClassifier

    return XGBClassifier(tree_method="hist", n_estimators=TEACHER_ROUNDS, random_state=seed, n_jobs=n_jobs)


def teacher_probabilities(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    seed: int,
    folds: int = TEACHER_FOLDS,
    on_fold: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Cross-fitted XGBoost class probabilities of the training rows.

    Args:
        x: float32 (N, F) raw features (trees need no normalisation); y: int64 (N,) class ids
            in 0 … n_classes − 1.
        n_classes: C; classes absent from a fold's training rows get probability 0 there.
        seed: the teachers' and folds' seed.
        folds: K of the cross-fitting (each row is predicted by the teacher of the other K − 1
            folds).
        on_fold: called with (folds fitted, folds) before the first fold and after each.

    Returns:
        float32 (N, C), rows summing to 1.
    """
    out = np.zeros((len(y), n_classes), np.float32)
    counts = np.bincount(y, minlength=n_classes)
    k = int(min(folds, counts[counts > 0].min())) if (counts > 0).any() else 1
    if k < 2:  # too few rows of some class to cross-fit: in-sample probabilities
        splits = [(np.arange(len(y)), np.arange(len(y)))]
    else:
        from sklearn.model_selection import StratifiedKFold  # here: a bundle loads without scikit-learn

        splits = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y))
    if on_fold is not None:
        on_fold(0, len(splits))
    for i, (fit_idx, pred_idx) in enumerate(splits, 1):
        classes = np.unique(y[fit_idx])
        lut = np.full(n_classes, -1, np.int64)
        lut[classes] = np.arange(len(classes))
        m = _xgb(seed)
        m.fit(x[fit_idx], lut[y[fit_idx]])  # type: ignore[attr-defined]
        p = np.asarray(m.predict_proba(x[pred_idx]), np.float32)  # type: ignore[attr-defined]
        if p.ndim == 1 or p.shape[1] == 1:  # one class only
            p = np.ones((len(pred_idx), 1), np.float32)
        out[np.ix_(pred_idx, classes)] = p
        if on_fold is not None:
            on_fold(i, len(splits))
    return out / np.maximum(out.sum(1, keepdims=True), 1e-12)
