"""Reference points (LUCAS) in a map: their Level-1 class, the map class under them, and the
stratified accuracy and area estimates of Olofsson et al. (2014) with the map classes as strata.

A reference file is a FeatureTable (GeoParquet with ``level1``), or any vector/CSV file with
LUCAS LC1 codes (and LU1 when present; crosswalked by :func:`pipeline.core.legend.lucas_to_levels`)
under any of the LUCAS column names (``LC1``, the topsoil survey's ``LC``, ``lc1``:
:data:`pipeline.core.lucas.LABEL_COLUMNS`). CSV files need ``TH_LONG``/``TH_LAT`` (the LUCAS
theoretical point) or ``lon``/``lat`` columns (EPSG:4326 degrees).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio

from pipeline.assess.accuracy import StratifiedEstimates, stratified_estimates
from pipeline.core.errors import RasterError, SchemaError
from pipeline.core.legend import Legend, lucas_to_levels
from pipeline.core.lucas import LAT_COLUMNS, LON_COLUMNS, label_column

NODATA = 255


def read_points(path: Path) -> gpd.GeoDataFrame:
    """Reference points with a ``level1`` column (Int8) in their own CRS.

    Raises:
        SchemaError: no ``level1`` or LC1 column, or a CSV without ``TH_LONG``/``TH_LAT`` or ``lon``/``lat``.
        RasterError: the file cannot be read.
    """
    try:
        if path.suffix == ".parquet":
            gdf = gpd.read_parquet(path)
        elif path.suffix in (".csv", ".gz"):
            df = pd.read_csv(path)
            cols = {c.lower(): c for c in df.columns}  # any case, as label_column
            lon = next((cols[c.lower()] for c in LON_COLUMNS if c.lower() in cols), None)
            lat = next((cols[c.lower()] for c in LAT_COLUMNS if c.lower() in cols), None)
            if lon is None or lat is None:
                raise SchemaError(
                    "has no TH_LONG/TH_LAT or lon/lat columns",
                    "Add the point coordinates as lon and lat (EPSG:4326 degrees)",
                    path=path,
                )
            gdf = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df[lon], df[lat]), crs="EPSG:4326")
        else:
            gdf = gpd.read_file(path)
    except (OSError, ValueError) as e:
        raise RasterError(
            f"cannot be read as reference points ({e})", "Give a GeoParquet, GeoPackage or CSV", path=path
        ) from None
    cols = {c.lower(): c for c in gdf.columns}
    if "level1" in cols:
        gdf["level1"] = gdf[cols["level1"]].astype("Int8")
    elif (lc1 := label_column(gdf, "LC1")) is not None:
        lu1 = label_column(gdf, "LU1")
        l1, _, _ = lucas_to_levels(gdf[lc1].astype("string"), gdf[lu1] if lu1 else None)
        gdf["level1"] = l1
    else:
        raise SchemaError(
            "has neither a level1 nor an LC1 column (LC1, LC or lc1 with LUCAS codes)",
            "Give a FeatureTable (eulc table) or LUCAS points with LC1 codes",
            path=path,
        )
    return gdf


@dataclass
class PointSample:
    """Map class and reference class of the points inside the map.

    Attributes:
        counts: int64 (K, K) sample counts, rows = map class (stratum), columns = reference.
        mapped_ha: float64 (K,) mapped area per class in hectares (the strata sizes).
        n_points, n_outside, n_map_nodata, n_unlabelled: points used and left out.
        estimates: the Olofsson estimates.
    """

    counts: np.ndarray
    mapped_ha: np.ndarray
    n_points: int
    n_outside: int
    n_map_nodata: int
    n_unlabelled: int
    estimates: StratifiedEstimates

    def to_json(self, legend: Legend) -> dict[str, Any]:
        """JSON-able summary with per-class estimates."""
        return {
            "n_points": self.n_points,
            "n_outside_map": self.n_outside,
            "n_map_nodata": self.n_map_nodata,
            "n_without_level1": self.n_unlabelled,
            "counts": self.counts.tolist(),
            "mapped_area_ha": self.mapped_ha.tolist(),
            **self.estimates.to_json(legend.names),
        }


def sample_accuracy(map_path: Path, points: gpd.GeoDataFrame, legend: Legend, source: str = "points") -> PointSample:
    """Cross-tabulate points against the map and estimate accuracy and area.

    Raises:
        RasterError: no point falls inside the map (the message gives both extents).
    """
    with rasterio.open(map_path) as m:
        arr = m.read(1)
        t, crs = m.transform, m.crs
        bounds = m.bounds
    k = len(legend)
    pts = points.to_crs(crs)
    xs, ys = pts.geometry.x.to_numpy(), pts.geometry.y.to_numpy()
    rows, cols = rasterio.transform.rowcol(t, xs, ys)
    rows, cols = np.asarray(rows), np.asarray(cols)
    inside = (rows >= 0) & (rows < arr.shape[0]) & (cols >= 0) & (cols < arr.shape[1])
    if not inside.any():
        pb = pts.total_bounds
        raise RasterError(
            f"none of the {len(pts)} reference points ({source}) falls inside the map "
            f"(map bounds {tuple(round(v) for v in bounds)}, points {tuple(round(v) for v in pb)} "
            f"in {crs})",
            "Give points that lie in the mapped area",
            path=map_path,
        )
    mcls = np.full(len(pts), NODATA, np.int64)
    mcls[inside] = arr[rows[inside], cols[inside]]
    ref = pts["level1"].to_numpy(dtype="float64", na_value=np.nan)
    ok = inside & (mcls < k) & np.isfinite(ref)
    counts = np.bincount(mcls[ok] * k + ref[ok].astype(np.int64), minlength=k * k).reshape(k, k)
    pix_ha = abs(t.a * t.e) / 1e4
    mapped = np.bincount(arr[arr < k].ravel(), minlength=k)[:k] * pix_ha
    est = stratified_estimates(counts, mapped, legend.names)
    return PointSample(
        counts,
        mapped.astype(float),
        int(ok.sum()),
        int((~inside).sum()),
        int((inside & (mcls >= k)).sum()),
        int((inside & (mcls < k) & ~np.isfinite(ref)).sum()),
        est,
    )
