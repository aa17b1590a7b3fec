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

**What PSI to expect** (issue #27). A tile is one landscape (a 1 km² forest patch), the table
is Europe: against it, a tile's PSI is large even when every pixel is like some training row.
The yardstick is therefore the training data's own single landscapes: the PSI of each compact
group of training rows, one Level-1 class in one EEA 100 km cell (at least
:data:`NULL_MIN_ROWS` rows), against the whole table (:func:`expected_psi`). Those groups are
in distribution by construction, so their PSI is what "one landscape of the training data"
shows; a tile is ``beyond_expected`` for a feature when its PSI exceeds their 90th percentile.
``flag`` keeps the plain reading of PSI against the whole table.
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
NULL_MIN_ROWS = 50
"""Least training rows of a (100 km cell, Level-1 class) group in :func:`expected_psi`."""
NULL_QUANTILE = 0.9
"""The quantile of the groups' PSI a tile must exceed to be ``beyond_expected``."""
NULL_GROUPS = ("eea_cell_100km", "level1")
NULL_MIN_GROUPS = 10
"""Fewer groups than this (a small table) give no yardstick: a broader grouping (a whole
bioregion's class) is wider than one landscape and would make every tile look beyond it."""


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
    edges = _edges(ref, bins)
    return _psi_on(edges, _shares(edges, ref), smp)


def _edges(ref: np.ndarray, bins: int) -> np.ndarray:
    return np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))


def _shares(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1) / len(values)


def _psi_on(edges: np.ndarray, p_ref: np.ndarray, smp: np.ndarray) -> float:
    p_ref = np.maximum(p_ref, EPS)
    p_smp = np.maximum(_shares(edges, smp), EPS)
    return float(np.sum((p_smp - p_ref) * np.log(p_smp / p_ref)))


def expected_psi(
    train: pd.DataFrame, features: list[str], min_rows: int = NULL_MIN_ROWS, bins: int = 10
) -> dict[str, np.ndarray]:
    """The PSI that single in-distribution landscapes of the training data show against it: per
    feature, the PSI of every (EEA 100 km cell, Level-1 class) group of at least ``min_rows``
    rows against all rows (module docstring).

    Args:
        train: a FeatureTable (needs ``eea_cell_100km``, ``level1`` and the features).
        features: the features to compute it for.

    Returns:
        Feature → float64 (G,) PSI of its groups; empty when the table lacks the group columns
        or has fewer than :data:`NULL_MIN_GROUPS` groups that large (a small table).
    """
    if not set(NULL_GROUPS) <= set(train.columns):
        return {f: np.empty(0) for f in features}
    keys = train[list(NULL_GROUPS)].astype(str).agg("|".join, axis=1).to_numpy()
    codes, inverse = np.unique(keys, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(codes))
    groups = [np.flatnonzero(inverse == g) for g in np.flatnonzero(counts >= min_rows)]
    if len(groups) < NULL_MIN_GROUPS:
        return {f: np.empty(0) for f in features}
    out: dict[str, np.ndarray] = {}
    for f in features:
        ref = train[f].to_numpy(dtype=np.float64)
        ok = np.isfinite(ref)
        if not ok.any():
            out[f] = np.empty(0)
            continue
        edges = _edges(ref[ok], bins)
        p_ref = _shares(edges, ref[ok])
        vals = [ref[g][np.isfinite(ref[g])] for g in groups]
        out[f] = np.array([_psi_on(edges, p_ref, v) for v in vals if len(v) >= min_rows])
    return out


@dataclass(frozen=True)
class DriftRow:
    """One feature of one tile: PSI, KS, medians and nodata share; ``flag`` is ``stable``,
    ``moderate`` or ``shift`` (PSI against the whole table); ``expected_p90`` the 90th percentile
    of the PSI single training landscapes show (:func:`expected_psi`; NaN without groups) and
    ``beyond_expected`` whether the tile's PSI exceeds it.
    """

    tile: str
    feature: str
    psi: float
    ks: float
    median_train: float
    median_tile: float
    nodata_share: float
    flag: str
    expected_p90: float = float("nan")
    beyond_expected: bool = False


def drift_table(
    train: pd.DataFrame,
    tiles: list[Path],
    features: list[str] | None = None,
    max_pixels: int = 200_000,
    psi_threshold: float = PSI_SIGNIFICANT,
    seed: int = 0,
) -> pd.DataFrame:
    """Drift of every feature of every feature COG against the training table.

    Args:
        train: a FeatureTable (or any frame) with one column per feature (stored units).
        tiles: feature COGs (band names = feature names).
        features: the features to check (default: every band also in ``train``).
        max_pixels: pixels sampled per tile (uniformly, seeded) to bound time and memory.
        psi_threshold: PSI above which a feature is flagged ``shift``.
        seed: sampling seed.

    Returns:
        One row per (tile, feature) with the :class:`DriftRow` fields (with the PSI to expect
        from single training landscapes, :func:`expected_psi`), worst PSI first.

    Raises:
        SchemaError: no feature in common between the table and a tile (the message names both).
        RasterError: an unreadable feature COG.
    """
    rng = np.random.default_rng(seed)
    rows: list[DriftRow] = []
    nulls: dict[str, float] = {}
    for path in tiles:
        import rasterio

        with rasterio.open(path) as src:
            names = band_names(src, path)
        common = [f for f in (features or names) if f in names and f in train.columns]
        if not common:
            raise SchemaError(
                f"has no feature in common with the training table (bands {names[:6]}...)",
                "Compare a table and tiles of the same spec",
                path=path,
            )
        todo = [f for f in common if f not in nulls]
        nulls.update(
            {
                f: float(np.quantile(v, NULL_QUANTILE)) if len(v) else float("nan")
                for f, v in expected_psi(train, todo).items()
            }
        )
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
            rows.append(
                DriftRow(
                    path.stem,
                    f,
                    p,
                    ks,
                    float(np.nanmedian(ref)),
                    float(np.median(v[ok])),
                    float(1 - ok.mean()),
                    flag,
                    nulls[f],
                    bool(p > nulls[f]),
                )
            )
    df = pd.DataFrame([r.__dict__ for r in rows])
    return df.sort_values("psi", ascending=False, na_position="first").reset_index(drop=True)


READ_WITH_OOD = (
    "How to read drift and the OOD layer together: drift's PSI compares each tile's value distribution with the "
    "whole training table, and a tile of few landscapes has a large PSI against all of Europe even when none of its "
    "pixels is out of distribution; the OOD layer (`eulc map --ood`, the landscape columns of `eulc drift "
    "--bundle`) asks pixel by pixel whether the model has seen such pixels. Read the OOD share for 'is the map "
    "extrapolating here', and a PSI beyond what one training landscape shows (the 90th percentile of the table's "
    "own 100 km cell x Level-1 class groups) for a shift of the features themselves: another processing level, "
    "season or sensor."
)
"""One paragraph, shown by ``eulc drift --bundle`` and the report's drift section."""


def beyond_line(df: pd.DataFrame) -> str:
    """One line on the (tile, feature) rows of :func:`drift_table` whose PSI exceeds what single
    training landscapes show (``beyond_expected``), naming the three largest.
    """
    if df["expected_p90"].isna().all():
        return (
            f"the table has too few (100 km cell, Level-1 class) groups of {NULL_MIN_ROWS} rows to say what PSI one "
            "training landscape shows; drift against a full training table says it"
        )
    beyond = df[df["beyond_expected"].astype(bool)]
    worst = beyond.sort_values("psi", ascending=False).head(3)
    named = ", ".join(f"{r.tile} {r.feature} ({r.psi:.2f} > {r.expected_p90:.2f})" for r in worst.itertuples())
    return (
        f"{len(beyond)} of {len(df)} pair(s) beyond what one training landscape shows (the 90th percentile "
        "of the PSI of the table's own 100 km cell x Level-1 class groups against it)"
        + (f": {named}" if named else "; their PSI is the usual gap between one place and all of Europe")
    )
