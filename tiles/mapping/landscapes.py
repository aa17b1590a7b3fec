"""Landscape drift of feature tiles against a bundle's training landscapes (issue #18; after
the cross-continent paper, seed 002, which compares per-continent histograms of K = 16
landscape clusters with the training one).

Every valid pixel of each tile (a uniform seeded sample of at most ``max_pixels``) is assigned
to its nearest training landscape (:meth:`model.ood.OODReference.landscape`); the histogram
of a tile is compared with the training rows' by the population stability index over the K
clusters, and the share of pixels in rare or distant landscapes (code 1 of the OOD layer) is
counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from model.ood import OODReference
from pipeline.core.reader import FeatureReader

EPS = 1e-4


def landscape_drift(
    ref: OODReference, tiles: list[Path], max_pixels: int = 200_000, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Landscape histograms of feature COGs against the training histogram.

    Args:
        ref: the bundle's OOD reference (its landscape features are read by name).
        tiles: feature COGs holding those features (``eulc features`` / GEE exports).
        max_pixels: pixels sampled per tile (uniformly, seeded) with every landscape feature.
        seed: sampling seed.

    Returns:
        ``(histogram, summary)``: one row per (tile, cluster) with ``train_share`` and
        ``tile_share``, plus ``all tiles`` rows pooling every sampled pixel; one row per tile
        with ``pixels`` sampled, ``psi`` over the K clusters (ε = 1e-4 for empty ones) and
        ``rare_share`` (pixels in a cluster holding < ``ref.rare_share`` of the training rows
        or beyond the landscape threshold), highest PSI first.

    Raises:
        RasterError: a tile that cannot be read or lacks a landscape feature (named).
    """
    rng = np.random.default_rng(seed)
    hist, summary, pooled = [], [], np.zeros(ref.k, np.int64)
    rare_all = n_all = 0
    for path in tiles:
        with FeatureReader(path, ref.landscape_features) as r:
            v = r.read().reshape(len(ref.landscape_features), -1).T
        v = v[np.isfinite(v).all(1)]
        if len(v) > max_pixels:
            v = v[rng.choice(len(v), max_pixels, replace=False)]
        with torch.inference_mode():
            cl_t, d2 = ref.landscape(torch.from_numpy(np.ascontiguousarray(v, np.float32)), selected=True)
            rare = int(ref.is_rare(cl_t, d2).sum())
        counts = np.bincount(cl_t.numpy(), minlength=ref.k)
        pooled += counts
        rare_all, n_all = rare_all + rare, n_all + len(v)
        hist += _rows(path.stem, ref.share, counts)
        summary.append(
            {
                "tile": path.stem,
                "pixels": len(v),
                "psi": _psi(ref.share, counts),
                "rare_share": rare / len(v) if len(v) else float("nan"),
            }
        )
    hist += _rows("all tiles", ref.share, pooled)
    summary.append(
        {
            "tile": "all tiles",
            "pixels": n_all,
            "psi": _psi(ref.share, pooled),
            "rare_share": rare_all / n_all if n_all else float("nan"),
        }
    )
    df = pd.DataFrame(summary).sort_values("psi", ascending=False, na_position="first").reset_index(drop=True)
    return pd.DataFrame(hist), df


def _rows(tile: str, train: np.ndarray, counts: np.ndarray) -> list[dict[str, object]]:
    total = counts.sum()
    return [
        {
            "tile": tile,
            "cluster": k,
            "train_share": float(train[k]),
            "tile_share": float(counts[k] / total) if total else float("nan"),
        }
        for k in range(len(train))
    ]


def _psi(train: np.ndarray, counts: np.ndarray) -> float:
    if not counts.sum():
        return float("nan")
    p_t = np.maximum(train, EPS)
    p_s = np.maximum(counts / counts.sum(), EPS)
    return float(np.sum((p_s - p_t) * np.log(p_s / p_t)))
