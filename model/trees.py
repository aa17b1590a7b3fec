"""Tree-model bundles: the paper's XGBoost baseline (§4.1.2) trained, calibrated, stored and
mapped like the network (issue #29 part 8), so a tree-model map and the network's map can be put
side by side.

- The model is stored in XGBoost's own portable JSON format (``Booster.save_model``, readable
  by every XGBoost binding; https://xgboost.readthedocs.io/en/stable/tutorials/saving_model.html),
  never pickle; its SHA-256 is checked at load like the network's safetensors.
- Training uses the very splits of the network with the same settings
  (:func:`model.train.split_rows`): the untouched test cells (``test_fraction``) and the blocked
  hold-out are the same rows, so the two bundles' ``test_*`` metrics are comparable.
- Calibration: a temperature on the log-probabilities (Guo et al. 2017 applied to any
  classifier, :func:`model.calibration.log_probabilities`) fitted on the hold-out, which also
  chooses the setting with ``tuned``; as for the network, the test cells serve neither.
- Trees take the features in the spec's stored units as they are (no normaliser; splits are
  invariant to monotone scaling) and no coordinates (the paper's baselines take none).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model import bounds
from model.baselines import XGBOOST_GRID
from model.calibration import PROB_FLOOR, expected_calibration_error, fit_temperature
from model.infer import softmax
from model.train import TrainConfig, TrainingData, split_metrics, split_rows, split_scores
from pipeline.core.errors import BundleError, SchemaError

TREES = "trees.json"
"""The tree model's file in a bundle: XGBoost's JSON model format."""
SPLIT_FIELDS = ("level", "seed", "val_fraction", "val_split", "test_fraction", "calibrate")
"""The :class:`~model.train.TrainConfig` fields a tree bundle uses and records as its
``train_config`` (the rest are the network's schedule); :func:`model.train.split_rows` draws the
same rows from them as from the network's whole config."""
SETTINGS = (*XGBOOST_GRID, "tuned")
"""``paper`` (XGBoost's defaults, 300 rounds: the paper's baseline), ``deep``, ``shallow``
(:data:`model.baselines.XGBOOST_GRID`), or ``tuned``: the grid entry with the best weighted F1 on
the blocked hold-out (the budget of the tuned baseline in ``eulc evaluate``)."""


@dataclass
class TreeEnsemble:
    """A loaded XGBoost classifier with its calibration, on the legend's C classes.

    Attributes:
        booster: the ``xgboost.Booster`` (multi:softprob over K classes, or binary:logistic when
            K = 2).
        classes: int64 (K,) the legend indices (0…C−1, increasing) of the booster's outputs (the
            classes present in the training rows); the other classes get probability 0.
        n_classes: C, the legend's size.
        temperature: T of ``softmax(log p / T)`` (1 = uncalibrated).
        bias: float32 (C,) added to the logits (EM prior adaptation at map time,
            :func:`model.priors.prior_bias`); zeros otherwise.
        location: always ``none``: trees read no coordinates.
    """

    booster: Any
    classes: np.ndarray
    n_classes: int
    temperature: float = 1.0
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    location: str = "none"

    def __post_init__(self) -> None:
        if len(self.bias) == 0:
            self.bias = np.zeros(self.n_classes, np.float32)

    @property
    def n_features(self) -> int:
        """F, the number of features the booster takes."""
        return int(self.booster.num_features())

    def set_threads(self, n: int) -> None:
        """Predict with ``n`` threads (XGBoost's ``nthread``; eulc's ``--threads``)."""
        self.booster.set_param({"nthread": max(1, int(n))})

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """The booster's own probabilities, float64 (N, C) (0 for classes it never saw), of raw
        features ``x`` float32 (N, F) in the spec's stored units (any strided view; NaN is
        XGBoost's missing value). No temperature, no bias.
        """
        out = np.zeros((len(x), self.n_classes))
        if len(x) == 0:
            return out
        p = np.asarray(self.booster.inplace_predict(x), np.float64)
        if p.ndim == 1:  # binary:logistic gives P(second class)
            p = np.stack([1.0 - p, p], 1)
        out[:, self.classes] = p
        return out

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Calibrated logits float32 (N, C): ``log(max(p, 1e-12)) / T + bias`` of raw features
        ``x`` float32 (N, F) (as :meth:`probabilities`); their softmax is the map's probability.
        """
        z = np.log(np.maximum(self.probabilities(x), PROB_FLOOR)) / self.temperature
        return np.asarray(z + self.bias, np.float32)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities float32 (N, C) of raw features ``x`` (N, F)."""
        return softmax(self.logits(x))

    def with_bias(self, bias: np.ndarray) -> TreeEnsemble:
        """A copy (sharing the booster) whose logits get ``bias`` (C,) added to its own."""
        other = copy.copy(self)
        other.bias = np.asarray(self.bias + np.asarray(bias, np.float32), np.float32)
        return other

    def architecture(self, setting: str, params: dict[str, Any]) -> dict[str, Any]:
        """The ``architecture`` record of ``bundle.json`` (flat numbers and names; the report's
        table shows them).
        """
        return {
            "model": "xgboost",
            "setting": setting,
            **params,
            "rounds": int(self.booster.num_boosted_rounds()),
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "classes": [int(c) for c in self.classes],
            "temperature": float(self.temperature),
            "location": "none",
        }


def _xgboost() -> Any:
    import xgboost  # lazy: 1-3 s of import that a network map never needs

    return xgboost


def xgboost_version() -> str:
    """The installed XGBoost's version (recorded in a tree bundle's ``versions``)."""
    return str(_xgboost().__version__)


def fit_booster(x: np.ndarray, y: np.ndarray, params: dict[str, Any], seed: int) -> tuple[Any, np.ndarray]:
    """Fit XGBoost (``hist`` trees, :func:`model.baselines.fit_predict_proba_baseline`'s setup) on
    float32 (N, F) features and int64 (N,) legend indices.

    Returns:
        (the ``xgboost.Booster``, int64 (K,) the classes present, in the booster's output order).
    """
    classes = np.unique(y)
    m = _xgboost().XGBClassifier(tree_method="hist", random_state=seed, n_jobs=-1, **params)
    m.fit(x, np.searchsorted(classes, y))
    return m.get_booster(), classes.astype(np.int64)


@dataclass
class TreeResult:
    """A fitted :class:`TreeEnsemble`, the setting it used with its parameters, the metrics
    stored in the bundle, and the int64 indices of its training rows.
    """

    trees: TreeEnsemble
    setting: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    train_rows: np.ndarray


def train_trees(
    data: TrainingData, n_classes: int, cfg: TrainConfig, setting: str = "paper", on_status: Any = None
) -> TreeResult:
    """Fit the XGBoost bundle's model on the training rows of :func:`model.train.split_rows`.

    Args:
        data: arrays from :func:`model.train.training_arrays` (features in stored units).
        n_classes: C, from the legend.
        cfg: the split settings (``level``, ``seed``, ``val_fraction``, ``val_split``,
            ``test_fraction``, ``calibrate``); the schedule fields are the network's and unused.
        setting: a :data:`SETTINGS` name.
        on_status: called with a message before each fit.

    Returns:
        The model (temperature fitted on the hold-out when ``cfg.calibrate``) and metrics as the
        network's (:func:`model.train.train_bridge`): row counts, ``class_prior``,
        train/hold-out/test accuracy, weighted F1 and ECE (``test_*`` on untouched cells, after
        calibration), ``temperature``; also ``xgboost_setting`` and, when tuned, the hold-out
        weighted F1 of each candidate (``xgboost_holdout_weighted_f1``).

    Raises:
        SchemaError: an unknown setting; ``tuned`` or calibration without a hold-out; fewer than
            two classes in the training rows.
    """
    if setting not in SETTINGS:
        raise SchemaError(f"`xgboost_setting` {setting!r} is unknown", f"Use one of {', '.join(SETTINGS)}")
    tr, va, te = split_rows(data, cfg)
    if (setting == "tuned" or cfg.calibrate) and not len(va):
        raise SchemaError(
            "the tuned setting and calibration need a hold-out",
            "Give a train config whose val_fraction is > 0 (the presets use 0.1)",
        )
    if len(np.unique(data.y[tr])) < 2:
        raise SchemaError("the training rows hold fewer than two classes", "Give a table with several classes")
    candidates = XGBOOST_GRID if setting == "tuned" else {setting: XGBOOST_GRID[setting]}
    fits: dict[str, TreeEnsemble] = {}
    scores: dict[str, float] = {}
    for name, params in candidates.items():
        if on_status is not None:
            on_status(f"fitting XGBoost ({name}: {params}) on {len(tr):,} rows")
        booster, classes = fit_booster(data.x[tr], data.y[tr], params, cfg.seed)
        fits[name] = TreeEnsemble(booster, classes, n_classes)
        if setting == "tuned":
            scores[name] = split_scores(fits[name].predict_proba(data.x[va]), data.y[va])["weighted_f1"]
    names = list(candidates)
    chosen = max(names, key=lambda n: (scores.get(n, 0.0), -names.index(n)))  # ties: the paper's first
    trees = fits[chosen]
    metrics = {**split_metrics(data, cfg, tr, va, te, n_classes), "xgboost_setting": chosen}
    if scores:
        metrics["xgboost_holdout_weighted_f1"] = scores
    for k, v in split_scores(trees.predict_proba(data.x[tr]), data.y[tr]).items():
        metrics[f"train_{k}"] = v
    if len(va):
        logits = trees.logits(data.x[va])  # T = 1: log p
        for k, v in split_scores(softmax(logits), data.y[va]).items():
            metrics[f"val_{k}"] = v
        if cfg.calibrate:
            t = fit_temperature(logits, data.y[va])
            trees.temperature = t
            metrics["temperature"] = t
            metrics["val_ece_calibrated"] = expected_calibration_error(softmax(logits / t), data.y[va])
    if len(te):  # after calibration: the model as shipped, on untouched rows
        for k, v in split_scores(trees.predict_proba(data.x[te]), data.y[te]).items():
            metrics[f"test_{k}"] = v
    return TreeResult(trees, chosen, dict(candidates[chosen]), metrics, np.asarray(tr, np.int64))


def save_trees(trees: TreeEnsemble, path: Path) -> None:
    """Write the booster in XGBoost's JSON format to ``path`` (the temperature and classes go to
    ``bundle.json``'s ``architecture``).
    """
    trees.booster.save_model(str(path))


def load_trees(path: Path, arch: Any, n_features: int, n_classes: int, mpath: Path) -> TreeEnsemble:
    """Load and check a bundle's tree model against its ``architecture`` record.

    Args:
        path: the ``trees.json`` file (its SHA-256 already checked).
        arch: ``bundle.json``'s ``architecture`` (``classes``, ``temperature``, ``n_features``).
        n_features, n_classes: the bundle's feature count and legend size.
        mpath: ``bundle.json``, named in errors.

    Raises:
        BundleError: XGBoost cannot read the file; the classes are not increasing legend indices
            matching the booster's outputs; the feature count or temperature is off.
    """
    if not isinstance(arch, dict):
        raise BundleError("'architecture' is not an object", bounds.RESTORE, path=mpath)
    classes = arch.get("classes")
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or not all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
        or sorted(set(classes)) != classes
        or classes[0] < 0
        or classes[-1] >= n_classes
    ):
        raise BundleError(
            f"architecture.classes = {str(classes)[:60]} is not an increasing list of legend indices "
            f"0..{n_classes - 1}",
            bounds.RESTORE,
            path=mpath,
        )
    temperature = bounds.check_temperature(arch.get("temperature", 1.0), mpath)
    xgb = _xgboost()
    try:
        booster = xgb.Booster(model_file=str(path))
        learner = json.loads(booster.save_config())["learner"]["learner_model_param"]
    except (xgb.core.XGBoostError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise BundleError(f"XGBoost cannot read it ({first})", bounds.RESTORE, path=path) from None
    outputs = int(learner.get("num_class", "0")) or 2
    if int(booster.num_features()) != n_features or arch.get("n_features") != n_features:
        raise BundleError(
            f"the tree model takes {booster.num_features()} features, bundle.json names {n_features}",
            bounds.RESTORE,
            path=path,
        )
    if outputs != len(classes):
        raise BundleError(
            f"the tree model has {outputs} outputs, architecture.classes names {len(classes)}",
            bounds.RESTORE,
            path=path,
        )
    return TreeEnsemble(booster, np.asarray(classes, np.int64), n_classes, temperature)
