"""Benchmark: an XGBoost bundle through `eulc map` against the shipped network bundle and
against XGBoost's own prediction (issue #29 part 8).

One run, one process, on this machine:

- trains the XGBoost bundle (paper setting: 300 rounds, depth 6, hist) on the real ELC10 LUCAS
  2018 table with the 35 features of the shipped ``models/elc10-l1`` and the same split settings
  (seed 0, 10 % untouched 100 km cells, blocked hold-out for the temperature), as
  ``eulc train --model xgboost`` does, and prints both bundles' weighted F1 on those cells;
- writes a 1000 × 1000 feature COG of real ELC10 pixels (drawn with replacement) as
  ``eulc features`` writes it, and maps it with ``predict_tile`` (class + confidence COGs) with
  each bundle, alternating, 3 rounds each, best time kept;
- the peer: XGBoost's scikit-learn ``predict_proba`` of the same pixels in memory (the model
  inside the bundle, called directly): what the tree map costs beyond the trees themselves.

Run: ``python benchmarks/bench_tree_map.py [--out /tmp/eulc-bench-trees]``. The last line is
``tree_e2e_px_per_s=<> network_e2e_px_per_s=<> xgb_native_px_per_s=<> tree_vs_network=<>
tree_e2e_vs_native=<>``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from model.api import train_trees_from_table
from model.bundle import load_bundle
from model.presets import preset_config
from pipeline.core.config import data_dir
from pipeline.core.featurecog import write_feature_cog
from pipeline.core.grid import TileId
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import load_spec
from pipeline.stages.pretrained import models_dir
from pipeline.table import build_feature_table, write_feature_table
from tiles.mapping.predict import predict_tile

N_SIDE = 1000
TILE = TileId.parse("10kmE467N253")
ELC10_CSV = Path("elc10_lucas2018") / "lucas2018_elc10_s2_s1_features.csv.gz"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/eulc-bench-trees"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    network = load_bundle(models_dir() / "elc10-l1")
    table_path = out / "elc10.parquet"
    table, _ = build_feature_table([data_dir() / ELC10_CSV], load_spec("elc10"))
    write_feature_table(table, table_path)
    tree_dir = out / "xgb-l1"
    if tree_dir.exists():
        shutil.rmtree(tree_dir)
    sel = FeatureSelection.of(network.feature_spec(), network.features, "bundle")
    t = time.perf_counter()
    metrics = train_trees_from_table(table_path, tree_dir, sel, preset_config("eulc", seed=0, test_fraction=0.1))
    print(f"XGBoost bundle trained on {metrics['n_train']:,} rows in {time.perf_counter() - t:.1f} s")
    trees = load_bundle(tree_dir)
    size_mb = sum(p.stat().st_size for p in tree_dir.iterdir()) / 1e6
    net_mb = sum(p.stat().st_size for p in network.path.iterdir()) / 1e6 if network.path else 0.0
    print(f"bundle size: XGBoost {size_mb:.1f} MB (XGBoost JSON), network {net_mb:.1f} MB (safetensors + OOD)")
    nm, tm = network.meta["metrics"], trees.meta["metrics"]
    print(
        f"untouched cells (the same {tm['n_test']:,} rows for both; network card {nm.get('n_test', 0):,}): "
        f"weighted F1 XGBoost {tm['test_weighted_f1']:.4f} (ECE {tm['test_ece']:.3f}, T {tm['temperature']:.2f}) vs "
        f"network {nm.get('test_weighted_f1', float('nan')):.4f} (ECE {nm.get('test_ece', float('nan')):.3f})"
    )

    rng = np.random.default_rng(0)
    df = pd.read_csv(data_dir() / ELC10_CSV).dropna(subset=network.features)
    x = df[network.features].to_numpy(np.float32)[rng.integers(0, len(df), N_SIDE * N_SIDE)]
    feat = out / "features.tif"
    write_feature_cog(
        feat, x.T.reshape(len(network.features), N_SIDE, N_SIDE), network.feature_spec(), TILE.window(), 2018, "L1C", []
    )
    times: dict[str, list[float]] = {"trees": [], "network": [], "native": []}
    booster = trees.model.booster  # type: ignore[union-attr]
    for _ in range(args.rounds):
        for name, bundle in (("trees", trees), ("network", network)):
            t = time.perf_counter()
            res = predict_tile(bundle, feat, out / name, "tile")
            times[name].append(time.perf_counter() - t)
        t = time.perf_counter()
        booster.inplace_predict(x)
        times["native"].append(time.perf_counter() - t)
    n = res.n_pixels
    rate = {k: n / min(v) for k, v in times.items()}
    for k, label in (
        ("trees", "XGBoost bundle, end to end (feature COG → class + confidence COGs)"),
        ("network", "elc10-l1 network bundle, end to end"),
        ("native", "peer: XGBoost's own predict of the same pixels in memory"),
    ):
        print(f"{label}: {min(times[k]):.2f} s = {rate[k] / 1e6:.3f} Mpx/s")
    print(
        f"ratios: trees/network = {rate['trees'] / rate['network']:.3f}, "
        f"trees end to end / XGBoost native = {rate['trees'] / rate['native']:.3f}"
    )
    print(
        f"tree_e2e_px_per_s={rate['trees']:.0f} network_e2e_px_per_s={rate['network']:.0f} "
        f"xgb_native_px_per_s={rate['native']:.0f} tree_vs_network={rate['trees'] / rate['network']:.3f} "
        f"tree_e2e_vs_native={rate['trees'] / rate['native']:.3f}"
    )


if __name__ == "__main__":
    main()
