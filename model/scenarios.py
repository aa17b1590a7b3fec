"""Evaluation scenarios (paper §4): EXTRAP (random 75/25, stratified), its spatially blocked
variant (whole EEA 100 km cells held out), and Leave-One-bioRegion-Out (LORO).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from pipeline.core.errors import SchemaError

MIN_TEST_SAMPLES = 100
"""LORO regions with fewer test samples are flagged as unreliable (the paper's BlackSea/Steppic)."""

SIZE_WEIGHTED = "size-weighted mean"
"""The LORO aggregate that weights each region's figure by its test points."""
LORO_AGGREGATES = {
    "mean": "mean of the held-out regions",
    f"mean (n ≥ {MIN_TEST_SAMPLES})": f"mean of the regions with at least {MIN_TEST_SAMPLES} test points",
    SIZE_WEIGHTED: "mean of the regions' figures weighted by their test points",
}
"""The three LORO figures (issue #15): every region counts once; only regions with enough test
points to trust; each region by its test points (a mean of per-region figures, not the metric of
the pooled predictions: issue #29 named it so; it was called "pooled")."""


@dataclass
class Split:
    """One train/test split: indices into the training arrays, and notes."""

    name: str
    train: np.ndarray
    test: np.ndarray
    flags: list[str] = field(default_factory=list)


def _check_classes(y: np.ndarray, idx: np.ndarray, name: str) -> None:
    counts = np.bincount(y[idx])
    rare = [int(c) for c in np.flatnonzero((counts > 0) & (counts < 2))]
    if rare:
        raise SchemaError(
            f"split {name!r}: class(es) {rare} have fewer than 2 training samples",
            "Merge or drop those classes, or use more data",
        )


def extrap_random(y: np.ndarray, seed: int, test_size: float = 0.25) -> Split:
    """Stratified random split (paper: EXTRAP, 75/25).

    Raises:
        SchemaError: a class has fewer than 2 samples.
    """
    _check_classes(y, np.arange(len(y)), "extrap")
    tr, te = train_test_split(np.arange(len(y)), test_size=test_size, random_state=seed, stratify=y)
    return Split("extrap", np.sort(tr), np.sort(te))


def extrap_blocked(y: np.ndarray, cells: np.ndarray, seed: int, test_size: float = 0.25) -> Split:
    """Spatially blocked split: whole EEA 100 km cells go to the test side (≈ ``test_size``)."""
    gss = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    tr, te = next(gss.split(np.zeros(len(y)), y, groups=cells))
    _check_classes(y, tr, "extrap-blocked")
    return Split("extrap-blocked", np.sort(tr), np.sort(te))


def loro(y: np.ndarray, regions: np.ndarray, region: str) -> Split:
    """Train on every bioregion but ``region``, test on ``region``.

    Raises:
        SchemaError: the region has no samples, or a class has < 2 training samples.
    """
    held = regions == region
    if not held.any():
        present = sorted(set(regions.tolist()))
        raise SchemaError(f"LORO region {region!r} is absent from the data", f"Use one of {present}")
    tr, te = np.flatnonzero(~held), np.flatnonzero(held)
    _check_classes(y, tr, f"loro-{region}")
    flags = [f"only {len(te)} test samples"] if len(te) < MIN_TEST_SAMPLES else []
    return Split(f"loro-{region}", tr, te, flags)
