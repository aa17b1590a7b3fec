"""`eulc gee ...` as a user runs it, offline; and GEE outputs going back into eulc."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine

from pipeline.core.errors import RasterError
from pipeline.core.reader import FeatureReader
from pipeline.core.spec import load_spec
from pipeline.table import build_feature_table

from .conftest import ELC10, SURVEY
from .test_cli import _one_line_error, eulc

# the README's `eulc gee export-table` on the real LUCAS 2018 points: tests/test_readme.py::test_the_gee_plans


def test_export_tiles_offline_with_a_selection(tmp_path: Path) -> None:
    sel = tmp_path / "sel.json"
    spec = load_spec("bridge-lc-196")
    names = [spec.names[i] for i in range(0, 196, 2)] + ["dem_elevation"]
    sel.write_text(json.dumps({"spec": spec.name, "spec_hash": spec.digest(), "names": names, "method": "names"}))
    p = eulc(
        "gee",
        "export-tiles",
        "--tiles",
        "10kmE467N253,10kmE468N253",
        "--features",
        str(sel),
        "--year",
        "2022",
        "--out",
        str(tmp_path / "t"),
    )
    assert p.returncode == 0, p.stderr[-2000:]
    graphs = sorted(x.name for x in (tmp_path / "t" / "graphs").iterdir() if not x.name.startswith("."))
    assert graphs == ["10kmE467N253.json", "10kmE468N253.json"]
    assert json.loads((tmp_path / "t" / "bands.json").read_text())["bands"] == names


def test_bad_inputs_fail_before_anything_is_submitted(data: Path, tmp_path: Path) -> None:
    pts = str(data / SURVEY)
    _one_line_error(
        eulc("gee", "export-table", "--points", pts, "--year", "2015", "--out", str(tmp_path / "a")),
        "2015",
        "S2_SR_HARMONIZED",
    )
    empty = tmp_path / "empty.csv"
    empty.write_text("POINT_ID,TH_LAT,TH_LONG\n")
    _one_line_error(
        eulc("gee", "export-table", "--points", str(empty), "--year", "2022", "--out", str(tmp_path / "b")),
        "empty.csv",
        "no points",
    )
    far = tmp_path / "far.csv"
    far.write_text("POINT_ID,TH_LAT,TH_LONG\n7,-33.9,151.2\n")
    _one_line_error(
        eulc("gee", "export-table", "--points", str(far), "--year", "2022", "--out", str(tmp_path / "c")),
        "far.csv",
        "outside the EEA grid",
    )
    _one_line_error(
        eulc(
            "gee",
            "export-tiles",
            "--tiles",
            "10kmE467N253",
            "--features",
            "s2_ndvi_p99",
            "--year",
            "2022",
            "--out",
            str(tmp_path / "d"),
        ),
        "s2_ndvi_p99",
    )
    env = {"HOME": str(tmp_path), "GOOGLE_APPLICATION_CREDENTIALS": ""}
    _one_line_error(
        eulc(
            "gee",
            "export-tiles",
            "--tiles",
            "10kmE467N253",
            "--year",
            "2022",
            "--out",
            str(tmp_path / "e"),
            "--start",
            env=env,
        ),
        "credentials",
        "earthengine authenticate",
    )
    for d in "abcde":
        assert not (tmp_path / d).exists()


def test_gee_csv_shards_with_geo_become_a_feature_table(elc10_frame: pd.DataFrame, tmp_path: Path) -> None:
    """GEE table exports carry `system:index` and `.geo`; coordinates come from `.geo`."""
    paths = []
    for i, part in enumerate((elc10_frame.iloc[:400], elc10_frame.iloc[400:700])):
        df = part.drop(columns=["lon", "lat"]).copy()
        df.insert(0, "system:index", [f"{i}_{k:08d}" for k in range(len(df))])
        df[".geo"] = [
            json.dumps({"type": "Point", "coordinates": [lo, la]})
            for lo, la in zip(part["lon"], part["lat"], strict=True)
        ]
        paths.append(tmp_path / f"S2_{i}.csv")
        df.to_csv(paths[-1], index=False)
    gdf, rep = build_feature_table(paths, load_spec("elc10"))
    assert rep.coordinates_from.startswith(".geo") and len(gdf) == 700
    np.testing.assert_allclose(gdf["lon"], elc10_frame["lon"].iloc[:700], atol=1e-9)


def test_gee_tile_geotiff_with_sidecar_is_read_by_name(slovenia_features: Path, tmp_path: Path) -> None:
    """A GEE tile export: int16, nodata -32768, no band names; bands.json gives them and their
    stored scales. Read through FeatureReader, as `eulc map` reads it (tests/test_seams.py runs
    the whole export -> map seam through the CLI)."""
    with rasterio.open(slovenia_features) as s:
        data, names = s.read(), list(s.descriptions)
        prof = s.profile
    stored = np.where(np.isfinite(data), np.rint(data), -32768).astype(np.int16)
    tif = tmp_path / "bridge_2017_10kmE467N253.tif"
    prof.update(driver="GTiff", dtype="int16", nodata=-32768, transform=Affine(*prof["transform"][:6]))
    with rasterio.open(tif, "w", **prof) as d:
        d.write(stored)
    spec = load_spec("elc10").subset(names)
    (tmp_path / "bands.json").write_text(json.dumps({"bands": names, "scale": [f.scale for f in spec.features]}))
    scales = {f.name: f.scale for f in spec.features}
    with FeatureReader(tif, names[::-1], scales) as r:
        got = r.read()
    want = np.where(stored == -32768, np.nan, stored.astype(np.float32))[::-1]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~np.isnan(got)], want[~np.isnan(want)])
    with pytest.raises(RasterError, match="stored at scale 1000 but the spec says 100"):
        FeatureReader(tif, names, {**scales, names[0]: 100.0})
    assert ELC10  # the real ELC10 export is itself a concatenation of GEE sampleRegions CSVs
