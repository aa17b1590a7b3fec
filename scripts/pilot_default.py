"""The pilot that chose eulc's default (issue #15), on training-side data only.

    python scripts/pilot_default.py TABLE.parquet Alpine [--epochs 10] [--only m30,m30kd5]

For one LORO fold (the held-out region named), the training side (the other 7 regions) is
split again: 15 % of its EEA 100 km cells form an inner hold-out (seed 0), the candidates train
on the rest and are scored (weighted F1 %) on it, next to XGBoost (the paper's settings) on the
same rows. The held-out region's rows are never read. Prints one line per model:
``<fold> <model> <weighted F1 %> <seconds> <selected epoch>``. docs/results.md lists the runs
(folds Alpine and Mediterranean).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from model.augment import PhysicalAugmentation
from model.baselines import fit_predict_baseline
from model.infer import predict_proba
from model.presets import preset_config
from model.train import TrainingData, _blocked_or_random, train_bridge, training_arrays
from pipeline.core.bioregion import REGIONS
from pipeline.table import read_feature_table, table_spec

M = {"location": "none", "region_branch": False, "scaling": "robust", "ema_mode": "step", "dropout": 0.1}
CANDIDATES: dict[str, dict[str, object]] = {
    "v1 (issue #4 default)": {},
    "robust+stepema": {"scaling": "robust", "ema_mode": "step"},
    "robust+stepema+phys": {"scaling": "robust", "ema_mode": "step", "augment": "physical"},
    "robust+stepema+kd": {"scaling": "robust", "ema_mode": "step", "distill": 0.5},
    "d01": {"scaling": "robust", "ema_mode": "step", "dropout": 0.1},
    "mlp-d01": M,
    "m30": {**M, "epochs": 30},
    "m30kd5": {**M, "epochs": 30, "distill": 0.5},
    "m30phys": {**M, "epochs": 30, "augment": "physical"},
    "m30kd5phys": {**M, "epochs": 30, "distill": 0.5, "augment": "physical"},
    "m30minmax": {**M, "epochs": 30, "scaling": "minmax"},
    "m30epochema": {**M, "epochs": 30, "ema_mode": "epoch"},
    "m30d0": {**M, "epochs": 30, "dropout": 0.0},
}
"""Overrides of the issue #4 default (``eulc-v1``); ``epochs`` defaults to --epochs."""


def main() -> None:
    """CLI entry point (see module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("table", type=Path)
    ap.add_argument("fold", choices=REGIONS)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--only", help="comma-separated candidate names")
    ap.add_argument("--no-xgboost", action="store_true")
    args = ap.parse_args()
    table, meta = read_feature_table(args.table)
    spec = table_spec(meta, str(args.table))
    names = [n for n in spec.names if n in table.columns]
    d = training_arrays(table, names, "level1")
    aug = PhysicalAugmentation.from_spec(spec, names)
    side = np.flatnonzero(np.array(REGIONS)[d.region] != args.fold)
    tr, va = _blocked_or_random(side, d, 0.15, 0, True)
    fit = TrainingData(d.x[tr], d.lonlat[tr], d.y[tr], d.region[tr], d.dropped, d.cells[tr])
    if not args.no_xgboost:
        t0 = time.time()
        pred = fit_predict_baseline("xgboost", d.x[tr], d.y[tr], d.x[va], 0)
        print(
            args.fold,
            "xgboost",
            round(100 * f1_score(d.y[va], pred, average="weighted"), 2),
            round(time.time() - t0),
            "-",
            flush=True,
        )
    for name in args.only.split(",") if args.only else CANDIDATES:
        over = {"epochs": args.epochs, "lr": 1e-3, **CANDIDATES[name]}
        cfg = preset_config("eulc-v1", None, **over)
        t0 = time.time()
        res = train_bridge(fit, 7, cfg, augmentation=aug)
        prob = predict_proba(res.model, res.normalizer.transform(d.x[va]), d.lonlat[va])
        print(
            args.fold,
            name,
            round(100 * f1_score(d.y[va], prob.argmax(1), average="weighted"), 2),
            round(time.time() - t0),
            res.metrics.get("selected_epoch"),
            flush=True,
        )


if __name__ == "__main__":
    main()
