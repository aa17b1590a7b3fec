"""LUCAS points: the one reader of point files (LUCAS points or Copernicus polygons) → EPSG:4326
points with ids and labels, the LUCAS label-column aliases, and EEA 100 km shards. Used by the
GEE table export, ``eulc sample`` (the local engine's) and the training table.

Polygons (GeoPackage / GeoParquet with geometry, any year) are reduced to their
``representative_point`` computed in EPSG:3035, so the point is always inside the polygon
and computed in metres. Point tables (CSV) take ``TH_LONG``/``TH_LAT`` (LUCAS theoretical
point), ``lon``/``lat``, or the POINT_ID location.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import Transformer

from pipeline.core.eea import cell_codes, lucas_theoretical_xy, snap_to_lucas_grid
from pipeline.core.errors import SchemaError

# EPSG:3035 area of use (Europe) in metres
LAEA_BOUNDS_M = (1_896_628.0, 1_095_703.0, 7_104_185.0, 6_656_861.0)
LABEL_COLUMNS = {"LC1": ("LC1", "LC", "lc1", "LUCAS_LC1"), "LU1": ("LU1", "LU", "lu1", "LUCAS_LU1")}
"""LUCAS land-cover (LC1) and land-use (LU1) code columns under the names the sources use:
LUCAS microdata ``LC1``/``LU1``, the topsoil survey ``LC``/``LU``, eulc tables ``lc1``/``lu1``."""


LON_COLUMNS = ("TH_LONG", "lon", "LON")
LAT_COLUMNS = ("TH_LAT", "lat", "LAT")
"""Point coordinate columns (EPSG:4326 degrees) in order of preference: the LUCAS theoretical
point (``TH_LONG``/``TH_LAT``), then plain ``lon``/``lat``."""


CODE_PATTERNS = {"LC1": r"[A-H]\d{2}", "LU1": r"U\d{3}"}
"""LUCAS nomenclature: LC1 codes are a letter A–H and two digits (``C21``), LU1 codes ``U`` and
three digits (``U120``) (LUCAS 2018 C1 instructions)."""


def label_column(df: pd.DataFrame, label: str) -> str | None:
    """The column of ``df`` holding LUCAS ``label`` codes (``LC1`` or ``LU1``) under any alias of
    :data:`LABEL_COLUMNS` (case-insensitive), or None. A column whose values are not mostly
    LUCAS codes is skipped (ELC10's ``LC`` holds class names such as ``Woodland``).
    """
    upper = {str(c).upper(): c for c in df.columns}
    for alias in LABEL_COLUMNS[label]:
        col = upper.get(alias.upper())
        if col is None:
            continue
        vals = df[col].dropna().astype(str).head(1000)
        if len(vals) == 0 or vals.str.fullmatch(CODE_PATTERNS[label]).mean() > 0.5:
            return str(col)
    return None


def _pick(df: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in df.columns), None)


def read_points(path: Path) -> gpd.GeoDataFrame:
    """Read LUCAS points or polygons into EPSG:4326 points.

    Returns:
        GeoDataFrame with ``POINT_ID`` (int64), ``LC1``, ``LU1`` (strings, may be NA),
        ``x_3035``, ``y_3035`` (m), ``eea_cell_100km`` and point geometry (lon, lat).

    Raises:
        SchemaError: unreadable or empty file, no POINT_ID, no coordinates, or points outside
            the EEA grid (EPSG:3035 area); the message names the file and the point ids.
    """
    path = Path(path)
    if not path.is_file():
        raise SchemaError("point file not found", "Check the path", path=path)
    try:
        if path.suffix.lower() in (".gpkg", ".geojson", ".shp"):
            df: pd.DataFrame = gpd.read_file(path)
        elif path.suffix.lower() in (".parquet", ".geoparquet"):
            df = gpd.read_parquet(path)
        else:
            df = pd.read_csv(path, low_memory=False)
    except Exception as e:  # pyogrio/pyarrow/pandas raise many types
        raise SchemaError(f"cannot be read ({e})", "Give a CSV, GeoPackage or GeoParquet", path=path) from None
    if len(df) == 0:
        raise SchemaError("has no points", "Give a file with LUCAS points or polygons", path=path)
    pid = _pick(df, ("POINT_ID", "point_id", "pointid"))
    if pid is None:
        raise SchemaError("column 'POINT_ID' is missing", "Give LUCAS points with their POINT_ID", path=path)
    if isinstance(df, gpd.GeoDataFrame) and df.geometry is not None and df.crs is not None:
        pts = df.geometry.to_crs(3035).representative_point()
        x, y = pts.x.to_numpy(), pts.y.to_numpy()
    else:
        lon_c, lat_c = _pick(df, LON_COLUMNS), _pick(df, LAT_COLUMNS)
        if lon_c and lat_c:
            x, y = Transformer.from_crs(4326, 3035, always_xy=True).transform(
                df[lon_c].to_numpy(float), df[lat_c].to_numpy(float)
            )
            x, y = np.asarray(x), np.asarray(y)
        else:
            ids = pd.to_numeric(df[pid], errors="coerce").fillna(-1).to_numpy()
            x, y = lucas_theoretical_xy(ids)
    x0, y0, x1, y1 = LAEA_BOUNDS_M
    bad = ~(np.isfinite(x) & np.isfinite(y) & (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))
    if bad.any():
        ids = df[pid][bad].astype(str).tolist()
        raise SchemaError(
            f"{bad.sum()} point(s) fall outside the EEA grid (EPSG:3035 area): "
            f"POINT_ID {ids[:5]}{'...' if len(ids) > 5 else ''}",
            "Fix or remove those points",
            path=path,
        )
    ids = pd.to_numeric(df[pid], errors="coerce").astype("int64").to_numpy()
    lon, lat = Transformer.from_crs(3035, 4326, always_xy=True).transform(x, y)
    cx, cy = snap_to_lucas_grid(ids, x, y)  # shard cells from the LUCAS grid node
    out = pd.DataFrame(
        {
            "POINT_ID": ids,
            "x_3035": x,
            "y_3035": y,
            "eea_cell_100km": cell_codes(cx, cy, 100),
        }
    )
    for name in LABEL_COLUMNS:
        c = label_column(df, name)
        out[name] = df[c].astype("string").to_numpy() if c else pd.array([pd.NA] * len(df), dtype="string")
    return gpd.GeoDataFrame(out, geometry=gpd.points_from_xy(lon, lat), crs=4326)


def point_properties(row: Any) -> dict[str, Any]:
    """The properties an export carries with a point of :func:`read_points` (a row of its
    ``itertuples``): ``POINT_ID`` (int) and ``LC1``/``LU1`` where they are strings (absent labels
    are left out), as both engines' samples return them for the table builder.
    """
    props: dict[str, Any] = {"POINT_ID": int(row.POINT_ID)}
    for k in ("LC1", "LU1"):
        v = getattr(row, k)
        if isinstance(v, str):
            props[k] = v
    return props


def shards(points: gpd.GeoDataFrame, max_points: int) -> list[tuple[str, gpd.GeoDataFrame]]:
    """Split points by EEA 100 km cell, then into chunks of at most ``max_points``.

    Returns:
        ``[(key, points)]`` with keys like ``100kmE43N32_000``, sorted.
    """
    if max_points < 1:
        raise SchemaError(f"shard size {max_points} must be at least 1", "Pass `shard_size` >= 1")
    out = []
    for cell, grp in sorted(points.groupby("eea_cell_100km"), key=lambda kv: str(kv[0])):
        grp = grp.sort_values("POINT_ID")
        for i in range(0, len(grp), max_points):
            out.append((f"{cell}_{i // max_points:03d}", grp.iloc[i : i + max_points]))
    return out
