"""Map-versus-reference comparison on the map's grid: area-weighted confusion, agreement per
block and per bioregion, a disagreement COG and its hotspots (issue #6; paper §4.5).

The reference raster is reprojected onto the class map's grid (mode when it is finer, nearest
otherwise; :func:`align_reference`) and crosswalked to Level-1. Every code
of the reference must be in the crosswalk (unknown codes are an error that lists them);
codes the crosswalk drops on purpose (nodata, outside) and map nodata are left out and counted.
Areas are in hectares: pixel area = |a·e| of the map transform (m²) / 10⁴.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import CRS
from rasterio.coords import disjoint_bounds
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.warp import transform_bounds

from pipeline.core.bioregion import assign_bioregion
from pipeline.core.cog import write_cog
from pipeline.core.confusion import class_accuracies
from pipeline.core.eea import cell_codes
from pipeline.core.errors import RasterError
from pipeline.core.legend import Crosswalk, Legend
from pipeline.core.warp import read_on_grid

NODATA = 255
BLOCK_M = 250.0
"""Side of the blocks over which agreement is summarised and hotspots are ranked (metres)."""


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
    """Reproject band 1 of ``reference`` onto the grid of ``map_path``.

    Returns:
        ``(codes, method)``: float64 (H, W) reference codes (NaN = nodata or outside) and the
        resampling method used (``mode`` or ``nearest``).

    Raises:
        RasterError: unreadable file or missing CRS.
    """
    with _open(reference) as ref, _open(map_path) as m:
        if ref.crs is None:
            raise RasterError("has no CRS", "Assign the reference map's CRS", path=reference)
        method = "mode" if _pixel_size_m(ref) < 0.75 * _pixel_size_m(m) else "nearest"
        grid = (m.transform, m.crs, (m.height, m.width))
    dst = read_on_grid(reference, *grid, resampling=Resampling.mode if method == "mode" else Resampling.nearest,
                       dtype=np.float64, fill=np.nan)
    return dst, method


@dataclass
class Comparison:
    """A map compared with a reference, on the map's grid.

    Attributes:
        map_ids: uint8 (H, W) map classes, 255 = nodata.
        ref_ids: int16 (H, W) crosswalked reference classes, -1 = nodata/dropped.
        confusion: int64 (K, K) pixel counts, rows = map, columns = reference.
        pixel_ha: the area of one pixel in hectares.
        transform, crs: the map grid.
        resampling: how the reference was aligned (``mode`` or ``nearest``).
        crosswalk_report: codes mapped, dropped on purpose, missing.
    """

    map_ids: np.ndarray
    ref_ids: np.ndarray
    confusion: np.ndarray
    pixel_ha: float
    transform: Any
    crs: str
    resampling: str
    crosswalk_report: dict[str, Any]

    @property
    def valid(self) -> np.ndarray:
        """Where both sides have a class: bool (H, W)."""
        return (self.map_ids != NODATA) & (self.ref_ids >= 0)


def _check_overlap(map_path: Path, reference: Path) -> None:
    with _open(map_path) as m, _open(reference) as r:
        for src, p in ((m, map_path), (r, reference)):
            if src.crs is None:
                raise RasterError("has no CRS", "Assign one (e.g. `rio edit-info --crs EPSG:3035`)", path=p)
            if src.transform.is_identity:
                raise RasterError("has a CRS but no geotransform", "Georeference it (e.g. `rio edit-info "
                                  "--transform`) or export it again with its transform", path=p)
        rb = transform_bounds(r.crs, m.crs, *r.bounds, densify_pts=21)
        if disjoint_bounds(tuple(m.bounds), rb) or not _overlaps(tuple(m.bounds), rb):
            mb = tuple(round(v) for v in m.bounds)
            raise RasterError(f"does not overlap the map {map_path.name} (map bounds {mb}, reference bounds in "
                              f"the map CRS {tuple(round(v) for v in rb)})",
                              "Give a reference that covers the mapped area", path=reference)


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def compare(map_path: Path, reference: Path, crosswalk: Crosswalk, legend: Legend) -> Comparison:
    """Align, crosswalk and cross-tabulate a class map and a reference raster.

    Args:
        map_path: class COG (uint8 ids of ``legend``, nodata 255), projected CRS in metres.
        reference: reference raster in any CRS (CLC+ Backbone, CORINE, ...).
        crosswalk: reference codes → ``legend`` ids.
        legend: the map legend (Level-1).

    Raises:
        RasterError: unreadable rasters, a missing CRS or transform, rasters that do not
            overlap, or reference codes missing from the crosswalk (listed with their pixel counts).
    """
    _check_overlap(map_path, reference)
    codes, method = align_reference(reference, map_path)
    with rasterio.open(map_path) as m:
        mp = m.read(1)
        transform, crs = m.transform, str(m.crs)
        nod = m.nodata if m.nodata is not None else NODATA
    mp = np.where((mp == nod) | (mp >= len(legend)), NODATA, mp).astype(np.uint8)
    finite = np.isfinite(codes)
    ids = np.full(codes.shape, -1, np.int16)
    got, rep = crosswalk.apply(codes[finite].astype(np.int64))
    if rep.unknown:
        listed = ", ".join(f"{c} ({n} px)" for c, n in sorted(rep.unknown.items()))
        raise RasterError(f"has codes missing from the crosswalk {crosswalk.name!r}: {listed}",
                          "Add them to the crosswalk CSV (or choose the crosswalk of this product)", path=reference)
    ids[finite] = got
    k = len(legend)
    valid = (mp != NODATA) & (ids >= 0)
    cm = np.bincount(mp[valid].astype(np.int64) * k + ids[valid], minlength=k * k).reshape(k, k)
    pixel_ha = abs(transform.a * transform.e) / 1e4
    return Comparison(mp, ids, cm, pixel_ha, transform, crs, method, {"name": crosswalk.name, **rep.to_json()})


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
        out[n] = {"users_accuracy": r["users_accuracy"], "producers_accuracy": r["producers_accuracy"],
                  "f1": r["f1"], "map_pixels": r["map_total"], "reference_pixels": r["reference_total"]}
    return out


def block_agreement(c: Comparison, block_m: float = BLOCK_M) -> list[dict[str, Any]]:
    """Agreement per square block of ``block_m`` (aligned to the grid origin), worst first.

    Returns:
        One dict per block with any valid pixel: ``x_m``, ``y_m`` (block centre, map CRS),
        ``lon``, ``lat`` (EPSG:4326), ``agreement``, ``n_pixels``, ``n_agree``, ``bioregion``,
        ``tile`` (the EEA 10 km cell, e.g. ``10kmE467N253``).
    """
    from pyproj import Transformer


    h, w = c.map_ids.shape
    res = abs(c.transform.a)
    step = max(1, int(round(block_m / res)))
    valid = c.valid
    agree = valid & (c.map_ids.astype(np.int16) == c.ref_ids)
    rows = []
    for r0 in range(0, h, step):
        for c0 in range(0, w, step):
            v = int(valid[r0:r0 + step, c0:c0 + step].sum())
            if not v:
                continue
            a = int(agree[r0:r0 + step, c0:c0 + step].sum())
            x = c.transform.c + (c0 + min(step, w - c0) / 2) * res
            y = c.transform.f - (r0 + min(step, h - r0) / 2) * res
            rows.append({"x_m": x, "y_m": y, "agreement": a / v, "n_pixels": v, "n_agree": a})
    if rows:
        xs = np.array([r["x_m"] for r in rows])
        ys = np.array([r["y_m"] for r in rows])
        lon, lat = Transformer.from_crs(c.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
        try:
            x3035, y3035 = Transformer.from_crs(c.crs, "EPSG:3035", always_xy=True).transform(xs, ys)
            cells = cell_codes(np.asarray(x3035), np.asarray(y3035), 10)
            regions, _ = assign_bioregion(np.asarray(x3035), np.asarray(y3035))
        except Exception:  # noqa: BLE001 - the region table is optional context
            regions = np.array([""] * len(rows), dtype=object)
            cells = [""] * len(rows)
        for r, lo, la, reg, cell in zip(rows, lon, lat, regions, cells, strict=True):
            r.update(lon=float(lo), lat=float(la), bioregion=str(reg) if reg is not None else "", tile=cell)
    return sorted(rows, key=lambda r: (r["agreement"], -r["n_pixels"]))


def agreement_by(blocks: list[dict[str, Any]], key: str, pixel_ha: float) -> list[dict[str, Any]]:
    """Agreement aggregated over blocks by ``key`` (``tile`` = EEA 10 km cell, or ``bioregion``).

    Returns:
        One dict per group: ``key``, ``agreement``, ``n_pixels``, ``area_ha``; lowest agreement first.
    """
    acc: dict[str, list[int]] = {}
    for b in blocks:
        g = acc.setdefault(str(b.get(key, "")) or "unknown", [0, 0])
        g[0] += int(b["n_agree"])
        g[1] += int(b["n_pixels"])
    out = [{key: k, "agreement": a / n, "n_pixels": n, "area_ha": n * pixel_ha} for k, (a, n) in acc.items() if n]
    return sorted(out, key=lambda r: r["agreement"])


def disagreement_cog(c: Comparison, dest: Path) -> Path:
    """Write the disagreement raster as a COG: 0 = agree, 1 = disagree, 255 = nodata on
    either side (uint8, the map's grid, colormap green/red, mode overviews).
    """
    out = np.full(c.map_ids.shape, NODATA, np.uint8)
    v = c.valid
    out[v] = (c.map_ids[v].astype(np.int16) != c.ref_ids[v]).astype(np.uint8)
    return write_cog(dest, out, c.transform, c.crs, NODATA, descriptions=["disagreement"],
                     tags={"values": "0 agree, 1 disagree, 255 nodata", "resampling": c.resampling},
                     colormap={0: (26, 150, 65, 255), 1: (215, 25, 28, 255)}, resampling="mode")


def summary(c: Comparison, legend: Legend) -> dict[str, Any]:
    """The JSON summary: ``overall_agreement``, ``per_class``, ``confusion`` (pixels and ha,
    rows = map), excluded counts, the resampling method and the crosswalk report.
    """
    total = int(c.confusion.sum())
    return {
        "overall_agreement": float(np.trace(c.confusion) / total) if total else None,
        "per_class": class_metrics(c.confusion, legend.names),
        "confusion": {"rows": "map", "columns": "reference", "classes": legend.names,
                      "pixels": c.confusion.tolist(), "hectares": (c.confusion * c.pixel_ha).round(4).tolist()},
        "n_pixels": total, "pixel_ha": c.pixel_ha, "area_compared_ha": total * c.pixel_ha,
        "excluded": {"map_nodata": int((c.map_ids == NODATA).sum()),
                     "reference_nodata_or_dropped": int(((c.map_ids != NODATA) & (c.ref_ids < 0)).sum())},
        "resampling": c.resampling,
        "crosswalk": c.crosswalk_report,
    }
