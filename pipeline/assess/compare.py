"""Map-versus-reference comparison on the map's grid: area-weighted confusion, agreement per
block and per bioregion, a disagreement COG and its hotspots (issue #6; paper §4.5).

The reference raster is reprojected onto the class map's grid (mode when it is finer, nearest
otherwise) and crosswalked to Level-1. Every code of the reference must be in the crosswalk
(unknown codes are an error that lists them); codes the crosswalk drops on purpose (nodata,
outside) and map nodata are left out and counted. Areas are in hectares: pixel area = |a·e| of
the map transform (m²) / 10⁴.

:func:`compare` runs window by window (issue #16): the map (a COG, or a VRT mosaic of many)
and the reference, warped onto each window of the map's grid in the reference's own dtype, are
read one window at a time, and the confusion matrix, the block agreement, the disagreement COG
and decimated quicklook arrays are accumulated, so memory follows the window, not the map or the
reference (a 10⁸-pixel map against a pan-European reference stays under 2 GB).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
from pyproj import CRS
from rasterio.coords import disjoint_bounds
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from pipeline.core.bioregion import assign_bioregion
from pipeline.core.cog import cog_writer
from pipeline.core.confusion import class_accuracies
from pipeline.core.eea import cell_codes
from pipeline.core.errors import RasterError
from pipeline.core.legend import Crosswalk, Legend, MappingReport, code_key
from pipeline.core.warp import open_on_grid

log = logging.getLogger(__name__)

NODATA = 255
BLOCK_M = 250.0
"""Side of the blocks over which agreement is summarised and hotspots are ranked (metres)."""
DISAGREE_RGB = (0, 0, 0)
"""Colour of disagreeing pixels (black: no class of the Level-1 or Level-2 legends uses it)."""
WINDOW_PX = 2048
"""Target side of the windows the comparison reads (rounded to whole blocks): ~4 Mpx, ~60 MB."""
THUMB_PX = 1200
"""Longest side of the decimated map and reference kept for the report's quicklooks (pixels)."""


def _pixel_size_m(src: rasterio.DatasetReader) -> float:
    crs = CRS.from_user_input(src.crs)
    size = float(abs(src.transform.a))
    if crs.is_geographic:  # degrees → metres at the raster's centre latitude
        lat = (src.bounds.top + src.bounds.bottom) / 2
        size *= 111_320.0 * float(np.cos(np.radians(lat)))
    return size


def _open(path: Path) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except RasterioIOError as e:
        raise RasterError(f"cannot be read ({e})", "Check the file", path=path) from None


def align_reference(reference: Path, map_path: Path) -> tuple[np.ndarray, str]:
    """Reproject band 1 of ``reference`` onto the grid of ``map_path``, whole (one tile, e.g. for
    a quicklook), with the same exact warp as :func:`compare`, which reads window by window.

    Returns:
        ``(codes, method)``: float64 (H, W) reference codes (NaN = nodata or outside) and the
        resampling method used (``mode`` or ``nearest``).

    Raises:
        RasterError: unreadable file or missing CRS.
    """
    method = _method(reference, map_path)
    with _open(map_path) as m:
        transform, crs, shape = m.transform, m.crs, (m.height, m.width)
    with open_on_grid(reference, transform, crs, shape, resampling=Resampling[method]) as ref:
        values, valid = ref.read(Window(0, 0, shape[1], shape[0]))
    codes = values.astype(np.float64)
    codes[~valid] = np.nan
    return codes, method


def _method(reference: Path, map_path: Path) -> str:
    """``mode`` when the reference's pixels are finer than 0.75 × the map's, else ``nearest``."""
    with _open(reference) as ref, _open(map_path) as m:
        if ref.crs is None:
            raise RasterError("has no CRS", "Assign the reference map's CRS", path=reference)
        return "mode" if _pixel_size_m(ref) < 0.75 * _pixel_size_m(m) else "nearest"


@dataclass
class Comparison:
    """A map compared with a reference on the map's grid, accumulated window by window.

    Attributes:
        confusion: int64 (K, K) pixel counts, rows = map, columns = reference.
        pixel_ha: the area of one pixel in hectares.
        transform, crs, shape: the map grid ((H, W) pixels).
        resampling: how the reference was aligned (``mode`` or ``nearest``).
        crosswalk_report: codes mapped, dropped on purpose, missing (pixels of the reference
            on the map's grid).
        map_nodata: map pixels without a class (nodata or an id outside the legend).
        reference_excluded: map pixels with a class where the reference is nodata, outside
            its extent, or a code the crosswalk drops.
        blocks: one row per block of ``block_m`` with a compared pixel (grid-aligned from the map's
            top-left corner): ``x_m``, ``y_m`` (block centre, map CRS), ``n_pixels``,
            ``n_agree``, ``agreement``, in reading order.
        block_m: the block side (metres).
        thumb_map: uint8 (h, w) map classes at every ``thumb_step``-th pixel (255 = none).
        thumb_ref: int16 (h, w) crosswalked reference classes at the same pixels (-1 = none).
        thumb_step: the decimation step of the thumbnails (1 = every pixel).
        disagreement: the disagreement COG written, or None.
        confusion_ood: with an OOD layer, int64 (K, K) like ``confusion`` over the compared
            pixels the layer flags (code > 0); ``confusion - confusion_ood`` is the rest.
        thumb_ood: with an OOD layer, uint8 (h, w) codes at the thumbnail pixels (255 = none).
        ood_counts: with an OOD layer, mapped pixels per code (0–3), compared or not.
    """

    confusion: np.ndarray
    pixel_ha: float
    transform: Any
    crs: str
    shape: tuple[int, int]
    resampling: str
    crosswalk_report: dict[str, Any]
    map_nodata: int
    reference_excluded: int
    blocks: pd.DataFrame
    block_m: float
    thumb_map: np.ndarray
    thumb_ref: np.ndarray
    thumb_step: int
    disagreement: Path | None = None
    confusion_ood: np.ndarray | None = None
    thumb_ood: np.ndarray | None = None
    ood_counts: np.ndarray | None = None

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(left, right, bottom, top) of the map grid in its CRS (metres), as matplotlib takes it."""
        h, w = self.shape
        t = self.transform
        return (t.c, t.c + w * t.a, t.f + h * t.e, t.f)


@dataclass
class _CodeMapper:
    """Reference codes → legend ids through the crosswalk, one lookup per distinct code: a table
    indexed by the code for (u)int8/16 rasters, a dict for other dtypes. Keeps each code's
    pixel count for the crosswalk report.
    """

    crosswalk: Crosswalk
    dtype: np.dtype
    counts: dict[Any, int] = field(default_factory=dict)
    ids: dict[Any, int] = field(default_factory=dict)
    unknown: set[Any] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.small = self.dtype.kind in "ui" and self.dtype.itemsize <= 2
        if self.small:
            self.offset = 0 if self.dtype.kind == "u" else 2 ** (8 * self.dtype.itemsize - 1)
            size = 2 ** (8 * self.dtype.itemsize)
            self.hist = np.zeros(size, np.int64)
            self.lut = np.full(size, -1, np.int16)
            self.seen = np.zeros(size, bool)

    def _lookup(self, codes: np.ndarray) -> np.ndarray:
        ids, rep = self.crosswalk.apply(codes)
        self.unknown.update(c for c in codes.tolist() if code_key(c) in rep.unknown)
        return ids

    def map(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """int16 ids (h, w) of ``values`` (h, w) where ``valid``; -1 elsewhere and for dropped codes."""
        if self.small:
            idx = values.astype(np.int32) + self.offset
            h = np.bincount(idx[valid], minlength=self.hist.size)
            self.hist += h
            new = (h > 0) & ~self.seen
            if new.any():
                codes = (np.flatnonzero(new) - self.offset).astype(self.dtype)
                self.lut[new] = self._lookup(codes)
                self.seen |= new
            out = self.lut[idx]
            out[~valid] = -1
            return out
        uniq, inv, cnt = np.unique(values[valid], return_inverse=True, return_counts=True)
        fresh = [u for u in uniq.tolist() if u not in self.ids]
        if fresh:
            self.ids.update(zip(fresh, self._lookup(np.asarray(fresh, self.dtype)).tolist(), strict=True))
        for u, n in zip(uniq.tolist(), cnt.tolist(), strict=True):
            self.counts[u] = self.counts.get(u, 0) + n
        out = np.full(values.shape, -1, np.int16)
        out[valid] = np.asarray([self.ids[u] for u in uniq.tolist()], np.int16)[inv.ravel()]
        return out

    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """(codes, pixel counts) of every code read so far."""
        if self.small:
            nz = np.flatnonzero(self.hist)
            return (nz - self.offset).astype(self.dtype), self.hist[nz]
        return np.asarray(list(self.counts), self.dtype), np.asarray(list(self.counts.values()), np.int64)

    def report(self) -> MappingReport:
        """The crosswalk report of every pixel read, in pixels."""
        codes, n = self.histogram()
        return self.crosswalk.apply(codes, counts=n)[1]

    def check_unknown(self, reference: Path) -> None:
        """Raise when a code read so far is absent from the crosswalk (listed with its pixels)."""
        if not self.unknown:
            return
        codes, n = self.histogram()
        per = dict(zip(codes.tolist(), n.tolist(), strict=True))
        listed = ", ".join(f"{code_key(c)} ({per.get(c, 0)} px)" for c in sorted(self.unknown))
        raise RasterError(
            f"has codes missing from the crosswalk {self.crosswalk.name!r}: {listed} "
            "(pixel counts over the part read before the comparison stopped)",
            "Add them to the crosswalk CSV (or choose the crosswalk of this product)",
            path=reference,
        )


def _block_sums(a: np.ndarray, step: int) -> np.ndarray:
    """int32 (ceil(h/step), ceil(w/step)) sums of bool ``a`` (h, w) over step × step blocks."""
    r = np.add.reduceat(a, np.arange(0, a.shape[0], step), axis=0, dtype=np.int32)
    return np.add.reduceat(r, np.arange(0, a.shape[1], step), axis=1, dtype=np.int32)


def _check_overlap(map_path: Path, reference: Path) -> None:
    with _open(map_path) as m, _open(reference) as r:
        for src, p in ((m, map_path), (r, reference)):
            if src.crs is None:
                raise RasterError("has no CRS", "Assign one (e.g. `rio edit-info --crs EPSG:3035`)", path=p)
            if src.transform.is_identity:
                raise RasterError(
                    "has a CRS but no geotransform",
                    "Georeference it (e.g. `rio edit-info --transform`) or export it again with its transform",
                    path=p,
                )
        rb = transform_bounds(r.crs, m.crs, *r.bounds, densify_pts=21)
        if disjoint_bounds(tuple(m.bounds), rb) or not _overlaps(tuple(m.bounds), rb):
            mb = tuple(round(v) for v in m.bounds)
            raise RasterError(
                f"does not overlap the map {map_path.name} (map bounds {mb}, reference bounds in "
                f"the map CRS {tuple(round(v) for v in rb)})",
                "Give a reference that covers the mapped area",
                path=reference,
            )


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def windows(shape: tuple[int, int], step: int, window_px: int = WINDOW_PX) -> list[Window]:
    """Row-major windows over a (H, W) grid, each side a multiple of ``step`` near ``window_px``
    (the last row and column of windows take what is left).
    """
    side = max(step, window_px // step * step)
    h, w = shape
    return [
        Window(c0, r0, min(side, w - c0), min(side, h - r0)) for r0 in range(0, h, side) for c0 in range(0, w, side)
    ]


def compare(
    map_path: Path,
    reference: Path,
    crosswalk: Crosswalk,
    legend: Legend,
    *,
    disagreement: Path | None = None,
    block_m: float = BLOCK_M,
    window_px: int = WINDOW_PX,
    thumb_px: int = THUMB_PX,
    on_window: Callable[[int, int], None] | None = None,
    ood: Path | None = None,
) -> Comparison:
    """Align, crosswalk and cross-tabulate a class map and a reference raster, window by window.

    Each window of the map's grid reads the map and the reference warped onto it (GDAL reads
    only the reference blocks it needs, in the reference's dtype); nothing of the size of the map
    or of the reference is held in memory.

    Args:
        map_path: class raster (uint8 ids of ``legend``, nodata 255), projected CRS in metres: a
            COG from ``eulc map`` or a VRT mosaic of them.
        reference: reference raster in any CRS (CLC+ Backbone, CORINE, ...).
        crosswalk: reference codes → ``legend`` ids.
        legend: the map legend (Level-1).
        disagreement: when given, the disagreement COG is written there (0 agree, 1 disagree,
            255 nodata on either side; uint8, the map's grid, mode overviews).
        block_m: the side of the agreement blocks (metres).
        window_px: target side of the windows read (pixels; rounded to whole blocks).
        thumb_px: longest side of the decimated quicklook arrays.
        on_window: called with (windows done, windows in all) after each window (progress).
        ood: the map's OOD layer (``<tile>_ood.tif`` of ``eulc map --ood``: codes 0–3, 255
            nodata), on the map's very grid: adds agreement inside and outside the flagged
            pixels and an ``n_ood`` (flagged compared pixels) column to the blocks.

    Raises:
        RasterError: unreadable rasters, a missing CRS or transform, rasters that do not
            overlap, an OOD layer on another grid, or reference codes missing from the crosswalk
            (listed with their pixel counts; the comparison stops at the first window that has one).
    """
    _check_overlap(map_path, reference)
    if ood is not None:
        _check_same_grid(ood, map_path)
    method = _method(reference, map_path)
    k = len(legend)
    with _open(map_path) as m:
        transform, crs, shape = m.transform, str(m.crs), (m.height, m.width)
        nod = m.nodata if m.nodata is not None else NODATA
    res = abs(transform.a)
    step = max(1, int(round(block_m / res)))
    wins = windows(shape, step, window_px)
    log.info(
        "comparing %s (%d x %d px, %s) with %s: %d window(s), reference warped with %s resampling",
        map_path,
        shape[1],
        shape[0],
        crs,
        reference,
        len(wins),
        method,
    )
    ts = max(1, int(np.ceil(max(shape) / thumb_px)))
    thumb_map = np.full((-(-shape[0] // ts), -(-shape[1] // ts)), NODATA, np.uint8)
    thumb_ref = np.full(thumb_map.shape, -1, np.int16)
    cm = np.zeros(k * k, np.int64)
    cm_ood = np.zeros(k * k, np.int64)
    ood_counts = np.zeros(4, np.int64)
    thumb_ood = np.full(thumb_map.shape, NODATA, np.uint8) if ood is not None else None
    map_nodata = ref_excluded = 0
    block_parts: list[np.ndarray] = []
    with ExitStack() as stack:
        msrc = stack.enter_context(_open(map_path))
        ref = stack.enter_context(open_on_grid(reference, transform, crs, shape, resampling=Resampling[method]))
        dis = (
            stack.enter_context(
                cog_writer(
                    disagreement,
                    shape,
                    "uint8",
                    transform,
                    crs,
                    NODATA,
                    description="disagreement",
                    tags={"values": "0 agree, 1 disagree, 255 nodata", "resampling": method},
                    colormap={0: (26, 150, 65, 255), 1: (*DISAGREE_RGB, 255)},
                    resampling="mode",
                )
            )
            if disagreement
            else None
        )
        osrc = stack.enter_context(_open(ood)) if ood is not None else None
        mapper = _CodeMapper(crosswalk, ref.dtype)
        for i, win in enumerate(wins):
            mp = msrc.read(1, window=win)
            mp = np.where((mp == nod) | (mp >= k), NODATA, mp).astype(np.uint8)
            values, ok = ref.read(win)
            ids = mapper.map(values, ok)
            mapper.check_unknown(reference)
            has_map = mp != NODATA
            valid = has_map & (ids >= 0)
            cm += np.bincount(mp[valid].astype(np.int64) * k + ids[valid], minlength=k * k)
            map_nodata += int(mp.size - has_map.sum())
            ref_excluded += int((has_map & (ids < 0)).sum())
            agree = valid & (mp == ids)
            n_v, n_a = _block_sums(valid, step), _block_sums(agree, step)
            br, bc = np.nonzero(n_v)
            a, b = (-win.row_off) % ts, (-win.col_off) % ts
            r0, c0 = (win.row_off + a) // ts, (win.col_off + b) // ts  # this window's thumbnail pixels
            n_o = np.zeros_like(n_v)
            if osrc is not None and thumb_ood is not None:
                codes = osrc.read(1, window=win)
                flagged = has_map & (codes > 0) & (codes < 4)
                ood_counts += np.bincount(codes[has_map & (codes < 4)], minlength=4)[:4]
                fv = valid & flagged
                cm_ood += np.bincount(mp[fv].astype(np.int64) * k + ids[fv], minlength=k * k)
                n_o = _block_sums(fv, step)
                to = np.where(has_map, codes, NODATA)[a::ts, b::ts]
                thumb_ood[r0 : r0 + to.shape[0], c0 : c0 + to.shape[1]] = to
            block_parts.append(
                np.stack(
                    [br + win.row_off // step, bc + win.col_off // step, n_v[br, bc], n_a[br, bc], n_o[br, bc]], 1
                ).astype(np.int64)
            )
            tm, tr = mp[a::ts, b::ts], ids[a::ts, b::ts]
            thumb_map[r0 : r0 + tm.shape[0], c0 : c0 + tm.shape[1]] = tm
            thumb_ref[r0 : r0 + tr.shape[0], c0 : c0 + tr.shape[1]] = tr
            if dis is not None:
                out = np.full(mp.shape, NODATA, np.uint8)
                out[valid] = (~agree[valid]).astype(np.uint8)
                dis.write(out, 1, window=win)
            if on_window is not None:
                on_window(i + 1, len(wins))
    blocks = _blocks_table(
        np.concatenate(block_parts) if block_parts else np.zeros((0, 5), np.int64),
        transform,
        shape,
        step,
        with_ood=ood is not None,
    )
    pixel_ha = abs(transform.a * transform.e) / 1e4
    return Comparison(
        cm.reshape(k, k),
        pixel_ha,
        transform,
        crs,
        shape,
        method,
        {"name": crosswalk.name, **mapper.report().to_json()},
        map_nodata,
        ref_excluded,
        blocks,
        step * res,
        thumb_map,
        thumb_ref,
        ts,
        disagreement,
        cm_ood.reshape(k, k) if ood is not None else None,
        thumb_ood,
        ood_counts if ood is not None else None,
    )


def _check_same_grid(layer: Path, map_path: Path) -> None:
    """Refuse a layer (the OOD COG) that is not on the map's grid (CRS, transform, size)."""
    with _open(layer) as o, _open(map_path) as m:
        same = o.crs == m.crs and o.transform.almost_equals(m.transform) and o.shape == m.shape
        if not same:
            raise RasterError(
                f"is not on the grid of {map_path.name} ({o.crs}, {o.width}x{o.height} px vs "
                f"{m.crs}, {m.width}x{m.height} px)",
                "Give the _ood.tif that `eulc map` wrote beside this class map with `ood`",
                path=layer,
            )


def _blocks_table(
    parts: np.ndarray, transform: Any, shape: tuple[int, int], step: int, with_ood: bool = False
) -> pd.DataFrame:
    """Block rows (block row, block col, n_pixels, n_agree, n_ood) → x_m, y_m (centres), counts,
    agreement (and ``n_ood`` with an OOD layer).
    """
    h, w = shape
    res = abs(transform.a)
    r0, c0 = parts[:, 0] * step, parts[:, 1] * step
    x = transform.c + (c0 + np.minimum(step, w - c0) / 2) * res
    y = transform.f - (r0 + np.minimum(step, h - r0) / 2) * res
    n, a = parts[:, 2], parts[:, 3]
    df = pd.DataFrame({"x_m": x, "y_m": y, "agreement": a / np.maximum(n, 1), "n_pixels": n, "n_agree": a})
    if with_ood:
        df["n_ood"] = parts[:, 4]
    return df


def class_metrics(cm: np.ndarray, names: list[str]) -> dict[str, dict[str, float | int | None]]:
    """User's and producer's accuracy and F1 per class of a map-vs-reference matrix.

    Args:
        cm: int (K, K) counts or areas, rows = map class, columns = reference class.
        names: the K class names.

    Returns:
        name → ``users_accuracy`` (diagonal / row), ``producers_accuracy`` (diagonal / column),
        ``f1``, ``map_pixels``, ``reference_pixels``; None where a total is zero
        (:func:`pipeline.core.confusion.class_accuracies`).
    """
    out: dict[str, dict[str, float | int | None]] = {}
    for n, r in class_accuracies(cm, names, rows="map").items():
        out[n] = {
            "users_accuracy": r["users_accuracy"],
            "producers_accuracy": r["producers_accuracy"],
            "f1": r["f1"],
            "map_pixels": r["map_total"],
            "reference_pixels": r["reference_total"],
        }
    return out


def block_agreement(c: Comparison) -> pd.DataFrame:
    """Agreement per square block of ``c.block_m`` (aligned to the map's top-left corner), worst first.

    Returns:
        One row per block with any compared pixel: ``x_m``, ``y_m`` (block centre, map CRS),
        ``lon``, ``lat`` (EPSG:4326), ``agreement``, ``n_pixels``, ``n_agree``, ``bioregion``,
        ``tile`` (the EEA 10 km cell, e.g. ``10kmE467N253``), and with an OOD layer ``ood_share``
        (flagged share of the compared pixels) and ``n_ood``; ties by more pixels first.
    """
    from pyproj import Transformer

    df = c.blocks.copy()
    xs, ys = df["x_m"].to_numpy(), df["y_m"].to_numpy()
    lon, lat = Transformer.from_crs(c.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    df["lon"], df["lat"] = np.asarray(lon, float), np.asarray(lat, float)
    # the EEA cell from the coordinates, the region from the table shipped in the package: both
    # filled without the shared data (issue #27); a block outside every region gets ""
    x3035, y3035 = Transformer.from_crs(c.crs, "EPSG:3035", always_xy=True).transform(xs, ys)
    df["tile"] = cell_codes(np.asarray(x3035), np.asarray(y3035), 10)
    regions, _ = assign_bioregion(np.asarray(x3035), np.asarray(y3035))
    df["bioregion"] = [str(r) if r is not None else "" for r in regions]
    ood = ["ood_share", "n_ood"] if "n_ood" in df.columns else []
    if ood:
        df["ood_share"] = df["n_ood"] / df["n_pixels"].clip(lower=1)
    df = df[["x_m", "y_m", "lon", "lat", "agreement", "n_pixels", "n_agree", *ood, "bioregion", "tile"]]
    return df.sort_values(["agreement", "n_pixels"], ascending=[True, False], kind="stable").reset_index(drop=True)


def agreement_by(blocks: pd.DataFrame, key: str, pixel_ha: float) -> list[dict[str, Any]]:
    """Agreement aggregated over blocks by ``key`` (``tile`` = EEA 10 km cell, or ``bioregion``).

    Returns:
        One dict per group: ``key``, ``agreement``, ``n_pixels``, ``area_ha`` (and ``ood_share``,
        the flagged share of the compared pixels, when the blocks have ``n_ood``); lowest
        agreement first.
    """
    if blocks.empty:
        return []
    cols = ["n_agree", "n_pixels", *(["n_ood"] if "n_ood" in blocks.columns else [])]
    g = blocks.assign(**{key: blocks[key].astype(str).replace("", "unknown")}).groupby(key, sort=True)[cols].sum()
    out = [
        {
            key: str(name),
            "agreement": int(r.n_agree) / int(r.n_pixels),
            "n_pixels": int(r.n_pixels),
            "area_ha": int(r.n_pixels) * pixel_ha,
            **({"ood_share": int(r.n_ood) / int(r.n_pixels)} if "n_ood" in cols else {}),
        }
        for name, r in g.iterrows()
        if r.n_pixels
    ]
    return sorted(out, key=lambda r: r["agreement"])


def summary(c: Comparison, legend: Legend) -> dict[str, Any]:
    """The JSON summary: ``overall_agreement``, ``per_class``, ``confusion`` (pixels and ha,
    rows = map), excluded counts, the resampling method and the crosswalk report.
    """
    total = int(c.confusion.sum())
    return {
        "overall_agreement": float(np.trace(c.confusion) / total) if total else None,
        "per_class": class_metrics(c.confusion, legend.names),
        "confusion": {
            "rows": "map",
            "columns": "reference",
            "classes": legend.names,
            "pixels": c.confusion.tolist(),
            "hectares": (c.confusion * c.pixel_ha).round(4).tolist(),
        },
        "n_pixels": total,
        "pixel_ha": c.pixel_ha,
        "area_compared_ha": total * c.pixel_ha,
        "excluded": {"map_nodata": c.map_nodata, "reference_nodata_or_dropped": c.reference_excluded},
        "resampling": c.resampling,
        "crosswalk": c.crosswalk_report,
    }
