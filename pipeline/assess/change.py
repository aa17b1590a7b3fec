"""Change between two class maps, and composition per zone (the analyses users run on the
annual Esri and Dynamic World maps): a transition matrix in hectares and, for the polygons of a
vector file (e.g. NUTS regions), the area of each class in each map and its change.

Both maps are uint8 class COGs of the same legend (nodata 255). The earlier map is aligned to
the later one's grid with nearest-neighbour resampling when the grids differ. Zones are
rasterised onto the map grid (pixel centres inside the polygon, ``rasterio.features``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from rasterio.features import rasterize

from pipeline.core import warp
from pipeline.core.errors import RasterError, SchemaError
from pipeline.core.legend import Legend

NODATA = 255


def read_on_grid(path: Path, like: Path) -> np.ndarray:
    """Band 1 of a class raster ``path`` on the grid of ``like``: uint8 (H, W) of ``like``'s
    shape, read as is when the grids match, else reprojected (nearest, any CRS → ``like``'s CRS)
    with 255 = nodata outside.
    """
    with rasterio.open(path) as src, rasterio.open(like) as ref:
        if src.crs == ref.crs and src.transform == ref.transform and src.shape == ref.shape:
            return src.read(1)
        grid = (ref.transform, ref.crs, ref.shape)
    return warp.read_on_grid(path, *grid, dtype=np.uint8, fill=NODATA)


def transition_matrix(before: Path, after: Path, legend: Legend) -> tuple[np.ndarray, float]:
    """(K, K) hectares changing from class i (rows, ``before``) to class j (columns, ``after``).

    Returns:
        ``(matrix_ha, pixel_ha)``.
    """
    k = len(legend)
    b = read_on_grid(before, after)
    with rasterio.open(after) as s:
        a = s.read(1)
        pix_ha = abs(s.transform.a * s.transform.e) / 1e4
    ok = (a < k) & (b < k)
    m = np.bincount(b[ok].astype(np.int64) * k + a[ok], minlength=k * k).reshape(k, k)
    return m * pix_ha, pix_ha


def _overlapping(gdf: gpd.GeoDataFrame, pixel_area: float) -> list[int]:
    """Indices of the zones that overlap another by more than half a pixel."""
    geoms = gdf.geometry.make_valid()
    left, right = geoms.sindex.query(geoms, predicate="intersects")
    out: set[int] = set()
    for i, j in zip(left, right, strict=True):
        if i < j and geoms.iloc[i].intersection(geoms.iloc[j]).area > pixel_area / 2:
            out |= {int(i), int(j)}
    return sorted(out)


MAX_OVERLAPPING_ZONES = 62
"""Most zones that may overlap one another (each is one bit of a pixel's overlap key)."""


def zone_ids(zones: Path, like: Path, field: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Rasterise the polygons of ``zones`` onto the grid of ``like``, each pixel in one zone.

    Overlapping polygons (by more than half a pixel; e.g. the EEA biogeographical regions
    dissolved on the 10 km grid share border cells) are split, never resolved by drawing order:
    the pixels in both ``A`` and ``B`` form a zone of their own named ``A ∩ B``, so every pixel is
    counted once and no zone silently loses its shared area (the report says which zones overlap
    and by how much).

    Returns:
        ``(ids int32 (H, W), names)``: 0 outside every zone, i + 1 inside zone ``names[i]``.

    Raises:
        SchemaError: no polygon, ``field`` not a column, or more than 62 zones overlap.
        RasterError: no zone overlaps the map.
    """
    gdf = gpd.read_file(zones)
    if gdf.empty:
        raise SchemaError("has no polygons", "Give a vector file of zones (e.g. NUTS regions)", path=zones)
    if field is not None and field not in gdf.columns:
        raise SchemaError(f"has no column {field!r}", f"Use one of {list(gdf.columns)[:10]}", path=zones)
    name_col = field or next((c for c in ("NUTS_ID", "name", "NAME", "id") if c in gdf.columns), None)
    names = [str(v) for v in (gdf[name_col] if name_col else range(len(gdf)))]
    with rasterio.open(like) as s:
        gdf = gdf.to_crs(s.crs)
        shape, transform = s.shape, s.transform
        over = _overlapping(gdf, abs(transform.a * transform.e))
        plain = [i for i in range(len(gdf)) if i not in set(over)]
        ids = (
            rasterize(
                ((gdf.geometry.iloc[i], i + 1) for i in plain),
                out_shape=shape,
                transform=transform,
                fill=0,
                dtype="int32",
            )
            if plain
            else np.zeros(shape, np.int32)
        )
    if len(over) > MAX_OVERLAPPING_ZONES:
        raise SchemaError(
            f"{len(over)} zones overlap one another (e.g. {names[over[0]]!r} and {names[over[1]]!r})",
            f"Give zones that do not overlap (at most {MAX_OVERLAPPING_ZONES} may)",
            path=zones,
        )
    if over:
        key = np.zeros(shape, np.int64)
        for bit, i in enumerate(over):
            mask = rasterize([(gdf.geometry.iloc[i], 1)], out_shape=shape, transform=transform, fill=0, dtype="uint8")
            key |= mask.astype(np.int64) << bit
        combos = np.unique(key[key > 0])
        for combo in combos.tolist():
            members = [names[i] for bit, i in enumerate(over) if combo >> bit & 1]
            if len(members) == 1:
                zid = over[[b for b in range(len(over)) if combo >> b & 1][0]] + 1
            else:
                names.append(" ∩ ".join(members))
                zid = len(names)
            ids[key == combo] = zid
    if not ids.any():
        raise RasterError("no zone overlaps the map", "Give zones that cover the mapped area", path=zones)
    return ids, names


def zone_table(maps: dict[str, Path], zones: Path, legend: Legend, field: str | None = None) -> pd.DataFrame:
    """Class areas (ha) per zone for each map, with the change between the first and last map.

    Args:
        maps: label → class COG (e.g. ``{"2018": a, "2021": b}``); the last one's grid is used.
        zones: vector file of zones.
        legend: the maps' legend.
        field: the zone name column (default ``NUTS_ID``/``name``/``id`` if present).

    Returns:
        Rows per (zone, class): ``zone``, ``class``, ``<label>_ha`` per map and, with two or
        more maps, ``change_ha``.
    """
    labels = list(maps)
    like = maps[labels[-1]]
    ids, names = zone_ids(zones, like, field)
    k = len(legend)
    nz = len(names) + 1
    with rasterio.open(like) as s:
        pix_ha = abs(s.transform.a * s.transform.e) / 1e4
    cols: dict[str, Any] = {}
    for lab in labels:
        arr = read_on_grid(maps[lab], like)
        ok = (arr < k) & (ids > 0)
        cols[f"{lab}_ha"] = np.bincount(ids[ok].astype(np.int64) * k + arr[ok], minlength=nz * k).reshape(nz, k)[1:]
    rows = []
    for z, zn in enumerate(names):
        for c, cn in enumerate(legend.names):
            r: dict[str, Any] = {"zone": zn, "class": cn}
            for lab in labels:
                r[f"{lab}_ha"] = float(cols[f"{lab}_ha"][z, c] * pix_ha)
            if len(labels) > 1:
                r["change_ha"] = r[f"{labels[-1]}_ha"] - r[f"{labels[0]}_ha"]
            rows.append(r)
    return pd.DataFrame(rows)
