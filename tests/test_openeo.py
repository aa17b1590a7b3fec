"""The openEO engine (issue #30 part 1): offline process graphs, refusals, and parity by execution.

Parity: the graph eulc writes for a tile is run by openeo-processes-dask (tests/openeo_local.py)
on the shipped Slovenia stack and compared with the local engine's feature COG of the same stack
at equal EPSG:3035 pixel centres. Stated tolerance: the NaN patterns equal, and every value
within 0.01 stored units (1e-5 NDVI at scale 1000): the two engines differ only by float32
summation order (box sums of the texture) and percentile interpolation rounding.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import xarray as xr

from openeo_scripts.backends import CDSE
from openeo_scripts.graphs import feature_cube, tile_extent, tile_graph
from openeo_scripts.jobs import run_live
from openeo_scripts.run import plan_table_jobs, plan_tile_jobs, sampled_points, write_plan
from pipeline.core.contract import features_digest
from pipeline.core.errors import EulcError, RasterError, SpecError
from pipeline.core.grid import TileId
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import load_spec
from tiles.engine.run import features_from_stack

from .conftest import NDVI_FEATURES
from .openeo_local import SLOVENIA, execute, stack_cube, without_save, write_like_openeo
from .test_cli import eulc
from .test_gee import _golden

CELL = "10kmE467N253"  # the 10 km cell holding the Slovenia stack
TOLERANCE = 0.01
"""Stored units (physical × scale); see the module docstring."""


def _nodes(graph: dict[str, Any], process_id: str) -> list[dict[str, Any]]:
    """Every node of ``process_id`` in a flat graph and its callbacks."""
    out = []
    for node in graph.values():
        if node["process_id"] == process_id:
            out.append(node)
        for arg in node["arguments"].values():
            if isinstance(arg, dict) and "process_graph" in arg:
                out += _nodes(arg["process_graph"], process_id)
    return out


def test_export_tiles_writes_a_graph_per_tile_and_a_plan_offline(tmp_path: Path) -> None:
    """The issue's command, as written: no network, no account."""
    out = tmp_path / "oe"
    p = eulc(
        "openeo", "export-tiles", "--tiles", CELL, "--year", "2018", "--features", "elc10-ndvi-l1", "--out", str(out)
    )
    assert p.returncode == 0, p.stderr[-2000:]
    graph = json.loads((out / "graphs" / f"{CELL}.json").read_text())["process_graph"]
    _golden("openeo_elc10_ndvi_tile", graph)
    (load,) = _nodes(graph, "load_collection")
    args = load["arguments"]
    # the EEA 10 km cell E467 N253 in EPSG:3035 metres (the grid's definition, not eulc's code)
    assert args["spatial_extent"] == {"west": 4670000, "south": 2530000, "east": 4680000, "north": 2540000, "crs": 3035}
    assert args["id"] == "SENTINEL2_L2A" and args["temporal_extent"] == ["2018-01-01", "2019-01-01"]
    assert sorted(args["bands"]) == ["B04", "B08", "SCL"]  # NDVI's bands and the mask layer, nothing else
    (cc,) = args["properties"]["eo:cloud_cover"]["process_graph"].values()
    assert cc["process_id"] == "lt" and cc["arguments"]["y"] == 60  # ELC10: scenes under 60 % cloud
    # the SCL fallback of an s2cloudless-only spec: classes 1, 8, 9, 10 (Sen2Cor's SCL table)
    assert sorted(n["arguments"]["y"] for n in _nodes(graph, "eq")) == [1, 8, 9, 10]
    probs = sorted(n["arguments"]["probabilities"][0] for n in _nodes(graph, "quantiles"))
    assert probs == [0.05, 0.25, 0.5, 0.75, 0.95]
    windows = sorted(tuple(n["arguments"]["extent"]) for n in _nodes(graph, "filter_temporal"))
    assert windows == [  # summer, winter (two runs), the spring/fall windows as ELC10 names them
        ("2018-01-01", "2018-03-01"),
        ("2018-03-01", "2018-06-01"),
        ("2018-06-01", "2018-09-01"),
        ("2018-09-01", "2018-12-01"),
        ("2018-12-01", "2019-01-01"),
    ]
    kernels = _nodes(graph, "apply_kernel")
    assert kernels and all(np.array(k["arguments"]["kernel"]).shape == (7, 7) for k in kernels)
    (save,) = _nodes(graph, "save_result")
    assert save["arguments"]["format"] == "GTiff"
    with (out / "jobs.csv").open() as f:
        (job,) = list(csv.DictReader(f))
    assert job["output"] == f"elc10_2018_{CELL}.tif" and job["backend"] == "https://openeo.dataspace.copernicus.eu"
    bands = json.loads((out / "bands.json").read_text())
    assert bands["bands"] == NDVI_FEATURES and bands["engine"] == "openeo"
    assert bands["collections"] == {"s2": "SENTINEL2_L2A"} and "SCL 1,8,9,10" in bands["cloud_mask"]
    # the contract records the features as the back-end computes them: L2A, the SCL mask
    emb = bands["feature_spec"]["sensors"]["s2"]
    assert emb["level"] == "L2A" and emb["scl_mask"] == [1, 8, 9, 10] and emb["cloud_probability"] is None
    assert bands["features_digest"] != features_digest(load_spec("elc10"), NDVI_FEATURES)


def test_sentinel1_and_derived_features_follow_the_spec() -> None:
    """ELC10's 35 features: Sentinel-1 per orbit pass in dB through sar_backscatter, and the
    derived dpol ratio over the reduced medians."""
    spec = load_spec("elc10")
    built = feature_cube(spec, 2018, tile_extent(TileId.parse(CELL)), CDSE)
    graph = tile_graph(built)
    _golden("openeo_elc10_tile", graph)
    loads = _nodes(graph, "load_collection")
    assert sorted(n["arguments"]["id"] for n in loads) == ["SENTINEL1_GRD", "SENTINEL1_GRD", "SENTINEL2_L2A"]
    passes = sorted(
        next(iter(n["arguments"]["properties"]["sat:orbit_state"]["process_graph"].values()))["arguments"]["y"]
        for n in loads
        if n["arguments"]["id"] == "SENTINEL1_GRD"
    )
    assert passes == ["ascending", "descending"]
    assert [n["arguments"]["coefficient"] for n in _nodes(graph, "sar_backscatter")] == ["sigma0-ellipsoid"] * 2
    assert _nodes(graph, "log") and all(n["arguments"]["base"] == 10 for n in _nodes(graph, "log"))
    assert built.collections == {"s2": "SENTINEL2_L2A", "s1": "SENTINEL1_GRD"}
    names = [n["arguments"]["label"] for n in _nodes(graph, "add_dimension")]
    assert "asc_dpol_median" in names and "desc_dpol_median" in names


def test_the_dem_is_loaded_once_without_a_year_and_used_at_10_m() -> None:
    """The DEM feature reads the Copernicus DEM's one layer (no temporal extent), in metres."""
    sub = load_spec("bridge-lc-196").subset(["dem_elevation", "s2_ndvi_p50"])
    built = feature_cube(sub, 2018, tile_extent(TileId.parse(CELL)), CDSE)
    graph = tile_graph(built)
    dem = [n for n in _nodes(graph, "load_collection") if n["arguments"]["id"] == "COPERNICUS_30"]
    assert len(dem) == 1 and dem[0]["arguments"]["bands"] == ["DEM"] and dem[0]["arguments"]["temporal_extent"] is None
    assert built.collections == {"dem": "COPERNICUS_30", "s2": "SENTINEL2_L2A"}
    firsts = [n for n in _nodes(graph, "reduce_dimension") if "first" in json.dumps(n["arguments"]["reducer"])]
    assert len(firsts) == 1  # the DEM's one layer; the NDVI median is not a "first"
    # BRIDGE-LC masks SCL 1, 9, 10, 11 itself (and s2cloudless where present): on CDSE, its own SCL rule
    assert sorted(n["arguments"]["y"] for n in _nodes(graph, "eq")) == [1, 9, 10, 11]
    assert "CLP" not in json.dumps(graph)


@pytest.mark.parametrize(
    "spec,features,match",
    [
        ("bridge-lc-196", "lst_m01", "lst_m01.*MODIS MOD21C3 LST.*no collection for it"),
        ("bridge-lc-196", "s1_vv_p50", "s1_vv_p50.*focal-median process"),
        ("alphaearth", "aef_a00", "aef_a00.*learned embedding.*no collection"),
    ],
)
def test_features_the_backend_cannot_make_are_refused_in_one_line(
    tmp_path: Path, spec: str, features: str, match: str
) -> None:
    import re

    out = tmp_path / "oe"
    p = eulc(
        "openeo", "export-tiles", "--tiles", CELL, "--year", "2018", "--spec", spec, "--features", features,
        "--out", str(out),
    )  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    line = p.stderr.strip()
    assert "\n" not in line and re.search(match, line), line
    assert not out.exists()


def test_an_s2cloudless_spec_on_l1c_needs_an_explicit_choice() -> None:
    """CDSE's L1C carries neither s2cloudless nor SCL: refused unless the caller says `none`."""
    sub = load_spec("elc10").subset(["ndvi_p50"])
    with pytest.raises(RasterError, match="neither a CLP nor an SCL"):
        feature_cube(sub, 2018, tile_extent(TileId.parse(CELL)), CDSE, level="L1C")
    built = feature_cube(sub, 2018, tile_extent(TileId.parse(CELL)), CDSE, level="L1C", cloud_mask="none")
    assert "none" in built.cloud_mask and not _nodes(tile_graph(built), "mask")
    with pytest.raises(SpecError, match="2015 is outside GOOGLE/SATELLITE_EMBEDDING"):
        feature_cube(load_spec("alphaearth"), 2015, tile_extent(TileId.parse(CELL)), CDSE)


@pytest.fixture(scope="module")
def local_cog(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local engine's feature COG of the NDVI features for 2017 on the Slovenia stack."""
    spec = load_spec("elc10")
    dest = tmp_path_factory.mktemp("local") / f"{CELL}_2017.tif"  # found by tile, as `eulc features` names it
    return features_from_stack("eolearn_slovenia", spec, FeatureSelection.of(spec, NDVI_FEATURES, "names"), 2017, dest)


@pytest.fixture(scope="module")
def executed(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, xr.DataArray]:
    """The plan for the cell on the Slovenia back-end, written, and its graph executed."""
    out = tmp_path_factory.mktemp("plan")
    sub = load_spec("elc10").subset(NDVI_FEATURES)
    plan = plan_tile_jobs([TileId.parse(CELL)], sub, 2017, SLOVENIA, level="L1C")
    write_plan(out, plan, 2017)
    graph = json.loads((out / "graphs" / f"{CELL}.json").read_text())["process_graph"]
    return out, execute(without_save(graph), stack_cube())


def test_a_graph_run_by_openeo_processes_dask_equals_the_local_engine(
    executed: tuple[Path, xr.DataArray], local_cog: Path
) -> None:
    _, result = executed
    with rasterio.open(local_cog) as s:
        values, t, names = s.read(), s.transform, list(s.descriptions)
    local = xr.DataArray(
        values,
        dims=("bands", "y", "x"),
        coords={
            "bands": names,
            "y": t.f + t.e * (np.arange(values.shape[1]) + 0.5),
            "x": t.c + t.a * (np.arange(values.shape[2]) + 0.5),
        },
    )
    got, want = xr.align(result, local, join="inner")
    assert got.sizes["y"] > 100 and got.sizes["x"] > 100  # the stack's 108 x 108 pixels, bar an edge row
    assert list(got["bands"].values) == NDVI_FEATURES
    for name in NDVI_FEATURES:
        g, w = got.sel(bands=name).values, want.sel(bands=name).values
        assert np.array_equal(np.isnan(g), np.isnan(w)), name
        assert np.isfinite(w).mean() > 0.8, name
        np.testing.assert_allclose(g[np.isfinite(w)], w[np.isfinite(w)], rtol=0, atol=TOLERANCE, err_msg=name)


def test_the_executed_export_maps_through_its_sidecar(
    executed: tuple[Path, xr.DataArray], local_cog: Path, tmp_path: Path
) -> None:
    """The seam: the plan's bands.json beside the file the job would deliver (named as jobs.csv
    says), then `eulc map` with the shipped bundle; the classes equal the map of the local COG."""
    plan, result = executed
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with (plan / "jobs.csv").open() as f:
        (job,) = list(csv.DictReader(f))
    write_like_openeo(result, downloads / job["output"])
    (downloads / "bands.json").write_text((plan / "bands.json").read_text())
    maps = {}
    for name, folder in (("openeo", downloads), ("local", local_cog.parent)):
        out = tmp_path / f"maps_{name}"
        p = eulc(
            "map", "--tiles", CELL, "--features-dir", str(folder), "--bundle", "models/elc10-ndvi-l1",
            "--out", str(out), "--scheduler", "sync",
        )  # fmt: skip
        assert p.returncode == 0, p.stderr[-2000:]
        with rasterio.open(out / f"{CELL}_class.tif") as s:
            maps[name] = s.read(1)
            if name == "openeo":
                assert s.tags()["contract"] == "checked"
    a, b = maps["openeo"], maps["local"]
    both = (a != 255) & (b != 255)
    assert both.sum() > 10_000 and (a[both] == b[both]).mean() > 0.999


def _slovenia_plan(year: int = 2017) -> Any:
    return plan_tile_jobs([TileId.parse(CELL)], load_spec("elc10").subset(NDVI_FEATURES), year, SLOVENIA, level="L1C")


def test_start_submits_the_plans_graphs_and_downloads_them_as_the_map_reads(
    executed: tuple[Path, xr.DataArray], requests_mock: Any, tmp_path: Path
) -> None:
    """Through openEO's job manager against openEO's own dummy back-end (HTTP mocked): the graph
    submitted is the plan's file, the result lands where `eulc map` looks, and a rerun resumes."""
    from openeo.rest._testing import DummyBackend

    _, result = executed
    tif = tmp_path / "result.tif"
    write_like_openeo(result, tif)
    dummy = DummyBackend.at_url("https://openeo.test", requests_mock=requests_mock)
    dummy.setup_simple_job_status_flow(queued=1, running=2)
    dummy.next_result = tif.read_bytes()
    out = tmp_path / "oe"
    rows = run_live(out, _slovenia_plan(), 2017, dummy.connection, poll_sleep=0)
    assert list(rows["status"]) == ["finished"] and list(rows["key"]) == [CELL]
    (job,) = dummy.batch_jobs.values()
    assert job["pg"] == json.loads((out / "graphs" / f"{CELL}.json").read_text())["process_graph"]
    got = out / "downloads" / f"elc10_2017_{CELL}.tif"
    assert got.read_bytes() == tif.read_bytes()
    assert json.loads((out / "downloads" / "bands.json").read_text()) == json.loads((out / "bands.json").read_text())
    run_live(out, _slovenia_plan(), 2017, dummy.connection, poll_sleep=0)
    assert len(dummy.batch_jobs) == 1  # finished jobs are not started again
    with pytest.raises(EulcError, match="jobs of another plan"):
        run_live(out, _slovenia_plan(2016), 2016, dummy.connection, poll_sleep=0)


def test_a_failed_download_is_refused_then_fetched_on_rerun(
    executed: tuple[Path, xr.DataArray], requests_mock: Any, tmp_path: Path
) -> None:
    """A result that is not the plan's GeoTIFF is refused in one error and leaves nothing in
    downloads/; the rerun fetches the finished job's result again without starting a new job."""
    from openeo.rest._testing import DummyBackend

    _, result = executed
    tif = tmp_path / "result.tif"
    write_like_openeo(result, tif)
    dummy = DummyBackend.at_url("https://openeo.test", requests_mock=requests_mock)
    dummy.next_result = b"<html>proxy error</html>"
    out = tmp_path / "oe"
    with pytest.raises(RasterError, match="not a GeoTIFF with the plan's 10 bands"):
        run_live(out, _slovenia_plan(), 2017, dummy.connection, poll_sleep=0)
    dest = out / "downloads" / f"elc10_2017_{CELL}.tif"
    assert not dest.exists()
    dummy.next_result = tif.read_bytes()
    rows = run_live(out, _slovenia_plan(), 2017, dummy.connection, poll_sleep=0)
    assert list(rows["status"]) == ["finished"] and len(dummy.batch_jobs) == 1
    assert dest.read_bytes() == tif.read_bytes()


def test_a_job_that_fails_to_start_is_retried_on_rerun_up_to_three_times(requests_mock: Any, tmp_path: Path) -> None:
    from openeo.rest._testing import DummyBackend

    dummy = DummyBackend.at_url("https://openeo.test", requests_mock=requests_mock)
    dummy.setup_job_start_failure()
    out = tmp_path / "oe"
    for attempt in (1, 2, 3, 4):
        rows = run_live(out, _slovenia_plan(), 2017, dummy.connection, poll_sleep=0)
        assert list(rows["status"]) == ["start_failed"]
        assert list(rows["attempts"]) == [min(attempt, 3)]
        assert len(dummy.batch_jobs) == min(attempt, 3)  # one job created per attempt, none after the third
    assert not (out / "downloads").exists()


def _points_in_stack(local_cog: Path, dest: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """25 seeded pixel centres inside the Slovenia stack, written as a LUCAS point CSV (lon/lat);
    returns their POINT_IDs and their rows and columns in the local COG."""
    import pandas as pd
    from pyproj import Transformer

    with rasterio.open(local_cog) as s:
        t, (h, w) = s.transform, s.shape
    rng = np.random.default_rng(30)
    rows, cols = rng.integers(8, h - 8, 25), rng.integers(8, w - 8, 25)
    x, y = t.c + 10 * cols + 5, t.f - 10 * rows - 5
    lon, lat = Transformer.from_crs(3035, 4326, always_xy=True).transform(x, y)
    ids = 46752530 + np.arange(25)
    pd.DataFrame({"POINT_ID": ids, "TH_LAT": lat, "TH_LONG": lon, "LC1": "B11", "LU1": "U111"}).to_csv(
        dest, index=False
    )
    return ids, rows, cols


def _local_values(local_cog: Path, rows: np.ndarray, cols: np.ndarray) -> dict[str, np.ndarray]:
    with rasterio.open(local_cog) as s:
        values, names = s.read(), list(s.descriptions)
    return {n: values[names.index(n)][rows, cols] for n in NDVI_FEATURES}


@pytest.fixture(scope="module")
def sampled(local_cog: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The 25 points' CSV, their ids and pixels, the Slovenia back-end's table plan for them, and
    its graph run by openeo-processes-dask ((geometry, bands))."""
    folder = tmp_path_factory.mktemp("points")
    ids, rows, cols = _points_in_stack(local_cog, folder / "points.csv")
    plan = plan_table_jobs(folder / "points.csv", load_spec("elc10").subset(NDVI_FEATURES), 2017, SLOVENIA, "L1C")
    (g,) = plan.graphs.values()
    result = execute(without_save(g["process_graph"]), stack_cube()).transpose("geometry", "bands")
    return {"csv": folder / "points.csv", "ids": ids, "rows": rows, "cols": cols, "plan": plan, "result": result}


def test_export_table_samples_the_local_engines_values_at_the_points(
    local_cog: Path, sampled: dict[str, Any], tmp_path: Path
) -> None:
    """`eulc openeo export-table` for 25 points inside the Slovenia stack (seeded pixel centres,
    given as LUCAS lon/lat) plans one job sampling them; the same points' graph on the Slovenia
    back-end, run by openeo-processes-dask, returns at each point the local feature COG's value at
    that point (read with rasterio at the point's EPSG:3035 position)."""
    out = tmp_path / "oe"
    p = eulc(
        "openeo", "export-table", "--points", str(sampled["csv"]), "--year", "2017", "--features",
        "elc10-ndvi-l1", "--processing-level", "L1C", "--cloud-mask", "none", "--out", str(out),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    with (out / "jobs.csv").open() as f:
        (job,) = list(csv.DictReader(f))
    assert job["output"] == f"elc10_2017_{job['key']}.csv" and job["key"].startswith("100kmE46N25")
    graph = json.loads((out / "graphs" / f"{job['key']}.json").read_text())
    assert [f["properties"]["POINT_ID"] for f in sampled_points(graph)["features"]] == list(sampled["ids"])
    result = sampled["result"]
    assert result.sizes["geometry"] == 25
    for name, want in _local_values(local_cog, sampled["rows"], sampled["cols"]).items():
        got = result.sel(bands=name).values
        assert np.array_equal(np.isnan(got), np.isnan(want)), name
        np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=0, atol=TOLERANCE, err_msg=name)


def test_a_table_job_downloads_as_a_feature_table(
    local_cog: Path, sampled: dict[str, Any], requests_mock: Any, tmp_path: Path
) -> None:
    """A table job through the job manager: the back-end's CSV (feature_index, then one column per
    band, rows in any order, as the geopyspark driver writes aggregate_spatial) becomes the table
    builder's layout; `eulc table --spec downloads/spec.yaml` gives a table with the plan's
    contract and the local COG's values at the points."""
    import pandas as pd
    from openeo.rest._testing import DummyBackend

    from pipeline.table import table_metadata

    ids, plan = sampled["ids"], sampled["plan"]
    raw = pd.DataFrame(sampled["result"].values, columns=[f"avg(band_{i})" for i in range(len(NDVI_FEATURES))])
    raw.insert(0, "feature_index", np.arange(len(raw)))
    dummy = DummyBackend.at_url("https://openeo.test", requests_mock=requests_mock)
    dummy.next_result = raw.sample(frac=1, random_state=1).to_csv(index=False).encode()
    out = tmp_path / "oe"
    status = run_live(out, plan, 2017, dummy.connection, poll_sleep=0)
    assert list(status["status"]) == ["finished"]
    (csv_file,) = sorted((out / "downloads").glob("*.csv"))
    table = tmp_path / "t.parquet"
    p = eulc("table", str(csv_file), "--spec", str(out / "downloads" / "spec.yaml"), "--out", str(table))
    assert p.returncode == 0, p.stderr[-2000:]
    assert table_metadata(table)["features_digest"] == json.loads((out / "bands.json").read_text())["features_digest"]
    got = pd.read_parquet(table).set_index("point_id").loc[ids]
    for name, want in _local_values(local_cog, sampled["rows"], sampled["cols"]).items():
        ok = ~np.isnan(want)
        np.testing.assert_allclose(got[name].to_numpy(float)[ok], want[ok], rtol=0, atol=TOLERANCE, err_msg=name)
    assert (got["lc1"] == "B11").all()
