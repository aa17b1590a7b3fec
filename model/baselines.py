"""The paper's baselines (§4.1.2; FEATURES.md §5) on the same tables and splits.

- RF: 130 trees, min_samples_leaf 2, max_features sqrt, gini.
- XGBoost: ``hist`` trees, 300 rounds, otherwise defaults (max_depth 6).
- SVM: RBF, C = 1, gamma ``scale``, on min–max scaled features. Its training set is capped at
  ``SVM_MAX_TRAIN`` rows (stratified subsample) because kernel SVM training is quadratic.
All take the features only (no coordinates), as in the paper.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BASELINES = ("rf", "xgboost", "svm")
SVM_MAX_TRAIN = 15_000
XGBOOST_GRID: dict[str, dict[str, Any]] = {
    "paper": {"n_estimators": 300, "max_depth": 6, "learning_rate": 0.3},
    "deep": {"n_estimators": 600, "max_depth": 8, "learning_rate": 0.1},
    "shallow": {"n_estimators": 600, "max_depth": 4, "learning_rate": 0.1},
}
"""The tuned XGBoost's candidates (issue #29 part 2): the paper's setting (XGBoost's defaults,
300 rounds) and two slower-learning ones, as many as the network's nested candidates, chosen on
the same inner blocked hold-out (:func:`model.tuning.choose_xgboost`)."""


def fit_predict_baseline(
    name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int
) -> np.ndarray:
    """Fit baseline ``name`` on float32 (N, F) features and int labels; predict the test rows'
    classes (N_test,) int.

    Raises:
        ValueError: unknown baseline name.
    """
    n_classes = int(max(y_train.max(initial=0), 0)) + 1
    return fit_predict_proba_baseline(name, x_train, y_train, x_test, seed, n_classes)[0]


def fit_predict_proba_baseline(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    seed: int,
    n_classes: int,
    xgboost_params: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Fit baseline ``name``; return the test rows' classes (N_test,) int and class
    probabilities (N_test, n_classes) float64 (None for the SVM, which has none without Platt
    scaling). ``xgboost_params`` replace the paper's XGBoost setting (a :data:`XGBOOST_GRID` entry).

    Raises:
        ValueError: unknown baseline name.
    """
    model: Any
    if name == "rf":
        from sklearn.ensemble import RandomForestClassifier

        model = RandomForestClassifier(
            n_estimators=130, min_samples_leaf=2, max_features="sqrt", criterion="gini", n_jobs=-1, random_state=seed
        )
    elif name == "xgboost":
        from xgboost import XGBClassifier

        classes = np.unique(y_train)  # XGBoost needs labels 0..K-1
        lut = {c: i for i, c in enumerate(classes)}
        params = xgboost_params or XGBOOST_GRID["paper"]
        m = XGBClassifier(tree_method="hist", random_state=seed, n_jobs=-1, **params)
        m.fit(x_train, np.array([lut[c] for c in y_train]))
        p = np.asarray(m.predict_proba(x_test), np.float64)
        prob = np.zeros((len(x_test), n_classes))
        prob[:, classes] = p
        return np.asarray(classes[p.argmax(1)]), prob
    elif name == "svm":
        from sklearn.model_selection import train_test_split
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import MinMaxScaler
        from sklearn.svm import SVC

        if len(y_train) > SVM_MAX_TRAIN:
            keep, _ = train_test_split(
                np.arange(len(y_train)), train_size=SVM_MAX_TRAIN, random_state=seed, stratify=y_train
            )
            x_train, y_train = x_train[keep], y_train[keep]
        model = make_pipeline(MinMaxScaler(), SVC(C=1.0, kernel="rbf", gamma="scale", random_state=seed))
        model.fit(x_train, y_train)
        return np.asarray(model.predict(x_test)), None
    else:
        raise ValueError(f"unknown baseline {name!r}; use one of {BASELINES}")
    model.fit(x_train, y_train)
    p = np.asarray(model.predict_proba(x_test), np.float64)
    prob = np.zeros((len(x_test), n_classes))
    prob[:, model.classes_] = p
    return np.asarray(model.classes_[p.argmax(1)]), prob
