"""The physical and logical range of every number a model bundle carries, checked before use.

A bundle is a user file: ``bundle.json`` and ``ood.json`` can be edited by hand or arrive from
elsewhere. Each number is checked against the range eulc itself can produce, so an edit never
turns into a one-class or meaningless map with exit status 0 (issue #26):

- ``architecture.temperature`` in [:data:`TEMPERATURE_MIN`, :data:`TEMPERATURE_MAX`], the clamp
  of :func:`model.calibration.fit_temperature` (Guo et al. 2017 temperature scaling);
- normaliser ``center``, ``scale``, ``lo``, ``hi`` (stored feature units): centre finite; scale
  finite in [:data:`SCALE_MIN`, :data:`SCALE_MAX`]; bounds not NaN and ``lo < hi``;
- the class count: at most :data:`MAX_MAP_CLASSES`, since maps are uint8 with nodata 255, and
  legend ids in 0…254;
- the network size (parameters, :data:`MAX_PARAMETERS`), computed on PyTorch's ``meta`` device
  before any tensor is allocated;
- the training class priors: finite, ≥ 0, summing to 1 (± 1e-3);
- the OOD reference: thresholds finite and ≥ 0, ``rare_share`` and ``quantile`` in [0, 1],
  cluster shares in [0, 1].

Every failure is a :class:`~pipeline.core.errors.BundleError` naming the file and the key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from pipeline.core.errors import BundleError

TEMPERATURE_MIN = 0.05
TEMPERATURE_MAX = 20.0
SCALE_MIN = 1e-6
SCALE_MAX = 1e9
MAX_MAP_CLASSES = 254
MAX_PARAMETERS = 50_000_000
"""200 MB of float32 weights: 35× the shipped bundles (1.4 M parameters at most)."""
RESTORE = "Restore it as eulc wrote it, or retrain the bundle"


def _number(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_temperature(t: Any, path: Path) -> float:
    """``t`` as a float in [0.05, 20].

    Raises:
        BundleError: naming ``architecture.temperature`` in ``path``.
    """
    if not _number(t) or not math.isfinite(t) or not TEMPERATURE_MIN <= t <= TEMPERATURE_MAX:
        raise BundleError(
            f"architecture.temperature = {t!r} is outside {TEMPERATURE_MIN}..{TEMPERATURE_MAX} "
            "(the range calibration produces)",
            RESTORE,
            path=path,
        )
    return float(t)


def check_normaliser(
    center: np.ndarray, scale: np.ndarray, lo: np.ndarray, hi: np.ndarray, features: Sequence[str], path: Path
) -> None:
    """Check (F,) float arrays of the affine normaliser ``clip((x − center) / scale, lo, hi)``.

    Raises:
        BundleError: naming ``normalizer.<key>`` and the first offending feature.
    """

    def first(mask: np.ndarray) -> str:
        return features[int(np.flatnonzero(mask)[0])]  # the arrays have one entry per feature

    bad = ~np.isfinite(center)
    if bad.any():
        raise BundleError(
            f"normalizer.center of {first(bad)} is {center[bad][0]!r}, not a finite number", RESTORE, path=path
        )
    bad = ~np.isfinite(scale) | (scale < SCALE_MIN) | (scale > SCALE_MAX)
    if bad.any():
        raise BundleError(
            f"normalizer.scale of {first(bad)} is {float(scale[bad][0])!r}, outside {SCALE_MIN:g}..{SCALE_MAX:g}",
            RESTORE,
            path=path,
        )
    bad = ~(lo < hi)  # NaN compares false: a NaN bound is refused too
    if bad.any():
        raise BundleError(
            f"normalizer bounds of {first(bad)} are lo = {float(lo[bad][0])!r}, hi = "
            f"{float(hi[bad][0])!r}; lo must be below hi",
            RESTORE,
            path=path,
        )


def check_classes(n_classes: int, ids: Sequence[int], path: Path) -> None:
    """At most 254 classes with ids in 0…254 (the uint8 map's nodata is 255).

    Raises:
        BundleError: naming ``architecture.n_classes`` or the legend id.
    """
    if n_classes > MAX_MAP_CLASSES:
        raise BundleError(
            f"architecture.n_classes = {n_classes}: a map is uint8 with nodata 255, so at most "
            f"{MAX_MAP_CLASSES} classes fit",
            "Merge classes, or split the legend into levels",
            path=path,
        )
    out = [i for i in ids if not (isinstance(i, (int, np.integer)) and 0 <= int(i) <= MAX_MAP_CLASSES)]
    if out:
        raise BundleError(
            f"legend id {out[0]!r} does not fit the uint8 map (0..{MAX_MAP_CLASSES}; 255 is nodata)", RESTORE, path=path
        )


def check_parameters(n_parameters: int, path: Path) -> None:
    """Refuse a network of more than :data:`MAX_PARAMETERS` parameters (before allocation).

    Raises:
        BundleError: naming the count.
    """
    if n_parameters > MAX_PARAMETERS:
        raise BundleError(
            f"its architecture has {n_parameters:,} parameters ({n_parameters * 4 / 2**30:.1f} GiB), "
            f"more than eulc's limit of {MAX_PARAMETERS:,}",
            RESTORE,
            path=path,
        )


def check_prior(prior: Any, n_classes: int, path: Path) -> np.ndarray:
    """``metrics.class_prior`` as (C,) float64: finite, ≥ 0, summing to 1 (± 1e-3).

    Raises:
        BundleError: naming ``metrics.class_prior``.
    """
    if not isinstance(prior, list) or len(prior) != n_classes or not all(_number(p) for p in prior):
        raise BundleError(f"metrics.class_prior is not a list of {n_classes} numbers", RESTORE, path=path)
    p = np.asarray(prior, np.float64)
    if not np.isfinite(p).all() or (p < 0).any() or abs(p.sum() - 1.0) > 1e-3:
        raise BundleError(
            f"metrics.class_prior must be {n_classes} shares ≥ 0 summing to 1 (sum {p.sum():.6g})", RESTORE, path=path
        )
    return p


def check_ood(meta: dict[str, Any], share: np.ndarray, path: Path) -> None:
    """The numbers of ``ood.json`` and the cluster shares of ``ood.safetensors``.

    Raises:
        BundleError: naming the key in ``ood.json``.
    """
    for key in ("landscape_threshold", "distance_threshold"):
        v = meta.get(key)
        if not _number(v) or not math.isfinite(v) or v < 0:
            raise BundleError(f"{key} = {v!r} must be a finite number ≥ 0", "Refit it with `eulc ood`", path=path)
    for key in ("rare_share", "quantile"):
        v = meta.get(key)
        if key in meta and (not _number(v) or not 0 <= v <= 1):
            raise BundleError(f"{key} = {v!r} must be in [0, 1]", "Refit it with `eulc ood`", path=path)
    if not np.isfinite(share).all() or (share < 0).any() or (share > 1).any():
        raise BundleError("cluster shares must be in [0, 1]", "Refit it with `eulc ood`", path=path)
