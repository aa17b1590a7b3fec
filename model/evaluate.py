"""Evaluation: a saved bundle on a FeatureTable, and the paper's scenarios (EXTRAP, blocked
EXTRAP, LORO and the Table 12 ablation) for the neural presets and the baselines.

A scenario run writes, in ``out_dir``:

- ``<scenario>_runs.csv``: one row per (split, model, seed) with accuracy, weighted F1, ECE,
  sizes and the confusion matrix (JSON); rewritten atomically after every run, and read back on
  a restart so finished runs are not redone;
- ``<scenario>_summary.md`` / ``_summary.csv``: weighted F1 and accuracy in %, mean ± 95 % CI over
  seeds, per split and model, and for LORO/ablation the mean over regions;
- ``<scenario>_per_class.csv``: F1, user's and producer's accuracy per class and model;
- ``<scenario>_predictions.parquet``: every run's test predictions, one row per test point
  (:data:`model.differences.PREDICTION_COLUMNS` and the settings' key);
- ``<scenario>_differences.md`` / ``.csv``: the first neural model (else the first model) minus
  each other model, with the seed interval and the paired cell-bootstrap interval
  (:mod:`model.differences`, issue #29);
- ``<scenario>_confusion_<model>.png``: the confusion matrix summed over splits and seeds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model.augment import PhysicalAugmentation
from model.baselines import BASELINES, XGBOOST_GRID, fit_predict_proba_baseline
from model.bundle import load_bundle
from model.calibration import apply_temperature, expected_calibration_error, fit_temperature, log_probabilities
from model.differences import PREDICTION_COLUMNS, difference_table, differences_markdown
from model.importance import rf_importance
from model.infer import predict_proba
from model.metrics import classification_metrics, mean_ci95
from model.plots import confusion_png
from model.presets import ABLATION, CANDIDATES, DEFAULT, PRESETS, run_config
from model.priors import Adaptation, adaptation_from_label, choose_adaptation
from model.scenarios import LORO_AGGREGATES, MIN_TEST_SAMPLES, SIZE_WEIGHTED, Split, extrap_blocked, extrap_random, loro
from model.train import TrainConfig, TrainingData, holdout_split, split_rows, train_bridge, training_arrays
from model.tuning import (
    INNER_HOLDOUTS,
    choose_preset,
    choose_xgboost,
    inner_description,
    inner_holdout,
    inner_region_split,
    load_choices,
    write_choice,
)
from pipeline.core.atomic import atomic_path
from pipeline.core.bioregion import REGIONS
from pipeline.core.confusion import class_accuracies
from pipeline.core.contract import compare_features
from pipeline.core.errors import SchemaError
from pipeline.core.hashing import file_sha256
from pipeline.core.legend import legend_for
from pipeline.table import read_feature_table, table_spec

TUNED_XGBOOST = "xgboost-tuned"
"""XGBoost with its setting chosen per split among :data:`model.baselines.XGBOOST_GRID` on the
inner hold-out ``nested`` uses (:func:`model.tuning.choose_xgboost`)."""
MODELS = (*PRESETS, "nested", *BASELINES, TUNED_XGBOOST)
"""Models of ``--models``: the neural presets, ``nested`` (the best of the candidate presets,
chosen per split on training-side data), the baselines and the tuned XGBoost."""
PROTOCOL = 6
"""Bumped when the protocol changes (2: per-seed subsamples, train-side selection, EM variants;
3: ``nested`` also chooses coordinates on/off, runs store their test predictions; 4: ``+em`` is
Dirichlet-MAP EM with a guard, its setting chosen per split on inner held-out regions; 5: those
inner regions are drawn per split and seed, not per seed alone; 6: ``adapt_priors`` also reports
``+rt``, the temperature those inner regions ask for)."""
DEFAULT_MODELS = ("bridge-lc", "eulc", "mlp", "rf", "xgboost", "svm")
SCENARIOS = ("extrap", "extrap-blocked", "loro", "ablation")


def evaluate_bundle(bundle_dir: Path, table_path: Path) -> dict[str, Any]:
    """Metrics of a saved bundle on the labelled rows of a FeatureTable it did not learn from.

    When ``table_path`` is the bundle's own training table (its SHA-256 is the bundle's
    ``data_hash``), the rows are split again as training did (:func:`model.train.split_rows` with
    the bundle's stored settings): the top-level metrics are those of the untouched test rows
    only, ``by_split`` has the training, hold-out and untouched rows separately, and ``warning``
    says so; scoring a model on its own training rows would overstate it. For another table every
    labelled row is scored (``warning`` says that rows shared with the training table cannot be
    told apart).

    Returns:
        :func:`model.metrics.classification_metrics` (confusion rows = map, columns = reference)
        plus ``ece`` (expected calibration error, 15 bins), ``dropped`` (rows left out and why),
        ``rows_scored`` and ``warning``; ``by_split`` for the training table.

    Raises:
        SchemaError: the table lacks features the bundle needs (all are named).
        ContractError: the table's features were computed otherwise than the bundle's.
    """
    b = load_bundle(bundle_dir)
    table, meta = read_feature_table(table_path)
    # the table's columns must mean what the bundle learnt (table -> evaluate seam)
    compare_features(
        b.feature_spec(),
        table_spec(meta, f"table {table_path}"),
        b.features,
        f"bundle {bundle_dir}",
        f"table {table_path}",
    )
    missing = [f for f in b.features if f not in table.columns]
    if missing:
        raise SchemaError(
            f"the table lacks {len(missing)} feature(s) the bundle needs: {missing[:8]}",
            "Evaluate on a table built with the bundle's spec",
            path=table_path,
        )
    data = training_arrays(table, b.features, b.legend.level)
    prob = b.predict_proba(data.x, data.lonlat)

    def scores(rows: np.ndarray) -> dict[str, Any]:
        return {
            **classification_metrics(data.y[rows], prob[rows].argmax(1), b.legend.names),
            "ece": expected_calibration_error(prob[rows], data.y[rows]),
        }

    every = np.arange(len(data.y))
    own = b.meta.get("data_hash") == file_sha256(table_path)[:16] and isinstance(b.meta.get("train_config"), dict)
    if not own:
        return {
            **scores(every),
            "dropped": data.dropped,
            "rows_scored": "every labelled row",
            "warning": "this table is not the bundle's training table (data_hash differs): every row is "
            "scored; rows it shares with the training table cannot be told apart",
        }
    tr, va, te = split_rows(data, TrainConfig(**b.meta["train_config"]))
    by_split = {
        name: ({**scores(rows), "n_rows": len(rows)} if len(rows) else {"n_rows": 0})
        for name, rows in (("training", tr), ("hold_out", va), ("untouched", te))
    }
    if len(te):
        return {
            **scores(te),
            "dropped": data.dropped,
            "by_split": by_split,
            "rows_scored": f"the {len(te):,} untouched test rows of the bundle's own training table",
            "warning": f"this is the bundle's training table: its {len(tr):,} training and {len(va):,} hold-out "
            f"rows are scored apart (by_split); the metrics are of the {len(te):,} untouched rows",
        }
    if not len(va):
        raise SchemaError(
            f"is the bundle's own training table and every row of it was trained on ({len(tr):,})",
            "Evaluate on another table (e.g. another year or country), or retrain with `test_fraction` > 0",
            path=table_path,
        )
    return {
        **scores(va),
        "dropped": data.dropped,
        "by_split": by_split,
        "rows_scored": f"the {len(va):,} hold-out rows of the bundle's own training table",
        "warning": f"this is the bundle's training table and it kept no untouched rows: the metrics are of its "
        f"{len(va):,} hold-out rows, which chose the epoch and the temperature (optimistic); its "
        f"{len(tr):,} training rows are scored apart (by_split)",
    }


SHIFT_VARIANTS = ("em", "rt")
"""What ``adapt_priors`` adds per model with probabilities, from one refit on inner held-out
regions (:func:`inner_looks`): ``+em`` (:func:`inner_adaptation`) and ``+rt``
(:func:`region_temperature`)."""

TS_BASELINES = ("rf", "xgboost")
"""The baselines with probabilities, reported temperature-scaled too with ``calibrate_baselines``."""


def baseline_temperature_scaled(
    model: str, d: TrainingData, split: Split, n_classes: int, cfg: TrainConfig, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """A baseline calibrated as the network is (issue #29 part 2): fitted on the split's training
    rows less the blocked hold-out the default preset (``eulc``) carves from them for epoch
    selection and calibration (:func:`model.train.holdout_split`, the same rows for the same seed),
    then temperature-scaled on that hold-out (:func:`model.calibration.fit_temperature` on
    ``log p``). The test rows are used for nothing but the returned predictions.

    Returns:
        (test classes (N,) int, test probabilities (N, C) float64, the temperature T).
    """
    side = d.take(split.train)
    kept, held = holdout_split(side, run_config(DEFAULT, cfg, seed))
    x_eval = np.concatenate([side.x[held], d.x[split.test]])
    _, prob = fit_predict_proba_baseline(model, side.x[kept], side.y[kept], x_eval, seed, n_classes)
    assert prob is not None  # TS_BASELINES give probabilities
    logits = log_probabilities(prob)
    t = fit_temperature(logits[: len(held)], side.y[held])
    test_prob = apply_temperature(logits[len(held) :], t)
    return np.asarray(test_prob.argmax(1)), test_prob, t


@dataclass(frozen=True)
class InnerLooks:
    """A model refitted on one split's training side less some whole bioregions, and its
    posteriors on those held-out inner regions (issue #29 parts 5 and the ECE target): what the
    shift to an unseen region does to it, measured without the split's test rows.

    Attributes:
        prob: float (N, C) posteriors of the held-out inner rows (the network's already
            temperature-scaled on its own blocked hold-out; a tree's raw).
        y: int (N,) their Level-1/2 class indices.
        region: int (N,) their EEA bioregion indices (:data:`pipeline.core.bioregion.REGIONS`).
        prior: float (C,) the refit's training class priors (sum 1).
        names: the held-out regions' names, sorted by index.
    """

    prob: np.ndarray
    y: np.ndarray
    region: np.ndarray
    prior: np.ndarray
    names: list[str]

    def per_region(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(posteriors, classes) of each held-out region: the looks EM's setting is scored on."""
        return [(self.prob[self.region == r], self.y[self.region == r]) for r in np.unique(self.region)]


def inner_looks(
    model: str,
    d: TrainingData,
    split: Split,
    n_classes: int,
    cfg: TrainConfig,
    seed: int,
    aug: PhysicalAugmentation | None,
) -> InnerLooks:
    """``model`` fitted on ``split``'s training side less the whole bioregions
    :func:`model.tuning.inner_region_split` draws for this split and seed, and its posteriors on
    them. The split's test rows are never read.

    Args:
        model: a preset or a baseline with probabilities (``nested``'s chosen preset is passed
            as itself; ``xgboost-tuned`` as ``xgboost``).

    Raises:
        ValueError: the training side has fewer than two regions with enough rows
            (:func:`model.tuning.inner_region_split`).
    """
    side = d.take(split.train)
    fit, held = inner_region_split(side, seed, split.name)
    inner = Split(f"{split.name}/inner-regions", split.train[fit], split.train[held])
    _, prob = _fit_proba(model, d, inner, n_classes, cfg, seed, aug)
    assert prob is not None  # callers pass models with probabilities
    prior = np.bincount(d.y[inner.train], minlength=n_classes) / len(inner.train)
    region = side.region[held]
    return InnerLooks(prob, side.y[held], region, prior, [REGIONS[int(r)] for r in np.unique(region)])


def inner_adaptation(looks: InnerLooks) -> tuple[Adaptation, dict[str, float]]:
    """EM's strength and guard for one split, chosen on its inner held-out regions only (issue #29
    part 5): :func:`model.priors.choose_adaptation` scores the grid on each held-out region.

    Returns:
        (the chosen :class:`model.priors.Adaptation`, {setting label: size-weighted gain, points}).
    """
    return choose_adaptation(looks.per_region(), looks.prior)


def region_temperature(looks: InnerLooks) -> float:
    """The temperature that calibrates a model for an unseen region (issue #29, the ECE target):
    fitted (:func:`model.calibration.fit_temperature`, NLL) on the pooled posteriors of the inner
    held-out regions, on top of any calibration the model already has. A network's own
    temperature is fitted on a blocked hold-out of the regions it trains on, so it leaves it
    over-confident where the features shift; this factor (> 1 there) is what that shift asked of
    a refit without those regions, and it is applied to the split's final model as
    ``softmax(log p / T)`` (``<model>+rt``; the argmax, so the weighted F1, is unchanged).

    Returns:
        T > 0 (1 = the inner regions need no further softening).
    """
    return fit_temperature(log_probabilities(looks.prob), looks.y)


def _columns(d: TrainingData, cols: np.ndarray) -> TrainingData:
    return TrainingData(d.x[:, cols], d.lonlat, d.y, d.region, d.dropped, d.cells)


def _fit_proba(
    model: str,
    d: TrainingData,
    split: Split,
    n_classes: int,
    cfg: TrainConfig,
    seed: int,
    aug: PhysicalAugmentation | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted classes of the test rows and their probabilities (N, C), or None for a model
    without probabilities (SVM).
    """
    if model in BASELINES:
        pred, prob = fit_predict_proba_baseline(
            model, d.x[split.train], d.y[split.train], d.x[split.test], seed, n_classes
        )
        return pred, prob
    res = train_bridge(d.take(split.train), n_classes, run_config(model, cfg, seed), augmentation=aug)
    prob = predict_proba(res.model, res.normalizer.transform(d.x[split.test]), d.lonlat[split.test], cfg.device)
    return np.asarray(prob.argmax(1)), prob


def scenario_splits(scenario: str, d: TrainingData, seed: int, regions: list[str] | None = None) -> list[Split]:
    """The splits of ``extrap``, ``extrap-blocked``, ``loro`` or ``ablation`` (= LORO) for one seed."""
    if scenario == "extrap":
        return [extrap_random(d.y, seed)]
    if scenario == "extrap-blocked":
        return [extrap_blocked(d.y, d.cells, seed)]
    if scenario in ("loro", "ablation"):
        names = np.array(REGIONS)[d.region]
        present = set(names.tolist())
        return [loro(d.y, names, r) for r in (regions or [r for r in REGIONS if r in present])]
    raise SchemaError(f"unknown scenario {scenario!r}", f"Use one of {SCENARIOS}")


def _load_done(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""]) if path.is_file() else pd.DataFrame()


def seed_rows(n: int, max_rows: int | None, seed: int) -> np.ndarray:
    """The rows a seed uses: all of them, or a random subsample of ``max_rows`` drawn with
    this seed (so the seeds' confidence interval covers the subsample too).
    """
    if not max_rows or n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))


def run_scenario(
    table_path: Path,
    features: list[str],
    scenario: str,
    out_dir: Path,
    models: tuple[str, ...] = DEFAULT_MODELS,
    seeds: tuple[int, ...] = (0,),
    cfg: TrainConfig | None = None,
    regions: list[str] | None = None,
    max_rows: int | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    adapt_priors: bool = False,
    select_k: int | None = None,
    on_plan: Callable[[int], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    calibrate_baselines: bool = False,
    inner: str = "cells",
) -> pd.DataFrame:
    """Run every model on every split and seed and write the tables (module docstring).

    Args:
        table_path: FeatureTable.
        features: feature names (a FeatureSelection's).
        scenario: one of :data:`SCENARIOS`; ``ablation`` runs the Table 12 variants on LORO and
            ignores ``models``.
        out_dir: where the tables go. Runs already in ``<scenario>_runs.csv`` with the same
            settings are kept, not redone (an interrupted run resumes); runs with other settings
            stay in the file (the summaries report this run's settings only).
        models: any of :data:`MODELS`; ``nested`` chooses among :data:`model.presets.CANDIDATES`
            per split on a blocked hold-out inside the split's training side
            (:mod:`model.tuning`; recorded in ``<scenario>_selection.csv``).
        seeds: seeds (the paper-style report uses ≥ 5).
        cfg: schedule, level and device of the neural models (default: the paper's, 500 epochs).
        regions: LORO regions (default: all present).
        max_rows: a random subsample of the usable rows, drawn per seed (quick runs); None = all.
        on_result: called with each result row (progress).
        adapt_priors: also report ``<model>+em`` for every model with probabilities: its test
            posteriors adapted to the test area's class priors, estimated by Dirichlet-MAP EM on
            the test rows' features alone (:mod:`model.priors`; labels unused), with the strength
            and guard chosen per split on inner held-out bioregions of its training side
            (:func:`inner_adaptation`; recorded in ``<scenario>_selection.csv``); and
            ``<model>+rt``: its test posteriors softened by the temperature the same inner
            regions ask for (:func:`region_temperature`; same weighted F1, another ECE).
        select_k: fit RF importance on each split's training rows and keep the top k features
            for every model of that split (feature selection never sees the test rows).
        on_plan: called once, before the first run, with the number of result rows still to
            compute (for a progress bar with the time left).
        on_start: called before each model is fitted, with what it is (``rf on loro-Alpine,
            seed 0``), so a long fit is not a silent phase.
        calibrate_baselines: also report ``rf+ts`` and ``xgboost+ts``: the baseline fitted on the
            rows the network trains on and temperature-scaled on the blocked hold-out the network
            calibrates on (:func:`baseline_temperature_scaled`), so ECE compares like with like.
        inner: what ``nested`` and ``xgboost-tuned`` choose on (:data:`model.tuning.INNER_HOLDOUTS`):
            blocked ``cells`` of the training side, or whole ``regions`` of it (the shift a LORO
            test region brings; drawn per split and seed, as ``adapt_priors``' regions are).

    Returns:
        One row per (split, model, seed).

    Raises:
        SchemaError: unknown scenario, model or ``inner``, a region absent, a class with < 2 samples.
    """
    cfg = cfg or TrainConfig()
    if inner not in INNER_HOLDOUTS:
        raise SchemaError(f"`inner` {inner!r} is not an inner hold-out", f"Use one of {', '.join(INNER_HOLDOUTS)}")
    if scenario == "ablation":
        models = tuple(ABLATION)
    unknown = [m for m in models if m not in MODELS and m not in ABLATION]
    if unknown:
        raise SchemaError(f"unknown model(s) {unknown}", f"Use any of {MODELS}")
    table, meta = read_feature_table(table_path)
    d_all = training_arrays(table, features, cfg.level)
    tspec = table_spec(meta, f"table {table_path}")
    names = legend_for(cfg.level).names
    out_dir.mkdir(parents=True, exist_ok=True)
    runs_path = out_dir / f"{scenario}_runs.csv"
    sel_path = out_dir / f"{scenario}_selection.csv"
    settings = json.dumps(
        {
            "features": features,
            "level": cfg.level,
            "epochs": cfg.epochs,
            "lr": cfg.lr,
            "ema": cfg.ema_momentum,
            "max_rows": max_rows,
            "n_rows": len(d_all.y),
            "select_k": select_k,
            "inner": inner,
            "protocol": PROTOCOL,
        },
        sort_keys=True,
    )
    done = _load_done(runs_path)
    preds_path = out_dir / f"{scenario}_predictions.parquet"
    settings_key = hashlib.sha256(settings.encode()).hexdigest()[:16]
    preds_other, preds_same = _load_predictions(preds_path, settings_key)
    rows: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []  # runs of other settings: kept in the file, never dropped
    if len(done):
        same = done["settings"] == settings if "settings" in done.columns else np.zeros(len(done), bool)
        rows = [{str(k): v for k, v in r.items()} for r in done[same].to_dict("records")]
        other = [{str(k): v for k, v in r.items()} for r in done[~same].to_dict("records")]
    have = {(r["split"], r["model"], int(r["seed"])) for r in rows}
    if preds_same:  # keep the predictions of finished runs only (a run cut between the two writes is redone)
        p0 = preds_same[0]
        done_key = [(sp, m, int(sd)) in have for sp, m, sd in zip(p0["split"], p0["model"], p0["seed"], strict=True)]
        preds_same = [p0[np.asarray(done_key, bool)]]
    chosen = load_choices(sel_path, settings)
    # XGBoost has no row or column sampling: the same split (LORO on all rows, every seed) gives the
    # same trees, so it is fitted once per split key
    xgb_done: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    if on_plan is not None and seeds:
        n_splits = len(
            list(scenario_splits(scenario, d_all.take(seed_rows(len(d_all.y), max_rows, seeds[0])), seeds[0], regions))
        )
        per_split = (
            len(models)
            + (len(SHIFT_VARIANTS) * sum(m != "svm" for m in models) if adapt_priors else 0)
            + (sum(m in TS_BASELINES for m in models) if calibrate_baselines else 0)
        )
        on_plan(max(len(seeds) * n_splits * per_split - len(rows), 0))
    for seed in seeds:
        sub = seed_rows(len(d_all.y), max_rows, seed)
        d = d_all.take(sub)
        for split in scenario_splits(scenario, d, seed, regions):
            todo = [
                m
                for m in models
                if (split.name, m, seed) not in have
                or (adapt_priors and m != "svm" and {(split.name, f"{m}+{v}", seed) for v in SHIFT_VARIANTS} - have)
                or (m in TS_BASELINES and calibrate_baselines and (split.name, f"{m}+ts", seed) not in have)
            ]
            if not todo:
                continue
            ds, feats = d, features
            if select_k:
                cols = train_side_selection(ds, split, select_k, seed)
                ds, feats = _columns(ds, cols), [features[i] for i in cols]
            aug = PhysicalAugmentation.from_spec(tspec, feats)
            # the split's identity: its training and test rows and features (names repeat across seeds)
            key = hashlib.sha256(
                split.train.tobytes() + b"|" + split.test.tobytes() + ",".join(feats).encode()
            ).hexdigest()[:16]
            fitted: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}  # this split's models, for nested
            if adapt_priors or (inner == "regions" and {"nested", TUNED_XGBOOST} & set(todo)):
                try:  # inner held-out regions: refused in one line before anything is fitted
                    inner_region_split(ds.take(split.train), seed, split.name)
                except ValueError as e:
                    raise SchemaError(
                        f"{split.name}: {e}", "Use `inner` cells without `adapt_priors`, or more rows (`max_rows`)"
                    ) from e
            for model in todo:
                if on_start is not None:
                    on_start(f"{model} on {split.name}, seed {seed}")
                if model == "nested":
                    if key not in chosen:  # chosen once per split, on its training side only
                        side = ds.take(split.train)
                        winner, scores = choose_preset(
                            side, CANDIDATES, cfg, seed, len(names), aug, holdout=inner, fold=split.name
                        )
                        chosen[key] = winner
                        how = inner_description(inner_holdout(side, seed, inner, split.name)[1], inner)
                        write_choice(sel_path, settings, split.name, key, seed, winner, scores, how)
                    # the winner may have run as a model of its own: the same training, reused
                    pred, prob = fitted.get(chosen[key]) or _fit_proba(
                        chosen[key], ds, split, len(names), cfg, seed, aug
                    )
                elif model == TUNED_XGBOOST:
                    xkey = f"{key}:{TUNED_XGBOOST}:{seed}"  # the inner split is drawn with the seed
                    if xkey not in chosen:
                        side = ds.take(split.train)
                        winner, scores = choose_xgboost(side, seed, len(names), inner, split.name)
                        chosen[xkey] = winner
                        how = inner_description(inner_holdout(side, seed, inner, split.name)[1], inner)
                        write_choice(sel_path, settings, split.name, xkey, seed, winner, scores, how)
                    pred, prob = fit_predict_proba_baseline(
                        "xgboost",
                        ds.x[split.train],
                        ds.y[split.train],
                        ds.x[split.test],
                        seed,
                        len(names),
                        XGBOOST_GRID[chosen[xkey]],
                    )
                elif model == "xgboost" and key in xgb_done:
                    pred, prob = xgb_done[key]
                else:
                    pred, prob = _fit_proba(model, ds, split, len(names), cfg, seed, aug)
                    if model == "xgboost":
                        xgb_done[key] = (pred, prob)
                fitted[model] = (pred, prob)
                variants = [(model, pred, prob)]
                shift = {(split.name, f"{model}+{v}", seed) for v in SHIFT_VARIANTS} - have
                if adapt_priors and prob is not None and shift:
                    akey, tkey = (f"{key}:{model}+{v}:{seed}" for v in SHIFT_VARIANTS)  # drawn with the seed
                    if akey not in chosen or tkey not in chosen:
                        kind = chosen[key] if model == "nested" else "xgboost" if model == TUNED_XGBOOST else model
                        looks = inner_looks(kind, ds, split, len(names), cfg, seed, aug)
                        where = f"held-out regions: {', '.join(looks.names)} ({kind} fitted on the others)"
                        setting, gains = inner_adaptation(looks)
                        chosen[akey] = setting.label
                        write_choice(
                            sel_path, settings, f"{split.name} ({model}+em)", akey, seed, setting.label, gains, where
                        )
                        chosen[tkey] = f"{region_temperature(looks):.6f}"
                        write_choice(
                            sel_path, settings, f"{split.name} ({model}+rt)", tkey, seed, chosen[tkey], {}, where
                        )
                    prior = np.bincount(ds.y[split.train], minlength=len(names)) / len(split.train)
                    ad = adaptation_from_label(chosen[akey]).apply(prob, prior)
                    rt = apply_temperature(log_probabilities(prob), float(chosen[tkey]))
                    variants += [(f"{model}+em", ad.argmax(1), ad), (f"{model}+rt", rt.argmax(1), rt)]
                if calibrate_baselines and model in TS_BASELINES and (split.name, f"{model}+ts", seed) not in have:
                    # the hold-out is drawn with the seed, so even XGBoost's +ts differs between seeds
                    ts_pred, ts_prob, _ = baseline_temperature_scaled(model, ds, split, len(names), cfg, seed)
                    variants.append((f"{model}+ts", ts_pred, ts_prob))
                for name, p, pb in variants:
                    if (split.name, name, seed) in have:
                        continue
                    m = classification_metrics(ds.y[split.test], p, names)
                    row = {
                        "scenario": scenario,
                        "level": cfg.level,
                        "split": split.name,
                        "model": name,
                        "seed": seed,
                        "accuracy": m["overall_accuracy"],
                        "weighted_f1": m["weighted_f1"],
                        "ece": expected_calibration_error(pb, ds.y[split.test]) if pb is not None else float("nan"),
                        "n_train": len(split.train),
                        "n_test": len(split.test),
                        "flags": "; ".join(split.flags),
                        "confusion": json.dumps({"rows": "map", "matrix": m["confusion"]["matrix"]}),
                        "chosen": (
                            chosen.get(f"{key}:{name}:{seed}", "")
                            if name.endswith(tuple(f"+{v}" for v in SHIFT_VARIANTS))
                            else chosen.get(key, "")
                            if model == "nested"
                            else chosen.get(f"{key}:{TUNED_XGBOOST}:{seed}", "")
                            if model == TUNED_XGBOOST
                            else ""
                        ),
                        "settings": settings,
                    }
                    rows.append(row)
                    have.add((split.name, name, seed))
                    preds_same.append(_prediction_frame(split.name, name, seed, sub[split.test], ds, split, p))
                    # predictions first: a run is only counted done once both files hold it
                    _write_predictions(preds_path, preds_other, preds_same, settings_key)
                    _write_runs(runs_path, other + rows)
                    if on_result:
                        on_result(row)
    wanted = (
        set(models)
        | ({f"{m}+{v}" for m in models if m != "svm" for v in SHIFT_VARIANTS} if adapt_priors else set())
        | ({f"{m}+ts" for m in models if m in TS_BASELINES} if calibrate_baselines else set())
    )
    df = pd.DataFrame(rows)
    df = df[df["seed"].isin(seeds) & df["model"].isin(wanted)].reset_index(drop=True)
    left_out = {k: v for k, v in d_all.dropped.items() if v}
    notes = [
        f"{len(d_all.y):,} usable rows"
        + (f"; rows left out (dropped, not imputed): {left_out}" if left_out else "; no rows left out"),
        (
            f"each seed uses its own random subsample of {max_rows:,} rows"
            if max_rows and len(d_all.y) > max_rows
            else "every seed uses all usable rows; XGBoost (no row or column sampling) is deterministic: "
            "where a split's rows are the same for every seed (LORO), its seeds repeat one fit and its CI is 0"
        ),
    ]
    if select_k:
        notes.append(f"features: top {select_k} by RF importance fitted on each split's training rows")
    if TUNED_XGBOOST in models:
        notes.append(
            f"{TUNED_XGBOOST}: per split and seed, the best of {list(XGBOOST_GRID)} (model.baselines.XGBOOST_GRID) "
            f"on the same inner hold-out as nested ({sel_path.name})"
        )
    if "nested" in models:
        notes.append(
            f"nested: per split, the best of {list(CANDIDATES)} on "
            + (
                "whole held-out bioregions of the training side, scored by their size-weighted weighted F1"
                if inner == "regions"
                else "a blocked hold-out of whole EEA 100 km cells inside the training side"
            )
            + f" ({sel_path.name})"
        )
    preds = pd.concat(preds_same, ignore_index=True) if preds_same else pd.DataFrame(columns=PREDICTION_COLUMNS)
    preds = preds[preds["seed"].isin(seeds) & preds["model"].isin(wanted)]
    reference = next((m for m in models if m not in (*BASELINES, TUNED_XGBOOST)), models[0]) if models else ""
    notes.append(
        f"paired differences ({scenario}_differences.md): {reference} − each other model, with the seed "
        "interval and a cell-bootstrap interval (whole EEA 100 km test cells resampled)"
    )
    write_reports(df, scenario, names, out_dir, notes=notes)
    write_differences(preds, scenario, len(names), reference, out_dir)
    return df


def _load_predictions(path: Path, settings_key: str) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """A scenario's stored test predictions: those of other settings (kept in the file, never
    dropped) and those of these settings (resumed).
    """
    if not path.is_file():
        return pd.DataFrame(), []
    p = pd.read_parquet(path)
    same = p["settings_key"] == settings_key
    return p[~same], [p[same].drop(columns="settings_key")]


def _prediction_frame(
    split: str, model: str, seed: int, rows: np.ndarray, d: TrainingData, s: Split, pred: np.ndarray
) -> pd.DataFrame:
    """One run's test predictions as rows of :data:`PREDICTION_COLUMNS`."""
    cells = d.cells[s.test].astype(str) if len(d.cells) == len(d.y) else np.full(len(s.test), "")
    return pd.DataFrame(
        {
            "split": split,
            "model": model,
            "seed": seed,
            "row": rows.astype(np.int64),
            "cell": cells,
            "y_true": d.y[s.test].astype(np.int16),
            "y_pred": np.asarray(pred).astype(np.int16),
        }
    )


def _write_predictions(path: Path, other: pd.DataFrame, same: list[pd.DataFrame], settings_key: str) -> None:
    frames = [other] if len(other) else []
    frames += [f.assign(settings_key=settings_key) for f in same]
    with atomic_path(path) as tmp:
        pd.concat(frames, ignore_index=True).to_parquet(tmp, index=False)


def write_differences(
    preds: pd.DataFrame, scenario: str, n_classes: int, reference: str, out_dir: Path
) -> pd.DataFrame:
    """Write ``<scenario>_differences.csv`` and ``.md``: ``reference`` − every other model with
    seed and cell-bootstrap intervals (:func:`model.differences.difference_table`); returns the table.
    """
    table = difference_table(preds, n_classes, reference) if len(preds) else pd.DataFrame()
    with atomic_path(out_dir / f"{scenario}_differences.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out_dir / f"{scenario}_differences.md") as tmp:
        tmp.write_text(differences_markdown(table, scenario), encoding="utf-8")
    return table


def train_side_selection(d: TrainingData, split: Split, k: int, seed: int) -> np.ndarray:
    """Column indices of the top-k features by RF importance (MDI, one seed) fitted on the
    split's training rows only, in importance order.
    """
    names = [str(i) for i in range(d.x.shape[1])]
    imp = rf_importance(d.x[split.train], d.y[split.train], d.cells[split.train], names, "mdi", (seed,))
    return np.asarray([int(n) for n in imp.ranking()[:k]], np.int64)


def _write_runs(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def write_reports(
    df: pd.DataFrame, scenario: str, class_names: list[str], out_dir: Path, notes: list[str] | None = None
) -> None:
    """Write the summary (Markdown + CSV), per-class CSV and confusion PNGs of a scenario;
    ``notes`` are printed under the Markdown table.
    """
    summary = summary_table(df)
    with atomic_path(out_dir / f"{scenario}_summary.csv") as tmp:
        summary.to_csv(tmp, index=False)
    with atomic_path(out_dir / f"{scenario}_summary.md") as tmp:
        tmp.write_text(summary_markdown(df, scenario) + "".join(f"\n{n}\n" for n in notes or []), encoding="utf-8")
    per_class = per_class_table(df, class_names)
    with atomic_path(out_dir / f"{scenario}_per_class.csv") as tmp:
        per_class.to_csv(tmp, index=False)

    for model, g in df.groupby("model", sort=False):
        cm = _summed_confusion(g)
        slug = str(model).replace(" ", "_").replace("+", "plus").replace("(", "").replace(")", "")
        confusion_png(
            cm,
            class_names,
            out_dir / f"{scenario}_confusion_{slug}.png",
            title=f"{scenario}: {model} ({g['seed'].nunique()} seed(s), {g['split'].nunique()} split(s))",
        )


def _summed_confusion(g: pd.DataFrame) -> np.ndarray:
    """The runs' confusion matrices summed, rows = map, columns = reference (a run recorded by an
    eulc before issue #26 stored a bare matrix with rows = reference: it is transposed).
    """

    def one(c: str) -> np.ndarray:
        v = json.loads(c)
        return np.asarray(v["matrix"]) if isinstance(v, dict) else np.asarray(v).T

    return np.sum([one(c) for c in g["confusion"]], axis=0)


def per_class_table(df: pd.DataFrame, class_names: list[str]) -> pd.DataFrame:
    """Per model and class: F1, user's accuracy (precision) and producer's accuracy (recall)
    of the confusion matrix summed over splits and seeds, and the reference support.
    """
    out = []
    for model, g in df.groupby("model", sort=False):
        # runs store sklearn matrices: rows = reference
        acc = class_accuracies(_summed_confusion(g), class_names, rows="reference", undefined=float("nan"))
        for name in class_names:
            r = acc[name]
            out.append(
                {
                    "model": model,
                    "class": name,
                    "f1": r["f1"],
                    "users_accuracy": r["users_accuracy"],
                    "producers_accuracy": r["producers_accuracy"],
                    "support": r["reference_total"],
                }
            )
    return pd.DataFrame(out)


def _loro_aggregate(per_split: pd.DataFrame, name: str) -> pd.DataFrame:
    """Per seed, one LORO aggregate of weighted F1, accuracy and ECE over the regions."""
    g = per_split
    if name.startswith("mean (n"):
        g = g[g["n_test"] >= MIN_TEST_SAMPLES]
    out = []
    for seed, s in g.groupby("seed"):
        w = s["n_test"].to_numpy(float) if name == SIZE_WEIGHTED else np.ones(len(s))
        row: dict[str, Any] = {"seed": seed, "n_test": int(s["n_test"].sum())}
        for k in ("weighted_f1", "accuracy", "ece"):
            v = s[k].to_numpy(float)
            ok = ~np.isnan(v)
            row[k] = float(np.average(v[ok], weights=w[ok])) if ok.any() else float("nan")
        out.append(row)
    return pd.DataFrame(out)


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per split and model (and, for LORO, the three aggregates of :data:`LORO_AGGREGATES`):
    mean and 95 % CI half-width over seeds of weighted F1, accuracy and ECE, in %.
    """
    out = []

    def stats(split: str, model: str, g: pd.DataFrame) -> dict[str, Any]:
        row: dict[str, Any] = {"split": split, "model": model, "seeds": int(g["seed"].nunique())}
        for k in ("weighted_f1", "accuracy", "ece"):
            m, h = mean_ci95(g[k].to_numpy(dtype=float) * 100)
            row[k], row[f"{k}_ci95"] = m, h
        row["n_test"] = int(g["n_test"].iloc[0]) if len(g) else 0
        return row

    for (split, model), g in df.groupby(["split", "model"], sort=False):
        out.append(stats(str(split), str(model), g))
    if df["split"].str.startswith("loro-").any():
        for name in LORO_AGGREGATES:
            for model, g in df.groupby("model", sort=False):
                agg = _loro_aggregate(g, name)
                if len(agg):
                    out.append(stats(name, str(model), agg))
    return pd.DataFrame(out)


def summary_markdown(df: pd.DataFrame, scenario: str) -> str:
    """A paper-style Markdown table: per split and model, weighted F1 and accuracy in %
    (mean ± 95% CI over seeds); for LORO/ablation also the mean over regions.
    """
    s = summary_table(df)
    level = str(df["level"].iloc[0]) if "level" in df.columns and len(df) else ""
    lines = [
        f"# {scenario} ({level}): weighted F1 / accuracy / ECE (%), mean ± 95% CI over {df['seed'].nunique()} seed(s)",
        "",
        "| split | model | weighted F1 | accuracy | ECE | n test | flags |",
        "|---|---|---|---|---|---|---|",
    ]

    def fmt(m: float, h: float) -> str:
        if np.isnan(m):
            return "–"
        return f"{m:.2f}" + ("" if np.isnan(h) else f" ± {h:.2f}")

    flags = df.groupby("split")["flags"].first().fillna("").to_dict()
    for r in s.to_dict("records"):
        lines.append(
            f"| {r['split']} | {r['model']} | {fmt(r['weighted_f1'], r['weighted_f1_ci95'])} | "
            f"{fmt(r['accuracy'], r['accuracy_ci95'])} | {fmt(r['ece'], r['ece_ci95'])} | "
            f"{int(r['n_test']):,} | {flags.get(r['split'], '')} |"
        )
    return "\n".join(lines) + "\n"
