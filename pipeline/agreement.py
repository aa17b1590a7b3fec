"""Map-versus-reference agreement on the map's pixel grid.

The reference raster is reprojected onto the class map's grid with rasterio: **mode** when
the reference is finer than the map (e.g. 2 m → 10 m), **nearest** otherwise; the method is
recorded. Reference codes are crosswalked to Level-1 (``pipeline/legends/*.csv``). Pixels that
are nodata on either side are left out and counted.

The confusion matrix has rows = map class and columns = reference class (Olofsson et al.
2014 convention). User's accuracy = diagonal / row total (map), producer's accuracy =
diagonal / column total (reference), F1 their harmonic mean; overall accuracy = trace / total.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.warp import reproject

from pipeline.errors import RasterError
from pipeline.legend import Crosswalk, Legend


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
        src = ref.read(1).astype(np.float64)
        if ref.nodata is not None:
            src[src == ref.nodata] = np.nan
        dst = np.full((m.height, m.width), np.nan, dtype=np.float64)
        reproject(src, dst, src_transform=ref.transform, src_crs=ref.crs, src_nodata=np.nan,
                  dst_transform=m.transform, dst_crs=m.crs, dst_nodata=np.nan,
                  resampling=Resampling.mode if method == "mode" else Resampling.nearest)
    return dst, method


def agreement(map_path: Path, reference: Path, crosswalk: Crosswalk, legend: Legend
              ) -> dict[str, Any]:
    """Agreement of a class COG with a reference raster.

    Args:
        map_path: class COG (uint8 Level-1 ids, nodata 255).
        reference: reference raster in any CRS.
        crosswalk: reference codes → Level-1 ids.
        legend: the map's legend (Level-1).

    Returns:
        A JSON-able dict with ``overall_accuracy``, ``per_class`` (name → user's, producer's,
        F1, map and reference pixel counts), ``confusion`` (rows = map, cols = reference),
        ``n_pixels``, ``excluded`` counts, ``resampling`` and the crosswalk report.
    """
    ref_codes, method = align_reference(reference, map_path)
    with _open(map_path) as m:
        mp = m.read(1).astype(np.int64)
        mnod = m.nodata
    finite = np.isfinite(ref_codes)
    ref_l1 = np.full(ref_codes.shape, -1, dtype=np.int64)
    ids, rep = crosswalk.apply(ref_codes[finite].astype(np.int64))
    ref_l1[finite] = ids
    k = len(legend)
    map_ok = (mp != (mnod if mnod is not None else -1)) & (mp >= 0) & (mp < k)
    ref_ok = ref_l1 >= 0
    both = map_ok & ref_ok
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (mp[both], ref_l1[both]), 1)
    total = int(cm.sum())
    from pipeline.compare import class_metrics

    per_class = class_metrics(cm, legend.names)
    return {
        "overall_accuracy": float(np.trace(cm) / total) if total else None,
        "per_class": per_class,
        "confusion": {"rows": "map", "columns": "reference", "classes": legend.names,
                      "matrix": cm.tolist()},
        "n_pixels": total,
        "excluded": {"map_nodata": int((~map_ok).sum()),
                     "reference_nodata_or_unmapped": int((map_ok & ~ref_ok).sum())},
        "resampling": method,
        "reference": str(reference),
        "crosswalk": {"name": crosswalk.name, **rep.to_json()},
    }
