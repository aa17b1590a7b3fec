"""Masked temporal composites, chunk by chunk: percentiles and monthly medians of a (T, H, W)
time series with NaN = masked (cloud, SCL class, nodata) (issue #7).

:func:`nan_percentiles` sorts each pixel's series once (NaN sorts last), counts the valid
acquisitions n, and interpolates every requested percentile between the order statistics at
``q/100 · (n − 1)`` — numpy's ``nanpercentile(method="linear")`` exactly, with one sort for all
percentiles instead of one selection per percentile. Pixels with no valid acquisition are NaN.

Relation to GEE: the ``ee.Reducer.percentile`` documentation says percentiles are "computed
directly" for up to ``maxRaw`` inputs and "derived from a histogram" (``maxBuckets``) beyond; it
does not state the interpolation rule of the direct computation. So on a short series the two
engines may differ by one interpolation step between neighbouring order statistics (linear here),
and on a long one by up to one histogram bucket. The parity tests compare what the graph states
(names, order, scaling, mask thresholds, the percentile list); values can only be compared where
GEE can be reached: build a table from GEE samples (``eulc gee export-table``, ``eulc table``) and
run ``eulc drift --table`` on it against the local feature COGs of the same area.

The local engine (:mod:`tiles.engine.features`) reduces each feature's series with it, one row
block of a tile at a time (bounded memory); ``benchmarks/bench_features.py`` measures that
against xarray's quantile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def nan_sorted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's series sorted, NaN last, and its count of valid values.

    Args:
        values: float (T, ...) series; NaN = masked.

    Returns:
        ``(float32 (T, ...) sorted along axis 0, int (...) valid count n)``.
    """
    v = np.sort(np.asarray(values, dtype=np.float32), axis=0)  # NaN last
    return v, np.isfinite(v).sum(axis=0)


def percentiles_of_sorted(v: np.ndarray, n: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """Percentiles of series sorted by :func:`nan_sorted`, numpy's ``nanpercentile(method="linear")``.

    Returns:
        float32 (len(q), ...); NaN where a pixel has no valid value.
    """
    out = np.empty((len(q), *v.shape[1:]), np.float32)
    last = np.maximum(n - 1, 0)
    for i, p in enumerate(q):
        pos = (p / 100.0) * last
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, last)
        frac = (pos - lo).astype(np.float32)
        a = np.take_along_axis(v, lo[None], axis=0)[0]
        b = np.take_along_axis(v, hi[None], axis=0)[0]
        r = a + (b - a) * frac
        out[i] = np.where(n > 0, np.where(frac > 0, r, a), np.nan)
    return out


def median_of_sorted(v: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The median of series sorted by :func:`nan_sorted` as ``numpy.nanmedian`` computes it in
    float32: the middle value, or the sum of the two middle values halved (``(a + b) / 2``, not
    the percentile rule's ``a + (b - a) / 2``, which may differ in the last bit).

    Returns:
        float32 (...); NaN where a pixel has no valid value.
    """
    hi = (n // 2)[None]
    lo = np.maximum(n - 1, 0)[None] // 2
    a = np.take_along_axis(v, lo, axis=0)[0]
    b = np.take_along_axis(v, np.minimum(hi, np.maximum(n - 1, 0)[None]), axis=0)[0]
    return np.where(n > 0, (a + b) / np.float32(2), np.nan).astype(np.float32)


OrderStats = Callable[[np.ndarray, tuple[float, ...], bool], tuple[np.ndarray, np.ndarray | None]]
"""How a series' order statistics are computed: ``(values (T, ...) float32 NaN = masked, percentiles,
whether the median is wanted) → (float32 (len(q), ...) percentiles, float32 (...) median or None)``,
with the rules of :func:`percentiles_of_sorted` and :func:`median_of_sorted`. The engine's own is
:func:`numpy_order_stats`; ``model.reduce_torch`` gives one that sorts in torch on a GPU."""


def numpy_order_stats(values: np.ndarray, q: tuple[float, ...], median: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """:data:`OrderStats` with numpy: one sort (:func:`nan_sorted`) for the percentiles ``q`` and,
    when ``median``, numpy's ``nanmedian``.

    Args:
        values: float32 (T, ...) series, NaN = masked (unitless or the feature's physical unit).
        q: percentiles in [0, 100].
        median: whether the median is wanted too.

    Returns:
        ``(float32 (len(q), ...), float32 (...) or None)``; NaN where a pixel has no valid value.
    """
    v, n = nan_sorted(values)
    return percentiles_of_sorted(v, n, q), (median_of_sorted(v, n) if median else None)


def nan_percentiles(values: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """Percentiles over axis 0 ignoring NaN, linear interpolation.

    Args:
        values: float (T, ...) series; NaN = masked.
        q: percentiles in [0, 100] (50 = the median).

    Returns:
        float32 (len(q), ...); NaN where a pixel has no valid value.
    """
    return percentiles_of_sorted(*nan_sorted(values), q)


def circle_offsets(radius_px: float) -> list[tuple[int, int]]:
    """(dy, dx) offsets of a circular kernel: pixel centres within ``radius_px`` of the centre
    (GEE ``ee.Kernel.circle``: 30 m at 10 m = radius 3 px, 29 pixels).
    """
    r = int(np.floor(radius_px))
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= radius_px**2]


def focal_median(values: np.ndarray, radius_px: float) -> np.ndarray:
    """NaN-aware focal median over a circle, per image (GEE ``focalMedian(radius, 'circle')``).

    Masked (NaN) pixels and pixels outside the array do not vote; a pixel whose whole
    neighbourhood is masked stays NaN. Used for the 30 m speckle filter of Sentinel-1 σ⁰
    (paper §2.1.2).

    Args:
        values: float (T, H, W) or (H, W), NaN = masked.
        radius_px: kernel radius in pixels (radius in metres / pixel size).

    Returns:
        float32 array of the same shape.
    """
    arr = np.asarray(values, dtype=np.float32)
    squeeze = arr.ndim == 2
    if squeeze:
        arr = arr[None]
    offs = circle_offsets(radius_px)
    r = max(max(abs(dy), abs(dx)) for dy, dx in offs)
    t, h, w = arr.shape
    out = np.empty_like(arr)
    for i in range(t):
        pad = np.pad(arr[i], r, constant_values=np.nan)
        shifted = np.stack([pad[r + dy : r + dy + h, r + dx : r + dx + w] for dy, dx in offs])
        out[i] = nan_percentiles(shifted, (50.0,))[0]
    return out[0] if squeeze else out
