"""The local feature engine: a :class:`~tiles.engine.stack.Stack` + a feature spec → feature arrays.

It evaluates the spec's expression strings with numexpr on the masked time series, exactly
the strings that GEE evaluates with ``ee.Image.expression``, then reduces over the window:

- masks (per the spec's sensor): cloud probability ``CLP <op> value`` (ELC10 masks ``>= 40``,
  BRIDGE-LC ``> 75``), Sen2Cor SCL classes in ``scl_mask``, and
  ``VALID == 0`` where the stack has a validity layer;
- ``daily_mosaic``: acquisitions of the same UTC day are merged, the later one on top where
  valid (GEE ``ImageCollection.mosaic`` puts the last image on top);
- statistics over the acquisitions of the map year whose month is in the window:
  ``pN`` = ``numpy.nanpercentile(..., method="linear")`` (computed by
  :func:`tiles.engine.composite.nan_percentiles`, one sort per pixel), ``median``, ``mean``, ``stddev``
  (population, ddof 0, as ``ee.Reducer.stdDev``), ``min``, ``max``; ``texture_sd`` = the
  population standard deviation over a (2r+1)² square of the annual median (GEE
  ``reduceNeighborhood(stdDev, Kernel.square(r, 'pixels'))``), over valid pixels only.
  GEE's percentile reducer may differ by an interpolation step or a histogram bucket (see
  :mod:`tiles.engine.composite`).

A precomputed index in the stack (e.g. ``ndvi``) is used for a feature whose source is that
index; otherwise the expression is evaluated on the bands.

Learned embeddings (sensor kind ``embedding``: AlphaEarth) are made by their model, not from a
stack, so this engine refuses them (:func:`check_local_engine`) and Earth Engine exports them.
"""

from __future__ import annotations

import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numexpr as ne
import numpy as np
from affine import Affine
from scipy.ndimage import uniform_filter

from pipeline.core.config import cpu_threads
from pipeline.core.errors import NoSceneError, RasterError, SpecError
from pipeline.core.grid import GridWindow
from pipeline.core.memory import return_freed_memory
from pipeline.core.spec import CloudMask, Feature, FeatureSpec
from tiles.engine.composite import OrderStats, focal_median, numpy_order_stats
from tiles.engine.stack import MASK_VARIABLES, Stack

LOCAL_KINDS = ("s2", "s1", "lst", "dem")
"""Sensor kinds this engine computes from a stack; the others (``embedding``) are refused."""


def check_local_engine(spec: FeatureSpec) -> None:
    """Refuse a spec with features this engine cannot compute (learned embeddings).

    Raises:
        SpecError: naming the first such feature, its sensor and its collection.
    """
    for f in spec.features:
        s = spec.sensors[f.sensor]
        if s.kind not in LOCAL_KINDS:
            raise SpecError(
                f"feature {f.name!r} reads {s.collection} (sensor kind {s.kind}), which the local engine "
                "cannot compute from a stack",
                "Export its tiles with Earth Engine (eulc gee export-tiles) and map them from `features_dir`, "
                "or select features without it",
            )


def feature_inputs(spec: FeatureSpec, feature: Feature, stack_vars: set[str]) -> set[str]:
    """The stack variables ``feature`` needs: its named index if the stack has it precomputed,
    else the bands of its expression (recursively for derived features).
    """
    if feature.derived:
        out: set[str] = set()
        for n in spec.derived_inputs(feature):
            out |= feature_inputs(spec, spec.feature(n), stack_vars)
        return out
    if feature.source in spec.indices and feature.source in stack_vars:
        return {feature.source}
    return spec.inputs(feature)


def _check_inputs(spec: FeatureSpec, feature: Feature, stack: Stack) -> set[str]:
    """The stack variables ``feature`` reads, checked: present, and on the same dates.

    Raises:
        RasterError: a band is missing from the stack, or the bands have different dates.
    """
    names = feature_inputs(spec, feature, set(stack.variables))
    missing = sorted(n for n in names if n not in stack.variables)
    if missing:
        raise RasterError(
            f"band(s) {missing} needed by feature {feature.name!r} are missing from the stack",
            f"Add them to the stack manifest, or select features without them "
            f"(the stack has {sorted(stack.variables)})",
            path=stack.sources[0] if stack.sources else None,
        )
    times = stack.variables[next(iter(sorted(names)))][0]
    for n in names:
        if not np.array_equal(stack.variables[n][0], times):
            raise RasterError(
                f"bands {sorted(names)} of feature {feature.name!r} have different acquisition dates",
                "Give every band for every date",
            )
    return names


def _masked_series(
    spec: FeatureSpec, feature: Feature, stack: Stack, rows: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate the feature's source on every acquisition, on the window's rows ``rows``
    (``(first, end)``, default all); return times (T,) and float32 values (T, rows, W) with
    masked pixels as NaN.

    Raises:
        RasterError: as :func:`_check_inputs`; the feature names an orbit pass the stack does
            not record (:func:`_orbit_filter`).
    """
    sensor = spec.sensors[feature.sensor]
    names = _check_inputs(spec, feature, stack)
    times = stack.variables[next(iter(sorted(names)))][0]
    r0, r1 = rows if rows is not None else (0, stack.window.height)
    keep = _orbit_filter(feature, stack, sorted(names), times)
    if feature.source in spec.indices and feature.source in stack.variables:
        values = stack.values(feature.source, (r0, r1), keep)
        if feature.source not in stack.encodings:  # a view of the stack: masked below, so copied
            values = np.array(values, dtype=np.float32)
    else:
        expr = spec.expression(feature)
        if sensor.focal_median_radius_m:  # S1 speckle filter on the bands, as GEE's focalMedian
            radius_px = sensor.focal_median_radius_m / float(stack.window.grid.res_m)
            # the chunk with a halo of the kernel's radius, cut at the window's edges as the whole
            # window is: its rows come out as the whole window's
            halo = int(np.ceil(radius_px))
            a, b = max(0, r0 - halo), min(stack.window.height, r1 + halo)
            local = {n: focal_median(stack.values(n, (a, b), keep), radius_px)[:, r0 - a : r1 - a] for n in names}
        else:
            local = {n: stack.values(n, (r0, r1), keep) for n in names}  # read only
        if sensor.kind == "s1" and sensor.units == "dB":  # stacks hold linear σ0; the spec reads dB
            with np.errstate(divide="ignore", invalid="ignore"):
                local = {n: (10 * np.log10(v)).astype(np.float32) for n, v in local.items()}
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.asarray(ne.evaluate(expr, local_dict=local), dtype=np.float32)
        values[~np.isfinite(values)] = np.nan
    times = times[keep]
    for var, test in _mask_tests(sensor.cloud_probability, sensor.scl_mask):
        if var in stack.variables:
            _apply_mask((stack.variables[var][0], stack.values(var, (r0, r1))), times, test, values)
    if sensor.daily_mosaic:
        times, values = _daily_mosaic(times, values)
    return times, values


def _take(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``values[keep]`` along axis 0, without a copy when every acquisition is kept (the caller
    only reads the result).
    """
    return values if keep.all() else values[keep]


def _orbit_filter(feature: Feature, stack: Stack, names: list[str], times: np.ndarray) -> np.ndarray:
    """Boolean (T,): the acquisitions of the feature's orbit pass (all when it names none).

    Raises:
        RasterError: the feature names a pass and the stack does not record the pass of every
            acquisition of its bands (``orbit``/``orbits`` in a manifest, ``sat:orbit_state`` in STAC).
    """
    if feature.orbit is None:
        return np.ones(len(times), bool)
    orb = stack.orbits.get(names[0]) if names else None
    if orb is None or len(orb) != len(times) or (orb == "").any():
        raise RasterError(
            f"feature {feature.name!r} uses {feature.orbit} passes only, and the stack does not "
            f"record the orbit pass of every acquisition of {names}",
            "Give `orbit:`/`orbits:` in the stack manifest, or STAC items with sat:orbit_state",
            path=stack.sources[0] if stack.sources else None,
        )
    return np.asarray(orb == feature.orbit)


def _mask_tests(clp: CloudMask | None, scl: tuple[int, ...]) -> list[tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    tests: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [("VALID", lambda v: v == 0)]
    if clp is not None:
        limit = clp.value
        tests.append(("CLP", (lambda v: v >= limit) if clp.op == ">=" else (lambda v: v > limit)))
    if scl:
        tests.append(("SCL", lambda v: np.isin(v, scl)))
    return tests


def _apply_mask(
    var: tuple[np.ndarray, np.ndarray],
    times: np.ndarray,
    test: Callable[[np.ndarray], np.ndarray],
    values: np.ndarray,
) -> None:
    """Set ``values`` (T, H, W) to NaN where the mask variable's ``test`` holds, matched to
    ``times`` by acquisition time; an acquisition without a mask layer is not masked.
    """
    mt, mv = var
    pos = {t: i for i, t in enumerate(mt)}
    for i, t in enumerate(times):
        j = pos.get(t)
        if j is not None:
            values[i][test(mv[j])] = np.nan


def _daily_mosaic(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    days = times.astype("datetime64[D]")
    uniq = np.unique(days)
    if len(uniq) == len(days):
        return times, values
    out = np.full((len(uniq), *values.shape[1:]), np.nan, dtype=np.float32)
    for k, d in enumerate(uniq):
        for i in np.flatnonzero(days == d):  # later acquisitions on top where valid
            out[k] = np.where(np.isnan(values[i]), out[k], values[i])
    return uniq.astype("datetime64[ns]"), out


def _texture_sd(median: np.ndarray, radius: int) -> np.ndarray:
    valid = np.isfinite(median)
    x = np.where(valid, median, 0.0).astype(np.float64)
    size = 2 * radius + 1
    n = uniform_filter(valid.astype(np.float64), size, mode="constant")
    s1 = uniform_filter(x, size, mode="constant")
    s2 = uniform_filter(x * x, size, mode="constant")
    with np.errstate(divide="ignore", invalid="ignore"):
        var = s2 / n - (s1 / n) ** 2
    out = np.sqrt(np.clip(var, 0.0, None))
    out[(n <= 0) | ~valid] = np.nan
    return out.astype(np.float32)


@contextmanager
def _all_nan_stays_nan() -> Iterator[None]:
    """Silence numpy's warnings for pixels without a valid acquisition (they stay NaN), around the
    series threads of :func:`compute_features`: its warnings filter is process-wide, so it is set
    once there, from the calling thread; the workers set numpy's (thread-local) error state only.
    """
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _reduce(feature: Feature, values: np.ndarray) -> np.ndarray:
    """A statistic not computed from the sorted series (those: :func:`_reduce_with_siblings`)."""
    with np.errstate(all="ignore"):  # the warnings: _all_nan_stays_nan around the threads
        match feature.stat:
            case "mean" | "value":
                return np.nanmean(values, axis=0).astype(np.float32)
            case "stddev":
                return np.nanstd(values, axis=0, ddof=0).astype(np.float32)
            case "min":
                return np.nanmin(values, axis=0).astype(np.float32)
            case "max":
                return np.nanmax(values, axis=0).astype(np.float32)
    raise RasterError(
        f"statistic {feature.stat!r} of {feature.name!r} is not implemented locally", "Use another statistic"
    )


SERIES_CHUNK_BYTES = 4 * 2**20
"""What one task's masked series may hold (float32 acquisitions × rows × width): a block's series
are computed and reduced in row chunks of this size (15 rows of a 70-date, 1,000 px block), so a
series never exists for the whole block at once and the block's memory is its stack (issue #28);
each task also holds its decoded bands, masks and sort, a few times this."""


def chunk_rows_for(stack: Stack, budget_bytes: int | None = None) -> int:
    """Rows per series task for ``stack``: as many as ``budget_bytes`` (default
    :data:`SERIES_CHUNK_BYTES`) of float32 hold at its longest time series, at least 1.
    """
    budget = SERIES_CHUNK_BYTES if budget_bytes is None else budget_bytes
    longest = max((len(t) for t, _ in stack.variables.values()), default=1)
    return max(1, budget // max(1, longest * stack.window.width * 4))


def compute_features(
    spec: FeatureSpec,
    stack: Stack,
    year: int,
    on_feature: Callable[[str], None] | None = None,
    *,
    release: bool = False,
    order_stats: OrderStats | None = None,
    threads: int | None = None,
    chunk_rows: int | None = None,
) -> np.ndarray:
    """Compute every feature of ``spec`` on ``stack`` for the map ``year``.

    Each source series (sensor, source, orbit) is masked and reduced in row chunks (tasks of
    ``chunk_rows`` rows, on threads): every statistic of a pixel depends on that pixel's series
    only, so the chunks give the values of the whole window bit for bit (the texture is computed
    from the whole window's median once its chunks are done; the S1 focal median reads the chunk
    with a halo of its radius, cut at the window's edges as the whole window is).

    Args:
        spec: the (selected) spec; output bands follow its order.
        stack: the stack on the grid window (EPSG:3035, 10 m).
        year: the map year; only acquisitions in that calendar year are used.
        on_feature: called with each feature name when it is done (progress).
        release: remove each variable from ``stack.variables`` once no later series needs it,
            so its memory is freed while the rest is reduced (the blocked computation owns its
            blocks' stacks; a caller that reads the stack afterwards leaves it False).
        order_stats: how percentiles, medians and the texture's median are computed (default
            numpy; ``model.reduce_torch.order_stats_on`` sorts in torch on a GPU, same values).
        threads: tasks computed at once (default :func:`pipeline.core.config.cpu_threads`);
            each holds one chunk's masked series and its sort.
        chunk_rows: rows per task (default :func:`chunk_rows_for`: :data:`SERIES_CHUNK_BYTES`).

    Returns:
        float32 array (F, H, W) in the spec's stored units (physical × scale); NaN = nodata.

    Raises:
        RasterError: a needed band is missing from the stack, or a feature's window holds no
            acquisition in ``year`` (the message names the feature and the window).
        SpecError: a feature this engine cannot compute (:func:`check_local_engine`).
        ValueError: ``chunk_rows`` < 1.
    """
    if chunk_rows is not None and chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    check_local_engine(spec)
    # features of one source series (sensor, source, orbit) are computed together, from one masked
    # series; the percentiles of one series and window share one sort (each percentile is
    # computed exactly as alone, so the values do not change)
    groups: dict[tuple[str, str, str | None], list[Feature]] = {}
    for f in spec.features:
        if not f.derived:
            groups.setdefault((f.sensor, f.source, f.orbit), []).append(f)
    have = set(stack.variables)
    order = list(groups.values())
    masks = set(MASK_VARIABLES) & have
    needs = [feature_inputs(spec, m[0], have) | masks for m in order]
    for members in order:  # a missing band fails before any work, on the calling thread
        _check_inputs(spec, members[0], stack)
    # one task per statistic that is not sorted, and per window of the sorted ones (their
    # siblings come along)
    reps: list[list[Feature]] = []
    for members in order:
        mine: list[Feature] = []
        for f in members:
            if not _sorts(f) or all(g.window.months != f.window.months or not _sorts(g) for g in mine):
                mine.append(f)
        reps.append(mine)
    height, width = stack.window.shape
    rows = chunk_rows or chunk_rows_for(stack)
    spans = [(r0, min(height, r0 + rows)) for r0 in range(0, height, rows)]
    tasks = [(g, r0, r1) for g in range(len(order)) for r0, r1 in spans]
    physical: dict[str, np.ndarray] = {
        f.name: np.empty((height, width), np.float32) for f in spec.features if not f.derived
    }
    medians: dict[tuple[int, str], np.ndarray] = {}  # (group, window rep) → the block's median, for textures
    for g, mine in enumerate(reps):
        for f in mine:
            if _sorts(f) and any(t.stat == "texture_sd" and t.window.months == f.window.months for t in order[g]):
                medians[(g, f.name)] = np.empty((height, width), np.float32)
    chunks_left = Counter(g for g, _, _ in tasks)
    uses = Counter(n for ns in needs for n in ns)  # series still to read each stack variable
    lock = threading.Lock()

    def task(g: int, r0: int, r1: int) -> None:
        members = order[g]
        series = _masked_series(spec, members[0], stack, (r0, r1))
        for f in reps[g]:
            done: dict[str, np.ndarray] = {}
            med = _reduce_with_siblings(spec, stack, f, members, series, year, done, order_stats)
            for name, v in done.items():
                physical[name][r0:r1] = v
            if med is not None:
                medians[(g, f.name)][r0:r1] = med
        del series
        if release:  # a variable no series left to compute reads is dropped: its memory is freed
            with lock:
                chunks_left[g] -= 1
                if chunks_left[g] == 0:
                    for n in needs[g]:
                        uses[n] -= 1
                        if uses[n] == 0:
                            stack.variables.pop(n, None)

    # the tasks run on threads (numexpr and numpy's sorts release the GIL); numpy's all-NaN
    # warnings are silenced once around them (warnings filters are process-wide)
    n_threads = min(len(tasks), threads if threads is not None else cpu_threads())
    with _all_nan_stays_nan():
        if n_threads <= 1:
            for args in tasks:
                task(*args)
        else:
            with ThreadPoolExecutor(n_threads, thread_name_prefix="eulc-series") as pool:
                for fut in [pool.submit(task, *args) for args in tasks]:
                    fut.result()  # the first failure, once every task has ended
        for (g, rep), med in medians.items():  # around the median: numpy's nanmedian, bit for bit
            months = next(f.window.months for f in order[g] if f.name == rep)
            for tex in order[g]:
                if tex.stat == "texture_sd" and tex.window.months == months:
                    physical[tex.name] = _texture_sd(med, int(tex.kernel_radius_px or 1))
    for members in order:
        if on_feature:
            for f in members:
                on_feature(f.name)
    for f in spec.features:
        if f.derived:
            with np.errstate(divide="ignore", invalid="ignore"):
                physical[f.name] = np.asarray(ne.evaluate(f.derived, local_dict=physical), dtype=np.float32)
            if on_feature:
                on_feature(f.name)
    return np.stack([physical[f.name] * np.float32(f.scale) for f in spec.features]).astype(np.float32)


def _percentile_of(feature: Feature) -> float | None:
    """The percentile a feature is (``pN`` or ``median``), else None."""
    if feature.percentile is not None:
        return float(feature.percentile)
    return 50.0 if feature.stat == "median" else None


def _reduce_with_siblings(
    spec: FeatureSpec,
    stack: Stack,
    f: Feature,
    members: list[Feature],
    series: tuple[np.ndarray, np.ndarray],
    year: int,
    physical: dict[str, np.ndarray],
    order_stats: OrderStats | None = None,
) -> np.ndarray | None:
    """Reduce ``f`` over the acquisitions of ``year`` in its window, into ``physical``; a
    percentile or median together with every member of ``members`` that is one over the same
    window, from one sort (:func:`tiles.engine.composite.nan_sorted`: numpy's linear
    ``nanpercentile`` and ``nanmedian``, bit for bit).

    Returns:
        float32 (rows, W): the median of that window when a member is a texture over it (the
        caller computes the texture from the whole window's median), else None.
    """
    times, values = series
    keep = _in_window(spec, f, stack, times, year)
    if not _sorts(f):
        physical[f.name] = _reduce(f, _take(values, keep))
        return None
    same = [g for g in members if g.window.months == f.window.months and _sorts(g)]
    pct = [(g, q) for g in same if (q := _percentile_of(g)) is not None]
    textures = any(g.stat == "texture_sd" for g in same)
    with np.errstate(all="ignore"):  # the warnings: _all_nan_stays_nan around the threads
        res, med = (order_stats or numpy_order_stats)(_take(values, keep), tuple(q for _, q in pct), textures)
    for (g, _), r in zip(pct, res, strict=True):
        physical[g.name] = r
    return med


def _sorts(f: Feature) -> bool:
    """Whether ``f`` is computed from its series sorted: a percentile, the median, or the
    texture (the standard deviation around the median).
    """
    return _percentile_of(f) is not None or f.stat == "texture_sd"


def _in_window(spec: FeatureSpec, f: Feature, stack: Stack, times: np.ndarray, year: int) -> np.ndarray:
    """Boolean (T,): the acquisitions of ``year`` in the feature's window (every one for terrain).

    Raises:
        RasterError: no acquisition is left (the message names the feature and the window).
    """
    years = times.astype("datetime64[Y]").astype(int) + 1970
    months = times.astype("datetime64[M]").astype(int) % 12 + 1
    keep = (years == year) & np.isin(months, f.window.months)
    if spec.sensors[f.sensor].kind == "dem":  # terrain has no acquisition year: every layer counts
        keep = np.ones(len(times), bool)
    if not keep.any():
        inputs = sorted(feature_inputs(spec, f, set(stack.variables)))
        raise RasterError(
            f"feature {f.name!r}: the stack has no acquisition of {inputs} in {year} months {list(f.window.months)}",
            "Pick a year the stack covers, or select features the stack can compute",
            path=stack.sources[0] if stack.sources else None,
        )
    return keep


def computable_features(spec: FeatureSpec, stack: Stack, year: int) -> list[str]:
    """Names of the spec's features that ``stack`` can compute for ``year``: every input band
    present, and at least one acquisition of them in the feature's window of that year.

    This is how a map is made from a stack that lacks sensors (e.g. S2 only, no S1): the
    model is trained on this subset (a FeatureSelection with method ``stack-availability``).
    """
    out = []
    have = set(stack.variables)
    for f in spec.features:
        needs = feature_inputs(spec, f, have)
        if not needs or not needs <= have:
            continue
        if f.derived:
            out.append(f.name)
            continue
        t = stack.variables[next(iter(sorted(needs)))][0]
        years = t.astype("datetime64[Y]").astype(int) + 1970
        months = t.astype("datetime64[M]").astype(int) % 12 + 1
        if ((years == year) & np.isin(months, f.window.months)).any():
            out.append(f.name)
    return [n for n in out if all(x in out for x in spec.derived_inputs(spec.feature(n)))]


def halo_px(spec: FeatureSpec, res_m: float = 10.0) -> int:
    """Rows of context a block needs so that neighbourhood features (``texture_sd`` kernels, the
    S1 focal median, or both in turn) come out as on the whole tile.
    """
    tex = [int(f.kernel_radius_px or 1) for f in spec.features if f.stat == "texture_sd"]
    foc = [
        int(np.ceil(s.focal_median_radius_m / res_m))
        for k, s in spec.sensors.items()
        if s.focal_median_radius_m and any(f.sensor == k for f in spec.features)
    ]
    return max(tex, default=0) + max(foc, default=0)


def compute_features_blocked(
    spec: FeatureSpec,
    load: Callable[[GridWindow], Stack],
    window: GridWindow,
    year: int,
    block_rows: int = 256,
    on_block: Callable[[int, int], None] | None = None,
    order_stats: OrderStats | None = None,
) -> tuple[np.ndarray, Stack]:
    """:func:`compute_features` one row block at a time, so memory is bounded by a block's stack
    (T × bands × (block_rows + 2·halo) × width), not the tile's.

    Args:
        spec: the (selected) spec.
        load: reads the stack of a grid window (a local manifest or STAC items).
        window: the tile (EPSG:3035, 10 m).
        year: the map year.
        block_rows: rows per block; each block is read with :func:`halo_px` extra rows above and
            below, then cropped, so neighbourhood features equal the whole-tile computation.
        on_block: progress callback ``(done, total)``.
        order_stats: as for :func:`compute_features`.

    Returns:
        ``(features float32 (F, H, W), the first block's stack)``: its level, sources, orbits
        and each variable's dates, with empty (0, H, W) arrays.

    A block that no acquisition covers (``load`` raises :class:`NoSceneError`: sea, a border
    strip) stays nodata (NaN, counted in the COG's ``nodata_pixels``).

    Raises:
        NoSceneError: no block of the tile has an acquisition.
        RasterError: as :func:`compute_features`, for the first block that fails.
    """
    halo = halo_px(spec, window.grid.res_m)
    out = np.full((len(spec.features), window.height, window.width), np.nan, np.float32)
    r = window.grid.res_m
    starts = list(range(0, window.height, block_rows))
    first: Stack | None = None
    empty: list[NoSceneError] = []
    for i, r0 in enumerate(starts):
        top = max(0, r0 - halo)
        bottom = min(window.height, r0 + block_rows + halo)
        t = window.transform
        sub = GridWindow(window.grid, Affine(t.a, t.b, t.c, t.d, t.e, t.f - top * r), bottom - top, window.width)
        try:
            stack = load(sub)
        except NoSceneError as e:  # e.g. the sea or a border strip of the tile: that block stays nodata
            empty.append(e)
            if on_block:
                on_block(i + 1, len(starts))
            continue
        # what the caller needs of the stack (level, sources, the variables' dates), without
        # holding the first block's arrays for the whole tile
        first = first or Stack(
            stack.window,
            {k: (t, np.empty((0, sub.height, sub.width), np.float32)) for k, (t, _) in stack.variables.items()},
            stack.level,
            stack.sources,
            stack.orbits,
        )
        vals = compute_features(spec, stack, year, release=True, order_stats=order_stats)
        del stack  # freed before the next block is read: one block's stack at a time
        return_freed_memory()  # and given back to the system (glibc keeps it otherwise)
        h = min(block_rows, window.height - r0)
        out[:, r0 : r0 + h] = vals[:, r0 - top : r0 - top + h]
        del vals
        if on_block:
            on_block(i + 1, len(starts))
    if first is None:  # no block has a scene: the tile has none
        raise empty[0]
    return out, first
