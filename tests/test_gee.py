"""The Earth Engine engine, offline against earthengine-api's real algorithm signatures."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ee
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from gee_scripts.exports import Destination, table_task, task_graph, tile_task
from gee_scripts.images import export_image, feature_image
from gee_scripts.jobs import FakeTaskRunner, JobSpec, JobTable, poll, submit
from gee_scripts.session import offline
from pipeline.core.errors import SchemaError, SpecError
from pipeline.core.grid import TileId
from pipeline.core.lucas import read_points, shards
from pipeline.core.spec import load_spec

from .conftest import SURVEY

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("EULC_REGEN_GOLDEN") == "1"
SLO_TILE = TileId.parse("10kmE467N253")  # the 10 km cell of the Slovenia stack


@pytest.fixture
def gee() -> Iterator[None]:
    with offline():
        yield


@pytest.fixture(scope="module")
def spec():
    return load_spec("bridge-lc-196")


def _sub(spec, sensors: set[str]):
    return spec.subset([f.name for f in spec.features if f.sensor in sensors])


def _region(tile: TileId = SLO_TILE) -> ee.Geometry:
    return ee.Geometry.Rectangle(list(tile.bounds), "EPSG:3035", False)


def _golden(name: str, graph: Any) -> None:
    path = GOLDEN / f"{name}.json"
    if REGEN or not path.exists():
        if not REGEN:
            pytest.fail(f"golden {path.name} missing; regenerate on purpose with EULC_REGEN_GOLDEN=1")
        path.write_text(json.dumps(graph, indent=1, sort_keys=True) + "\n")
    assert json.loads(path.read_text()) == json.loads(json.dumps(graph)), (
        f"{name} graph changed; if on purpose, regenerate with EULC_REGEN_GOLDEN=1"
    )


def _find(obj: Any, name: str) -> list[ee.ComputedObject]:
    """Every invocation of the algorithm ``name`` reachable through the object's arguments."""
    out, stack, seen = [], [obj], set()
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, ee.CustomFunction):  # a mapped function: walk its body
            stack.append(o._body)
        elif isinstance(o, ee.ComputedObject) and o.func is not None:
            sig = o.func.getSignature() if hasattr(o.func, "getSignature") else {}
            if sig.get("name") == name:
                out.append(o)
            stack.extend((o.args or {}).values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
        elif isinstance(o, dict):
            stack.extend(o.values())
    return out


def _value(x: Any) -> Any:
    """The constant behind an ee argument (ee.List / ee.Number / plain value)."""
    enc = ee.serializer.encode(x, for_cloud_api=True)
    if isinstance(enc, dict) and "values" in enc:
        enc = enc["values"][enc["result"]]
    return enc.get("constantValue", enc) if isinstance(enc, dict) else enc


def test_spec_has_196_named_features(spec) -> None:
    counts = {k: sum(f.sensor == k for f in spec.features) for k in ("s2", "s1", "lst", "dem")}
    assert counts == {"s2": 78, "s1": 105, "lst": 12, "dem": 1} and len(spec.names) == 196
    for n in ("s2_ndvi_p5", "s2_b08_p98", "s2_b8a_p50", "s1_vh_m07", "s1_rvi_p50", "lst_m03", "dem_elevation"):
        assert n in spec.names
    assert spec.sensors["s2"].scl_mask == (1, 9, 10, 11)
    assert spec.sensors["s1"].focal_median_radius_m == 30


@pytest.mark.parametrize("name,sensors,n", [("s2", {"s2"}, 78), ("s1", {"s1"}, 105), ("lst_dem", {"lst", "dem"}, 13)])
def test_sensor_graphs(gee, spec, name: str, sensors: set[str], n: int) -> None:
    sub = _sub(spec, sensors)
    img = feature_image(sub, 2022, _region())
    # the final band selection/renaming is the spec's names, in order
    sel = _find(img, "Image.select")[0]
    assert _value(sel.args["bandSelectors"]) == sub.names and len(sub.names) == n
    _golden(name, ee.serializer.encode(img, for_cloud_api=True))


def test_thresholds_and_percentiles_appear(gee, spec) -> None:
    text = json.dumps(
        ee.serializer.encode(feature_image(_sub(spec, {"s2", "s1"}), 2022, _region()), for_cloud_api=True)
    )
    assert '"CLOUDY_PIXEL_PERCENTAGE"' in text and "COPERNICUS/S2_CLOUD_PROBABILITY" in text
    img = feature_image(_sub(spec, {"s2"}), 2022, _region())
    lt = _find(img, "Filter.lessThan")
    assert [(_value(o.args["leftField"]), _value(o.args["rightValue"])) for o in lt] == [
        ("CLOUDY_PIXEL_PERCENTAGE", 50)
    ]
    lte = _find(img, "Image.lte")
    assert [_value(o.args["image2"].args["value"]) for o in lte] == [75]
    neq = {_value(o.args["image2"].args["value"]) for o in _find(img, "Image.neq")}
    assert neq == {1, 9, 10, 11}
    pct = _find(img, "Reducer.percentile")
    assert pct and all(_value(o.args["percentiles"]) == [5, 50, 98] for o in pct)
    s1 = feature_image(_sub(spec, {"s1"}), 2022, _region())
    fm = _find(s1, "Image.focalMedian")
    assert fm and [_value(fm[0].args[k]) for k in ("radius", "units", "kernelType")] == [30, "meters", "circle"]


def test_stack_and_tile_export(gee, spec) -> None:
    img = export_image(spec, 2022, _region())
    assert _value(_find(img, "Image.select")[0].args["bandSelectors"]) == spec.names
    _golden("stack", ee.serializer.encode(img, for_cloud_api=True))
    task = tile_task(spec, 2022, SLO_TILE, Destination())
    rep = _find(task.config["expression"], "Image.reproject")[0]
    w = SLO_TILE.window()
    assert _value(rep.args["crsTransform"]) == [
        w.transform.a,
        w.transform.b,
        w.transform.c,
        w.transform.d,
        w.transform.e,
        w.transform.f,
    ]
    assert _value(rep.args["crsTransform"]) == [10.0, 0.0, 4_670_000.0, 0.0, -10.0, 2_540_000.0]
    assert rep.args.get("scale") is None
    _golden("tile_export", task_graph(task))


def test_sampling_and_tile_images_are_identical(gee, spec, data: Path) -> None:
    pts = read_points(data / SURVEY).iloc[:3]
    sel = spec.subset(spec.names[:30] + ["dem_elevation"])
    t_table = table_task(sel, 2022, "k", pts, Destination(), SLO_TILE)
    t_tile = tile_task(sel, 2022, SLO_TILE, Destination())
    sampled = t_table.config["expression"].args["image"]
    exported = _find(t_tile.config["expression"], "Image.unmask")[0].args["input"]
    assert sampled.serialize() == exported.serialize()
    _golden("sampling", task_graph(table_task(spec, 2022, "k", pts, Destination(), SLO_TILE)))


def test_bad_years_and_selections(gee, spec) -> None:
    with pytest.raises(SpecError, match="S2_SR_HARMONIZED.*2017-03-28"):
        feature_image(spec, 2015, _region())
    with pytest.raises(SpecError, match="s2_ndvi_p99"):
        spec.subset(["s2_ndvi_p99"])


def test_points_and_shards_from_real_lucas(data: Path) -> None:
    pts = read_points(data / SURVEY)
    raw = pd.read_csv(data / SURVEY)
    assert len(pts) == len(raw) and pts.crs.to_epsg() == 4326
    # theoretical point from TH_LONG/TH_LAT equals the POINT_ID location (SOURCES conventions)
    np.testing.assert_allclose(pts["x_3035"], (raw["POINT_ID"] // 10_000) * 1000, atol=0.01)
    sh = shards(pts, 50)
    assert sum(len(g) for _, g in sh) == len(pts)
    assert all(g["eea_cell_100km"].nunique() == 1 and len(g) <= 50 for _, g in sh)


def test_polygons_give_representative_points(data: Path, tmp_path: Path) -> None:
    pts = read_points(data / SURVEY).iloc[:20].to_crs(3035)
    polys = gpd.GeoDataFrame(
        {"POINT_ID": pts["POINT_ID"], "LC1": pts["LC1"]}, geometry=pts.buffer(40).to_crs(4326), crs=4326
    )
    polys.to_parquet(tmp_path / "p.parquet")
    got = read_points(tmp_path / "p.parquet")
    inside = polys.to_crs(3035).reset_index(drop=True).contains(got.to_crs(3035).geometry, align=False)
    assert inside.all()  # a representative point is always inside its polygon (unlike a centroid)
    assert (got.to_crs(3035).distance(pts.reset_index(drop=True).geometry, align=False) < 40).all()
    assert (got["LC1"].to_numpy() == pts["LC1"].to_numpy()).all()


def test_point_file_errors(data: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("POINT_ID,TH_LAT,TH_LONG\n")
    with pytest.raises(SchemaError, match="empty.csv: has no points"):
        read_points(empty)
    far = tmp_path / "far.csv"
    pd.DataFrame({"POINT_ID": [1, 2], "TH_LAT": [45.0, -33.9], "TH_LONG": [14.0, 151.2]}).to_csv(far, index=False)
    with pytest.raises(SchemaError, match=r"far.csv: 1 point\(s\) fall outside the EEA grid.*POINT_ID \['2'\]"):
        read_points(far)


def _jobs(n: int, pts, spec) -> list[JobSpec]:
    out = []
    for i in range(n):

        def build(i: int = i) -> Any:
            return table_task(spec, 2022, f"k{i}", pts, Destination(), SLO_TILE)

        out.append(JobSpec(f"k{i}", "table", f"eulc_bridge-lc-196_2022_k{i}", f"h{i}", f"drive://k{i}", build))
    return out


def test_job_table_resumes_after_a_crash_without_duplicates(gee, spec, data: Path, tmp_path: Path) -> None:
    pts = read_points(data / SURVEY).iloc[:2]
    sub = spec.subset(["dem_elevation"])
    jobs = _jobs(5, pts, sub)
    runner = FakeTaskRunner(crash_after=3)
    table = JobTable(tmp_path / "jobs.sqlite")
    with pytest.raises(KeyboardInterrupt):
        submit(table, jobs, runner)
    states = {r["key"]: r["state"] for r in table.rows()}
    assert states == {"k0": "READY", "k1": "READY", "k2": "SUBMITTING", "k3": "PENDING", "k4": "PENDING"}
    table.close()
    table = JobTable(tmp_path / "jobs.sqlite")  # a new process
    rep = submit(table, jobs, runner)
    assert rep.recovered == ["k2"] and rep.skipped == ["k0", "k1"] and rep.started == ["k3", "k4"]
    assert sorted(runner.keys.values()) == ["k0", "k1", "k2", "k3", "k4"]  # each started once
    assert all(g["config"]["description"].startswith("eulc_") for g in runner.started.values())
    assert submit(table, jobs, runner).started == []  # idempotent


def test_job_table_retries_failures_up_to_max(gee, spec, data: Path, tmp_path: Path) -> None:
    pts = read_points(data / SURVEY).iloc[:2]
    jobs = _jobs(2, pts, spec.subset(["dem_elevation"]))
    runner = FakeTaskRunner(fail_starts={"k0": 1}, script={"k1": ["RUNNING", "FAILED"]})
    table = JobTable(tmp_path / "jobs.sqlite")
    rep = submit(table, jobs, runner, max_attempts=2)
    assert rep.started == ["k1"] and table.row("k0")["state"] == "FAILED"
    assert "scripted start failure" in table.row("k0")["error"]
    assert poll(table, runner) == {"FAILED": 1, "RUNNING": 1}
    assert poll(table, runner) == {"FAILED": 2}
    rep = submit(table, jobs, runner, max_attempts=2)
    assert rep.started == ["k0", "k1"] and table.row("k1")["attempts"] == 2
    runner.script["k1"] = ["FAILED"]
    poll(table, runner)
    assert submit(table, jobs, runner, max_attempts=2).gave_up == ["k1"]
    # a changed graph (params hash) is submitted again
    jobs[0].params_hash = "changed"
    assert submit(table, jobs, runner, max_attempts=2).started == ["k0"]


class _FlakyTask:
    def __init__(self, failures: int) -> None:
        self.failures, self.id, self.starts = failures, None, 0

    def start(self) -> None:
        self.starts += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError("429 Too Many Requests")
        self.id = "T123"


def test_ee_runner_retries_with_exponential_backoff() -> None:
    from gee_scripts.jobs import EETaskRunner

    waits: list[float] = []
    runner = EETaskRunner(retries=4, base_delay_s=2.0, sleep=waits.append)
    task = _FlakyTask(failures=2)
    assert runner.start("k", task) == "T123" and task.starts == 3 and waits == [2.0, 4.0]
    with pytest.raises(RuntimeError, match="429"):
        EETaskRunner(retries=2, base_delay_s=1.0, sleep=waits.append).start("k", _FlakyTask(failures=5))


def test_dem_asset_is_configurable(gee, spec, tmp_path: Path) -> None:
    from pipeline.app.cli_gee import _gee_common

    sub = _gee_common("bridge-lc-196", "dem_elevation", "NASA/NASADEM_HGT/001")
    text = json.dumps(ee.serializer.encode(feature_image(sub, 2022, _region()), for_cloud_api=True))
    assert "NASA/NASADEM_HGT/001" in text and "ASTER" not in text
    default = json.dumps(
        ee.serializer.encode(feature_image(spec.subset(["dem_elevation"]), 2022, _region()), for_cloud_api=True)
    )
    assert "projects/sat-io/open-datasets/ASTER/GDEM" in default


def test_a_plan_built_in_worker_processes_equals_one_built_here(
    data: Path, tmp_path: Path, gee: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many shards are planned in forked workers: the same graphs, hashes and order as in-process."""
    from gee_scripts import run

    pts = pd.read_csv(data / SURVEY)
    pts = pts[pts["NUTS_0"].isin(["SI", "HR", "AT", "HU"])]  # about 40 EEA 100 km cells
    pts.to_csv(tmp_path / "p.csv", index=False)
    dest = Destination("drive", "eulc")
    spec = load_spec("elc10")
    forked = run.plan_table_exports(tmp_path / "p.csv", spec, 2018, dest)
    assert len(forked.jobs) > run.PARALLEL_MIN_TASKS
    monkeypatch.setattr(run, "PARALLEL_MIN_TASKS", 10**9)
    here = run.plan_table_exports(tmp_path / "p.csv", spec, 2018, dest)
    assert [j.key for j in forked.jobs] == [j.key for j in here.jobs]
    assert [j.params_hash for j in forked.jobs] == [j.params_hash for j in here.jobs]
    assert forked.graphs == here.graphs
