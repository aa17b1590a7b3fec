"""Evaluation: a saved bundle on a FeatureTable, and the paper's scenarios (EXTRAP, blocked
EXTRAP, LORO) for BRIDGE-LC and the baselines, written as CSV and Markdown tables.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model.baselines import fit_predict_baseline
from model.bundle import load_bundle
from model.infer import predict_proba
from model.metrics import classification_metrics, mean_ci95
from model.scenarios import Split, extrap_blocked, extrap_random, loro
from model.train import TrainConfig, TrainingData, train_bridge, training_arrays
from pipeline.atomic import atomic_path
from pipeline.bioregion import REGIONS
from pipeline.errors import SchemaError
from pipeline.legend import legend_for
from pipeline.table import read_feature_table

MODELS = ("bridge-lc", "rf", "xgboost", "svm")


def evaluate_bundle(bundle_dir: Path, table_path: Path) -> dict[str, Any]:
    """Metrics of a saved bundle on every labelled row of a FeatureTable.

    Returns:
        :func:`model.metrics.classification_metrics` plus ``dropped`` (rows left out and why).

    Raises:
        SchemaError: the table lacks features the bundle needs (all are named).
    """
    from tiles.predict import predict_array

    b = load_bundle(bundle_dir)
    table, _ = read_feature_table(table_path)
    missing = [f for f in b.features if f not in table.columns]
    if missing:
        raise SchemaError(f"the table lacks {len(missing)} feature(s) the bundle needs: {missing[:8]}",
                          "Evaluate on a table built with the bundle's spec", path=table_path)
    data = training_arrays(table, b.features, b.legend.level)
    pred, _ = predict_array(b, data.x, data.lonlat)
    return {**classification_metrics(data.y, pred, b.legend.names), "dropped": data.dropped}


def _subset(d: TrainingData, idx: np.ndarray) -> TrainingData:
    return TrainingData(d.x[idx], d.lonlat[idx], d.y[idx], d.region[idx], d.dropped, d.cells[idx])


def _fit_predict(model: str, d: TrainingData, split: Split, n_classes: int, cfg: TrainConfig,
                 seed: int) -> np.ndarray:
    if model == "bridge-lc":
        res = train_bridge(_subset(d, split.train), n_classes, replace_cfg(cfg, seed))
        prob = predict_proba(res.model, res.normalizer.transform(d.x[split.test]), d.lonlat[split.test])
        return np.asarray(prob.argmax(1))
    return fit_predict_baseline(model, d.x[split.train], d.y[split.train], d.x[split.test], seed)


def replace_cfg(cfg: TrainConfig, seed: int) -> TrainConfig:
    """``cfg`` with this seed and no internal validation hold-out (the split has a test set)."""
    return cfg.model_copy(update={"seed": seed, "val_fraction": 0.0})


def scenario_splits(scenario: str, d: TrainingData, seed: int,
                    regions: list[str] | None = None) -> list[Split]:
    """The splits of ``extrap``, ``extrap-blocked`` or ``loro`` for one seed."""
    if scenario == "extrap":
        return [extrap_random(d.y, seed)]
    if scenario == "extrap-blocked":
        return [extrap_blocked(d.y, d.cells, seed)]
    if scenario == "loro":
        names = np.array(REGIONS)[d.region]
        return [loro(d.y, names, r) for r in (regions or list(REGIONS))]
    raise SchemaError(f"unknown scenario {scenario!r}", "Use extrap, extrap-blocked or loro")


def run_scenario(table_path: Path, features: list[str], scenario: str, out_dir: Path,
                 models: tuple[str, ...] = MODELS, seeds: tuple[int, ...] = (0,),
                 cfg: TrainConfig | None = None, regions: list[str] | None = None,
                 max_rows: int | None = None,
                 on_result: Callable[[dict[str, Any]], None] | None = None) -> pd.DataFrame:
    """Run every model on every split and seed; write ``<scenario>_runs.csv`` and
    ``<scenario>_summary.md`` (weighted F1 / accuracy as mean ± 95% CI, in %).

    Args:
        table_path: FeatureTable.
        features: feature names (a FeatureSelection's).
        scenario: ``extrap``, ``extrap-blocked`` or ``loro``.
        out_dir: where the tables go.
        models: any of :data:`MODELS`.
        seeds: seeds (the paper-style report uses ≥ 5).
        cfg: BRIDGE-LC training settings (default: the paper's, 500 epochs).
        regions: LORO regions (default: all 8).
        max_rows: stratified subsample of the table (for quick runs); None = all rows.
        on_result: called with each result row (progress).

    Returns:
        One row per (split, model, seed) with accuracy, weighted F1 and sizes.
    """
    cfg = cfg or TrainConfig()
    table, _ = read_feature_table(table_path)
    d = training_arrays(table, features, cfg.level)
    if max_rows and len(d.y) > max_rows:
        d = _subset(d, np.sort(np.random.default_rng(0).choice(len(d.y), max_rows, replace=False)))
    names = legend_for(cfg.level).names
    rows = []
    for seed in seeds:
        for split in scenario_splits(scenario, d, seed, regions):
            for model in models:
                pred = _fit_predict(model, d, split, len(names), cfg, seed)
                m = classification_metrics(d.y[split.test], pred, names)
                row = {"scenario": scenario, "split": split.name, "model": model, "seed": seed,
                       "accuracy": m["overall_accuracy"], "weighted_f1": m["weighted_f1"],
                       "n_train": len(split.train), "n_test": len(split.test), "flags": "; ".join(split.flags)}
                rows.append(row)
                if on_result:
                    on_result(row)
    df = pd.DataFrame(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / f"{scenario}_runs.csv") as tmp:
        df.to_csv(tmp, index=False, quoting=csv.QUOTE_MINIMAL)
    with atomic_path(out_dir / f"{scenario}_summary.md") as tmp:
        tmp.write_text(summary_markdown(df, scenario), encoding="utf-8")
    return df


def summary_markdown(df: pd.DataFrame, scenario: str) -> str:
    """A paper-style Markdown table: per split and model, weighted F1 and accuracy in %
    (mean ± 95% CI over seeds); for LORO also the mean over regions.
    """
    lines = [f"# {scenario}: weighted F1 / accuracy (%), mean ± 95% CI over {df['seed'].nunique()} seed(s)", "",
             "| split | model | weighted F1 | accuracy | n test | flags |", "|---|---|---|---|---|---|"]

    def fmt(v: list[float]) -> str:
        m, h = mean_ci95(np.asarray(v) * 100)
        return f"{m:.2f}" + ("" if np.isnan(h) else f" ± {h:.2f}")

    for (split, model), g in df.groupby(["split", "model"], sort=False):
        lines.append(f"| {split} | {model} | {fmt(g['weighted_f1'].tolist())} | {fmt(g['accuracy'].tolist())} "
                     f"| {int(g['n_test'].iloc[0]):,} | {g['flags'].iloc[0]} |")
    if scenario == "loro":
        lines += ["", "| model | mean weighted F1 over regions | mean accuracy over regions |", "|---|---|---|"]
        for model, g in df.groupby("model", sort=False):
            per_seed = g.groupby("seed")[["weighted_f1", "accuracy"]].mean()
            wf, acc = fmt(per_seed["weighted_f1"].tolist()), fmt(per_seed["accuracy"].tolist())
            lines.append(f"| {model!s} | {wf} | {acc} |")
    return "\n".join(lines) + "\n"



