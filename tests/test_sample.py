"""Point sampling of the real Slovenia feature COG, then `eulc table`: the local engine's table path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Transformer

from pipeline.core.errors import RasterError
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import load_spec
from pipeline.table import build_feature_table
from tiles.engine.sample import sample_features

from .conftest import NDVI_FEATURES
from .test_cli import eulc


def _points(cog: Path, n: int = 40) -> tuple[pd.DataFrame, np.ndarray]:
    """Points at random real pixel centres (and two outside), with their expected values."""
    with rasterio.open(cog) as s:
        arr, t = s.read(), s.transform
    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, arr.shape[1], n), rng.integers(0, arr.shape[2], n)
    x = t.c + (cols + 0.5) * t.a + rng.uniform(-4, 4, n)  # anywhere inside the 10 m pixel
    y = t.f + (rows + 0.5) * t.e + rng.uniform(-4, 4, n)
    x = np.r_[x, t.c - 500, t.c + 5e5]
    y = np.r_[y, t.f, t.f]
    lon, lat = Transformer.from_crs(3035, 4326, always_xy=True).transform(x, y)
    pts = pd.DataFrame(
        {
            "POINT_ID": np.arange(n + 2) + 46742538,
            "lon": lon,
            "lat": lat,
            "LC1": (["C10", "E20", "B11", "A11"] * n)[: n + 2],
            "LU1": "U111",
        }
    )
    return pts, arr[:, rows, cols].T


def test_sampled_values_are_the_pixels_under_the_points(slovenia_features: Path, tmp_path: Path) -> None:
    pts, expected = _points(slovenia_features)
    table, counts = sample_features([slovenia_features], pts)
    assert counts == {"points": len(pts), "sampled": len(pts) - 2, "outside": 2}
    np.testing.assert_array_equal(table[NDVI_FEATURES].to_numpy(np.float32), expected)
    # the export layout goes through `eulc table`'s reader into a FeatureTable
    csv = tmp_path / "export.csv"
    pts.to_csv(tmp_path / "points.csv", index=False)
    p = eulc(
        "sample",
        "--points",
        str(tmp_path / "points.csv"),
        "--features-dir",
        str(slovenia_features.parent),
        "--out",
        str(csv),
    )
    assert p.returncode == 0, p.stderr[-1500:]
    spec = load_spec("elc10").subset(FeatureSelection.of(load_spec("elc10"), NDVI_FEATURES, "names").names)
    gdf, report = build_feature_table([csv], spec)
    assert len(gdf) == len(pts) - 2 and set(gdf["level1"].dropna().astype(int)) == {0, 1, 4, 6}
    np.testing.assert_allclose(gdf[NDVI_FEATURES].to_numpy(float), expected.astype(float), equal_nan=True)
    assert gdf.geometry.x.to_numpy() == pytest.approx(pts["lon"].to_numpy()[:-2])


def test_points_outside_every_tile(slovenia_features: Path) -> None:
    pts = pd.DataFrame({"POINT_ID": [1], "lon": [2.35], "lat": [48.85]})  # Paris
    with pytest.raises(RasterError, match="none of the 1 points"):
        sample_features([slovenia_features], pts)
