"""Benchmark: BRIDGE-LC (the demo's schedule) vs a Random Forest peer on the demo's map.

Both models train on the same FeatureTable rows and feature selection (the 10 NDVI features
of `elc10` the Slovenia stack can compute for 2017) and predict the same feature COG; both
maps are scored against the eo-learn LULC reference crosswalked to Level-1.
The RF follows the paper's baseline: 130 trees, min_samples_leaf 2, max_features sqrt, gini.

Run: python benchmarks/demo_vs_rf.py [--epochs 10] [--out /tmp/bench]
Prints both figures and their ratios; record them in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import rasterio
from sklearn.ensemble import RandomForestClassifier

from model.train import training_arrays
from pipeline.assess.agreement import agreement
from pipeline.core.cog import write_cog
from pipeline.core.config import data_dir
from pipeline.core.grid import pixel_centres_lonlat
from pipeline.core.legend import Crosswalk, level1_legend
from pipeline.core.reader import read_feature_cog
from pipeline.stages.demo import SLOVENIA, DemoRequest, run_demo
from pipeline.table import read_feature_table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("/tmp/eulc-bench"))
    args = ap.parse_args()
    out: Path = args.out
    t0 = time.perf_counter()
    ours = run_demo(DemoRequest(out, epochs=args.epochs, train=True))  # train here: the peer trains on the same rows
    t_ours = time.perf_counter() - t0
    steps = json.loads((out / ".eulc_steps.json").read_text())
    names = steps["selection"]["info"]

    table, _ = read_feature_table(out / "table.parquet")
    data = training_arrays(table, names)
    t1 = time.perf_counter()
    rf = RandomForestClassifier(
        n_estimators=130, min_samples_leaf=2, max_features="sqrt", n_jobs=-1, random_state=0
    ).fit(np.c_[data.x, data.lonlat], data.y)
    t_rf_train = time.perf_counter() - t1
    feat = next((out / "features").glob("*.tif"))
    x, transform, crs, _ = read_feature_cog(feat, names)
    f, h, w = x.shape
    flat = x.reshape(f, -1).T
    ok = np.isfinite(flat).all(1)
    lon, lat = pixel_centres_lonlat(transform, h, w, crs)
    pred = np.full(h * w, 255, np.uint8)
    pred[ok] = rf.predict(np.c_[flat[ok], np.c_[lon.ravel(), lat.ravel()][ok]])
    rf_map = write_cog(out / "rf_class.tif", pred.reshape(h, w), transform, crs, 255)
    peer = agreement(
        rf_map, data_dir() / SLOVENIA / "lulc_reference.tif", Crosswalk.shipped("eolearn_lulc"), level1_legend()
    )
    with rasterio.open(out / "maps" / "eolearn_slovenia_class.tif") as s:
        agree_models = float((s.read(1) == pred.reshape(h, w))[ok.reshape(h, w)].mean())
    bundle = json.loads((out / "model" / "bundle.json").read_text())
    print(f"features: {names}")
    print(
        f"BRIDGE-LC ({args.epochs} epochs): map OA {ours['overall_accuracy']:.4f}, "
        f"hold-out OA {bundle['metrics']['val_accuracy']:.4f}, demo wall time {t_ours:.1f} s"
    )
    print(f"RF peer (130 trees): map OA {peer['overall_accuracy']:.4f}, train time {t_rf_train:.1f} s")
    print(f"ratio OA ours/peer: {ours['overall_accuracy'] / peer['overall_accuracy']:.3f}")
    print(f"pixel agreement between the two maps: {agree_models:.3f}")


if __name__ == "__main__":
    main()
