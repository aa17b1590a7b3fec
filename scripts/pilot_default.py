"""The pilot behind eulc's default preset, on training-side data only, one LORO fold at a time.

    python scripts/pilot_default.py TABLE.parquet --folds Alpine,Mediterranean [--epochs 30]
        [--candidates eulc,eulc-plain,eulc-coords] [--max-rows N] [--inner cells|regions] [--out pilot.csv]
    python scripts/pilot_default.py TABLE.parquet --folds all     # for the shipped bundle

For each fold (a held-out bioregion), its training side (the other regions) is split again into
an inner hold-out: 15 % of the side's EEA 100 km cells (``--inner cells``, the default), or whole
bioregions of the side (``--inner regions``, scored by their size-weighted weighted F1, as
``eulc evaluate --inner regions``). Every candidate preset trains on the rest and is scored
(weighted F1 %) on it, next to XGBoost (the paper's settings) trained on the same rows. This
is :func:`model.tuning.choose_preset`, the code ``eulc evaluate --models nested`` runs inside
each split, so the pilot's choice for a fold is the one ``nested`` makes there. The
fold's own region is never read, and nothing chosen for one fold is carried to another: a single
preset for every LORO fold cannot be chosen on training-side data alone, because every region is
some fold's test region (the issue #15 pilot did that; issue #29).

``--folds all`` pilots the shipped bundles' choice: the side is every row except the untouched
EEA 100 km cells ``eulc train --test-fraction 0.1`` keeps for the model card (seed 0), which stay
unread. ``--max-rows`` subsamples the table (seeded) for a quick look; the candidates also train
on at most :data:`model.tuning.INNER_MAX_ROWS` rows, as in ``nested``.

Prints one line per (fold, model): ``<fold> <model> <weighted F1 %> <seconds>`` (a candidate's
seconds are the fold's mean per candidate), then each fold's winner; ``--out`` writes the same as
CSV through eulc's guarded writer.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from model.augment import PhysicalAugmentation
from model.baselines import fit_predict_baseline
from model.presets import CANDIDATES, DEFAULT, PRESETS, preset_config
from model.train import TrainConfig, split_rows, training_arrays
from model.tuning import INNER_HOLDOUTS, choose_preset, inner_holdout, inner_score
from pipeline.core.atomic import atomic_path
from pipeline.core.bioregion import REGIONS
from pipeline.core.errors import EulcError
from pipeline.core.legend import legend_for
from pipeline.table import read_feature_table, table_spec

TEST_FRACTION = 0.1
"""The untouched share of ``--folds all`` (as ``scripts/train_pretrained.py`` and the cards)."""


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (module docstring); returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", type=Path)
    ap.add_argument("--folds", default="Alpine,Mediterranean", help="comma-separated regions, or 'all'")
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated presets")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--level", default="level1", choices=["level1", "level2"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-rows", type=int, default=None)
    ap.add_argument("--no-xgboost", action="store_true")
    ap.add_argument(
        "--inner",
        default="cells",
        choices=list(INNER_HOLDOUTS),
        help="score on a blocked hold-out of 100 km cells, or on whole held-out bioregions of the side",
    )
    ap.add_argument("--out", type=Path, default=None, help="CSV of the scores and winners")
    args = ap.parse_args(argv)
    folds = [f.strip() for f in args.folds.split(",") if f.strip()]
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    bad = [f for f in folds if f not in (*REGIONS, "all")] + [c for c in candidates if c not in PRESETS]
    if bad or not folds or not candidates:
        print(
            f"pilot_default: unknown fold or preset {bad}; folds: {list(REGIONS)} or all; presets: {list(PRESETS)}",
            file=sys.stderr,
        )
        return 2
    table, meta = read_feature_table(args.table)
    spec = table_spec(meta, str(args.table))
    names = [n for n in spec.names if n in table.columns]
    d = training_arrays(table, names, args.level)
    if args.max_rows and len(d.y) > args.max_rows:
        d = d.take(np.sort(np.random.default_rng(args.seed).choice(len(d.y), args.max_rows, replace=False)))
    aug = PhysicalAugmentation.from_spec(spec, names)
    n_classes = len(legend_for(args.level).names)
    cfg = TrainConfig(level=args.level, epochs=args.epochs, lr=1e-3)
    records = []
    for fold in folds:
        if fold == "all":
            card = preset_config(DEFAULT, cfg, seed=args.seed, test_fraction=TEST_FRACTION, val_fraction=0.0)
            side = split_rows(d, card)[0]  # the untouched card cells are left out, never read
        else:
            side = np.flatnonzero(np.array(REGIONS)[d.region] != fold)
        data = d.take(side)
        t0 = time.time()
        label = fold if fold == "all" else f"loro-{fold}"  # the split's name in `eulc evaluate`
        winner, scores = choose_preset(data, candidates, cfg, args.seed, n_classes, aug, args.inner, label)
        seconds = (time.time() - t0) / len(candidates)
        if not args.no_xgboost:  # the same inner split and row cap as choose_preset's
            fit, held = inner_holdout(data, args.seed, args.inner, label)
            t1 = time.time()
            pred = fit_predict_baseline("xgboost", fit.x, fit.y, held.x, args.seed)
            f1 = inner_score(held, pred, args.inner)
            took = time.time() - t1
            records.append({"fold": fold, "model": "xgboost", "inner_weighted_f1": 100 * f1, "seconds": took})
        for name, v in scores.items():
            records.append({"fold": fold, "model": name, "inner_weighted_f1": 100 * v, "seconds": seconds})
        records.append({"fold": fold, "model": f"winner: {winner}", "inner_weighted_f1": 100 * scores[winner]})
        for r in records[-(len(scores) + 1 + (not args.no_xgboost)) :]:
            print(r["fold"], r["model"], f"{r['inner_weighted_f1']:.2f}", f"{r.get('seconds', 0):.0f}", flush=True)
    if args.out is not None:
        df = pd.DataFrame(records).assign(
            epochs=args.epochs,
            level=args.level,
            seed=args.seed,
            max_rows=args.max_rows or 0,
            inner=args.inner,
            table=str(args.table),
        )
        with atomic_path(args.out) as tmp:
            df.to_csv(tmp, index=False)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EulcError as err:  # bad input: one line, exit 2
        print(f"pilot_default: {err}", file=sys.stderr)
        sys.exit(2)
