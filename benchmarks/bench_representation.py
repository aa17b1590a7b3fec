"""Benchmark: model-only map rate of the representation options (issue #29 part 4) against the
shipped ``models/elc10-l1`` bundle, from one run.

Each candidate is the network a preset builds (:mod:`model.presets`: ``eulc``, the shipped
bundle's shape; ``eulc-coords``; the TabM-mini ensemble ``eulc-tabm``; the piecewise-linear
encoding ``eulc-ple``; both, ``eulc-tabm-ple``) for the shipped bundle's 35 features and robust
inputs (encoding edges from the real pixels' quantiles), run through
:class:`tiles.mapping.predict.Predictor` exactly as ``eulc map`` runs a bundle (fused network,
sub-batches, softmax, argmax, confidence). The rate of a network does not depend on its weight
values, so untrained weights (with non-trivial BatchNorm statistics) stand in for
trained ones; a trained bundle can be added with ``--bundle DIR``. The pixels are real
ELC10 LUCAS rows drawn with replacement. Rates are timed alternately, best of ``--repeat``, so
the drift of a shared machine hits every candidate alike.

Run: ``python benchmarks/bench_representation.py [--pixels 300000] [--bundle DIR ...]``. The last
line is ``ratio_<name>=<candidate rate / shipped rate>`` for every candidate; the issue's bound
is ≥ 0.5.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from model.bundle import ModelBundle, load_bundle
from model.ple import quantile_bins
from model.presets import preset_config
from model.train import build_network
from pipeline.core.config import data_dir
from pipeline.stages.pretrained import models_dir
from tiles.mapping.predict import Predictor

ELC10_CSV = Path("elc10_lucas2018") / "lucas2018_elc10_s2_s1_features.csv.gz"
PRESET_NAMES = ("eulc", "eulc-coords", "eulc-tabm", "eulc-ple", "eulc-tabm-ple")


def _candidate(shipped: ModelBundle, xn_sample: np.ndarray, preset: str) -> ModelBundle:
    """The network ``eulc train --preset <preset>`` builds for the shipped bundle's features and
    classes, untrained, with BatchNorm statistics and encoding edges as after training."""
    cfg = preset_config(preset)
    torch.manual_seed(0)
    net = build_network(shipped.model.cfg.n_features, shipped.model.cfg.n_classes, cfg)
    if cfg.ple_bins:
        net.set_ple_bins(quantile_bins(xn_sample, cfg.ple_bins))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return replace(shipped, model=net.eval())


def main() -> None:
    """Print each candidate's model-only rate and its ratio to the shipped bundle's."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pixels", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bundle", type=Path, action="append", default=[], help="a trained bundle to time too")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    shipped = load_bundle(models_dir() / "elc10-l1")
    df = pd.read_csv(data_dir() / ELC10_CSV).dropna(subset=shipped.features)
    rows = df[shipped.features + ["lon", "lat"]].to_numpy(np.float32)[rng.integers(0, len(df), args.pixels)]
    x, lonlat = np.ascontiguousarray(rows[:, :-2]), np.ascontiguousarray(rows[:, -2:])
    xn = shipped.normalizer.transform(x[:20_000])
    preds = {"shipped": Predictor(shipped, device="cpu")}
    for name in PRESET_NAMES:
        preds[name] = Predictor(_candidate(shipped, xn, name), device="cpu")
    for path in args.bundle:
        preds[path.name] = Predictor(load_bundle(path), device="cpu")
    for p in preds.values():  # warm-up
        p.predict(x[:50_000], lonlat[:50_000])
    seconds = {name: float("inf") for name in preds}
    for _ in range(args.repeat):  # alternate: drift hits every candidate alike
        for name, p in preds.items():
            t = time.perf_counter()
            p.predict(x, lonlat)
            seconds[name] = min(seconds[name], time.perf_counter() - t)
    base = args.pixels / seconds["shipped"]
    print(f"machine: {torch.get_num_threads()} threads; {args.pixels:,} real pixels; shipped elc10-l1")
    for name, s in seconds.items():
        rate = args.pixels / s
        print(f"{name:>16}: {rate / 1e6:.3f} Mpx/s, {rate / base:.2f} x shipped")
    print(" ".join(f"ratio_{n}={args.pixels / s / base:.3f}" for n, s in seconds.items() if n != "shipped"))


if __name__ == "__main__":
    main()
