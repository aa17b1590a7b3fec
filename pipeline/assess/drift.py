"""Drift check: per feature and tile, how far the tile is from the training table (issue #7).

For each feature, the training table's values (the reference) are compared with the values of
the same feature over each feature COG (pixels, subsampled):

- **PSI**, the population stability index, on 10 bins at the reference deciles (open-ended
  outer bins, ε = 1e-4 for empty bins): ``Σ (p_tile − p_ref) · ln(p_tile / p_ref)``. The
  usual reading: < 0.10 stable, 0.10–0.25 moderate shift, > 0.25 significant shift.
- **KS**, the two-sample Kolmogorov–Smirnov statistic (``scipy.stats.ks_2samp``), the largest
  gap between the two cumulative distributions.

A feature is flagged when PSI exceeds ``psi_threshold`` (default 0.25). Accuracy collapses on
landscapes absent from training (cross-continent SEN12MS studies); this makes that warning a
number per feature and tile. Values are in the spec's stored units on both sides; NaN (nodata)
is ignored and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from pipeline.core.errors import SchemaError
from pipeline.core.featurecog import band_names
from pipeline.core.reader import FeatureReader

PSI_MODERATE = 0.10
PSI_SIGNIFICANT = 0.25
EPS = 1e-4


def psi(reference: np.ndarray, sample: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``sample`` against ``reference`` (1-D float arrays, NaN
    ignored), on ``bins`` quantile bins of the reference.

    Raises:
        ValueError: either side has no finite value.
    """
    ref = reference[np.isfinite(reference)]
    smp = sample[np.isfinite(sample)]
    if not len(ref) or not len(smp):
        raise ValueError("no finite values")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    p_ref = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    p_smp = np.bincount(np.searchsorted(edges, smp, side="right"), minlength=len(edges) + 1) / len(smp)
    p_ref = np.maximum(p_ref, EPS)
    p_smp = np.maximum(p_smp, EPS)
    return float(np.sum((p_smp - p_ref) * np.log(p_smp / p_ref)))


@dataclass(frozen=True)
class DriftRow:
    """One feature of one tile: PSI, KS, medians and nodata share; ``flag`` is ``stable``,
    ``moderate`` or ``shift``.
    """

    tile: str
    feature: str
    psi: float
    ks: float
    median_train: float
    median_tile: float
    nodata_share: float
    flag: str


def drift_table(train: pd.DataFrame, tiles: list[Path], features: list[str] | None = None,
                max_pixels: int = 200_000, psi_threshold: float = PSI_SIGNIFICANT, seed: int = 0) -> pd.DataFrame:
    """Drift of every feature of every feature COG against the training table.

    Args:
        train: a FeatureTable (or any frame) with one column per feature (stored units).
        tiles: feature COGs (band names = feature names).
        features: the features to check (default: every band also in ``train``).
        max_pixels: pixels sampled per tile (uniformly, seeded) to bound time and memory.
        psi_threshold: PSI above which a feature is flagged ``shift``.
        seed: sampling seed.

    Returns:
        One row per (tile, feature) with the :class:`DriftRow` fields, worst PSI first.

    Raises:
        SchemaError: no feature in common between the table and a tile (the message names both).
        RasterError: an unreadable feature COG.
    """
    rng = np.random.default_rng(seed)
    rows: list[DriftRow] = []
    for path in tiles:
        import rasterio

        with rasterio.open(path) as src:
            names = band_names(src, path)
        common = [f for f in (features or names) if f in names and f in train.columns]
        if not common:
            raise SchemaError(f"has no feature in common with the training table (bands {names[:6]}...)",
                              "Compare a table and tiles of the same spec", path=path)
        with FeatureReader(path, common) as r:
            vals = r.read().reshape(len(common), -1)
        if vals.shape[1] > max_pixels:
            vals = vals[:, rng.choice(vals.shape[1], max_pixels, replace=False)]
        for i, f in enumerate(common):
            ref = train[f].to_numpy(dtype=np.float64)
            v = vals[i].astype(np.float64)
            ok = np.isfinite(v)
            if not ok.any():
                rows.append(DriftRow(path.stem, f, np.nan, np.nan, float(np.nanmedian(ref)), np.nan, 1.0, "no data"))
                continue
            p = psi(ref, v)
            ks = float(ks_2samp(ref[np.isfinite(ref)], v[ok]).statistic)
            flag = "shift" if p > psi_threshold else ("moderate" if p > PSI_MODERATE else "stable")
            rows.append(DriftRow(path.stem, f, p, ks, float(np.nanmedian(ref)), float(np.median(v[ok])),
                                 float(1 - ok.mean()), flag))
    df = pd.DataFrame([r.__dict__ for r in rows])
    return df.sort_values("psi", ascending=False, na_position="first").reset_index(drop=True)
