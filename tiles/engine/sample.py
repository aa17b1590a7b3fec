"""Point sampling of feature COGs: the local engine's counterpart of GEE ``sampleRegions``.

The output has the layout of eulc's GEE table exports (``POINT_ID``, ``.geo`` as a GeoJSON
point in EPSG:4326 lon/lat, the label columns carried over, one column per feature band), so
``eulc table`` turns it into the same FeatureTable whichever engine computed the features
(issue #7). A point takes the value of the 10 m pixel that contains it (GEE's ``scale=10``
on the same grid); NaN where the band is nodata.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from pyproj import Transformer

from pipeline.core.errors import RasterError, SchemaError
from pipeline.core.featurecog import band_names
from pipeline.core.lucas import LABEL_COLUMNS, read_points
from pipeline.core.reader import FeatureReader

CARRY = tuple(LABEL_COLUMNS)
"""Label columns carried over (``LC1``, ``LU1``: :func:`pipeline.core.lucas.read_points` names them so)."""


def sample_features(feature_cogs: list[Path], points: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Sample every band of every feature COG at the points.

    Args:
        feature_cogs: feature COGs on the EEA grid (EPSG:3035); a point inside several takes the
            first one's values.
        points: ``POINT_ID``, ``lon``, ``lat`` (EPSG:4326 degrees) and optional label columns
            ``LC1``, ``LU1``, which are carried over (:func:`points_frame` makes this from any
            LUCAS point file).

    Returns:
        ``(table, counts)``: the export-layout table (points inside some COG only) and
        ``{"points", "sampled", "outside"}``.

    Raises:
        SchemaError: ``POINT_ID``/``lon``/``lat`` missing.
        RasterError: no point falls inside any COG, or the COGs name different bands.
    """
    for col in ("POINT_ID", "lon", "lat"):
        if col not in points.columns:
            raise SchemaError(f"the points have no {col!r} column", "Give POINT_ID, lon and lat (EPSG:4326)")
    lon = points["lon"].to_numpy(float)
    lat = points["lat"].to_numpy(float)
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True).transform(lon, lat)
    x, y = np.asarray(x), np.asarray(y)
    names: list[str] | None = None
    values: np.ndarray | None = None
    done = np.zeros(len(points), bool)
    for path in feature_cogs:
        with rasterio.open(path) as src:
            bands = band_names(src, path)
        if names is None:
            names = bands
            values = np.full((len(points), len(names)), np.nan, np.float32)
        elif bands != names:
            raise RasterError(
                f"names other bands than {feature_cogs[0].name}",
                "Sample COGs of one spec and selection together",
                path=path,
            )
        with FeatureReader(path, names) as r:
            win = r.window
            t = win.transform
            cols = np.floor((x - t.c) / t.a).astype(np.int64)
            rows = np.floor((y - t.f) / t.e).astype(np.int64)
            inside = ~done & (rows >= 0) & (rows < win.height) & (cols >= 0) & (cols < win.width)
            if not inside.any():
                continue
            arr = r.read()  # (F, H, W); tiles are 10 km: 1000 x 1000 x F
            assert values is not None
            values[inside] = arr[:, rows[inside], cols[inside]].T
            done |= inside
    if names is None or values is None or not done.any():
        raise RasterError(
            f"none of the {len(points)} points falls inside the {len(feature_cogs)} feature COG(s)",
            "Give the tiles that cover the points (EPSG:3035 grid)",
            path=feature_cogs[0] if feature_cogs else None,
        )
    geo = [
        json.dumps({"type": "Point", "coordinates": [float(a), float(b)]})
        for a, b in zip(lon[done], lat[done], strict=True)
    ]
    out = pd.DataFrame({"POINT_ID": points["POINT_ID"].to_numpy()[done], ".geo": geo})
    for c in CARRY:
        if c in points.columns:
            out[c] = points[c].to_numpy()[done]
    out = pd.concat([out, pd.DataFrame(values[done], columns=names)], axis=1)
    return out, {"points": len(points), "sampled": int(done.sum()), "outside": int((~done).sum())}


def points_frame(path: Path) -> pd.DataFrame:
    """A LUCAS point file (CSV with ``TH_LAT``/``TH_LONG``, ``lat``/``lon`` or only ``POINT_ID``;
    or Copernicus polygons) as the ``POINT_ID, lon, lat, LC1, LU1`` frame :func:`sample_features`
    takes (lon/lat in EPSG:4326 degrees, via :func:`pipeline.core.lucas.read_points`).

    Raises:
        SchemaError: see :func:`pipeline.core.lucas.read_points`.
    """
    pts = read_points(path)
    return pd.DataFrame(
        {
            "POINT_ID": pts["POINT_ID"].to_numpy(),
            "lon": pts.geometry.x.to_numpy(),
            "lat": pts.geometry.y.to_numpy(),
            **{c: pts[c].to_numpy() for c in CARRY},
        }
    )
