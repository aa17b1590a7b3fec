"""Why Level-2 trails XGBoost, and which network variant to ship, measured on the training side
only (issue #29 part 7).

    python scripts/level2_cv.py elc10_l2.parquet --out l2cv [--folds 5] [--epochs 120]

The rows a shipped Level-2 bundle keeps untouched (``scripts/train_pretrained.py``: 10 % of the
EEA 100 km cells, seed 0) are removed first and never read. The rest (its training and hold-out
rows) is split into ``--folds`` folds of whole 100 km cells (scikit-learn ``GroupKFold``); each
candidate is fitted on the other folds (the network presets carve their own blocked hold-out for
epoch selection and calibration from them) and predicts the fold. From the pooled out-of-fold
predictions the script writes ``DIR/summary.md``:

- each candidate's weighted F1 and accuracy, and its difference from XGBoost (paper setting) with
  a paired cell-bootstrap 95 % interval over the training side's cells (:mod:`model.bootstrap`);
- per crop class: rows, and each model's F1, so a reader sees where the network loses (few rows,
  imbalance) and where it wins;
- the winner: the network variant with the best out-of-fold weighted F1 (what the shipped
  Level-2 bundle should use; chosen without its test cells).

Fold results are kept in ``DIR/oof_<candidate>.npz``; a rerun skips the finished ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GroupKFold

from model.baselines import fit_predict_proba_baseline
from model.bootstrap import Stratum, paired_cell_bootstrap
from model.infer import predict_proba
from model.presets import preset_config
from model.train import TrainConfig, split_rows, train_bridge, training_arrays
from pipeline.core.atomic import atomic_path
from pipeline.core.legend import legend_for
from pipeline.table import read_feature_table

VARIANTS: dict[str, tuple[str, dict]] = {
    "eulc": ("eulc", {}),  # today's shipped Level-2 preset
    "eulc-plain": ("eulc-plain", {}),  # without distillation
    "eulc-coords": ("eulc-coords", {}),  # with the learnt lat/lon encoding: crops are regional
    "eulc-balanced": ("eulc", {"class_balanced": True}),  # CE weighted by 1/sqrt(class frequency)
}
"""Network candidates: a preset and overrides (:mod:`model.presets`)."""
REFERENCE = "xgboost"


def _fit_predict(name: str, data, fit: np.ndarray, val: np.ndarray, base: TrainConfig, seed: int, n_classes: int):  # type: ignore[no-untyped-def]
    if name == REFERENCE:
        return fit_predict_proba_baseline("xgboost", data.x[fit], data.y[fit], data.x[val], seed, n_classes)[1]
    preset, extra = VARIANTS[name]
    cfg = preset_config(preset, base, seed=seed, **extra)
    res = train_bridge(data.take(fit), n_classes, cfg)
    return predict_proba(res.model, res.normalizer.transform(data.x[val]), data.lonlat[val])


def main() -> None:
    """CLI entry point (see module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", type=Path, help="the Level-2 FeatureTable (eulc table of the LC1/LU1 export)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=120, help="the shipped Level-2 schedule (train_pretrained.py)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--candidates", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    ap.add_argument("--max-rows", type=int, default=0, help="a seeded subsample of the training side (a quick run)")
    args = ap.parse_args()
    names = [c for c in args.candidates.split(",") if c]
    unknown = [c for c in names if c not in VARIANTS]
    if unknown or not names:
        ap.error(f"--candidates {unknown or '(none)'}: use some of {', '.join(VARIANTS)}")
    if not args.table.is_file():
        ap.error(f"{args.table}: no such table")
    table, _ = read_feature_table(args.table)
    legend = legend_for("level2")
    from pipeline.core.spec import load_spec

    feats = load_spec("elc10").names
    data = training_arrays(table, feats, "level2")
    card = preset_config("eulc", level="level2", seed=0, test_fraction=0.1)
    tr, va, te = split_rows(data, card)  # the shipped bundle's split: its test rows are dropped here
    side = np.sort(np.concatenate([tr, va]))
    if args.max_rows and len(side) > args.max_rows:
        side = np.sort(np.random.default_rng(args.seed).choice(side, args.max_rows, replace=False))
    data = data.take(side)
    print(f"training side: {len(side):,} rows in {len(set(data.cells))} cells ({len(te):,} untouched rows never read)")
    base = TrainConfig(level="level2", epochs=args.epochs, lr=args.lr)
    folds = list(GroupKFold(n_splits=args.folds).split(data.x, data.y, groups=data.cells))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    n_classes = len(legend)
    oof: dict[str, np.ndarray] = {}
    for name in [REFERENCE, *names]:
        path = out / f"oof_{name}.npz"
        if path.is_file():
            z = np.load(path)
            if z["rows"].shape == side.shape and (z["rows"] == side).all():
                oof[name] = z["prob"]
                print(f"{name}: done before")
                continue
        prob = np.zeros((len(side), n_classes))
        for k, (fit, val) in enumerate(folds):
            prob[val] = _fit_predict(name, data, fit, val, base, args.seed, n_classes)
            print(f"{name}: fold {k + 1}/{len(folds)}", flush=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, rows=side, prob=prob)
        oof[name] = prob
    y = data.y
    ref = oof[REFERENCE].argmax(1)
    lines = [
        f"# Level-2 on the training side: {len(folds)}-fold cross-validation over whole 100 km cells",
        "",
        f"{len(side):,} rows of the shipped bundle's training side, {len(set(data.cells))} cells; the "
        f"{len(te):,} untouched rows were not read. {args.epochs} epochs, lr {args.lr:g}, seed {args.seed}.",
        "",
        "| model | weighted F1 | accuracy | − XGBoost (points) | 95 % cell interval |",
        "|---|---|---|---|---|",
    ]
    best, best_f1 = "", -1.0
    for name in [REFERENCE, *names]:
        pred = oof[name].argmax(1)
        f1 = f1_score(y, pred, average="weighted")
        if name != REFERENCE and f1 > best_f1:
            best, best_f1 = name, f1
        if name == REFERENCE:
            diff = "– | –"
        else:
            res = paired_cell_bootstrap([Stratum(y, pred[None], ref[None], data.cells)], n_classes)["weighted_f1"]
            diff = f"{res.diff:+.2f} | [{res.low:+.2f}, {res.high:+.2f}]"
        lines.append(f"| {name} | {100 * f1:.2f} | {100 * accuracy_score(y, pred):.2f} | {diff} |")
    lines += ["", f"Best network variant on the training side: **{best}**.", ""]
    lines += ["| crop class | rows | " + " | ".join(f"F1 {n}" for n in [REFERENCE, *names]) + " |"]
    lines += ["|---|---|" + "---|" * (1 + len(names))]
    counts = np.bincount(y, minlength=n_classes)
    per = {n: f1_score(y, oof[n].argmax(1), average=None, labels=range(n_classes), zero_division=0) for n in oof}
    for c in np.argsort(-counts):
        if counts[c]:
            cells = " | ".join(f"{100 * per[n][c]:.1f}" for n in [REFERENCE, *names])
            lines.append(f"| {legend.names[c]} | {counts[c]:,} | {cells} |")
    text = "\n".join(lines) + "\n"
    with atomic_path(out / "summary.md") as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    print(text)
    print(f"winner={best}")


if __name__ == "__main__":
    main()
