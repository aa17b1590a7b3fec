"""One call per ``eulc openeo`` subcommand: plan the batch jobs and write them offline.

A plan is one process graph per EEA tile (``graphs/<tile>.json``, the ``process`` object a batch
job is created from), the job list (``jobs.csv``) and the band sidecar (``bands.json``) that
``eulc map --features-dir`` reads beside the downloaded GeoTIFFs, with the feature contract of the
features *as computed* on the back-end (its cloud mask and processing level), so a map step
compares them with the bundle's like any other feature file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import yaml

from openeo_scripts.backends import Backend
from openeo_scripts.graphs import feature_cube, tile_extent, tile_graph
from pipeline.core.atomic import atomic_path, write_json
from pipeline.core.cloud_mask import CloudMaskChoice
from pipeline.core.errors import RasterError
from pipeline.core.featurecog import sidecar_record
from pipeline.core.grid import TileId
from pipeline.core.lucas import point_properties, read_points, shards
from pipeline.core.spec import FeatureSpec

SPEC_FILE = "spec.yaml"
"""The computed spec beside a plan (and its downloads)."""

OnEvent = Callable[[str, dict[str, Any]], None]
"""``on_event(kind, info)`` as :mod:`pipeline.stages.events` describes (``progress`` per graph)."""


def _quiet(kind: str, info: dict[str, Any]) -> None:
    """The default ``on_event``: report nothing."""


@dataclass
class Job:
    """One batch job: its key (the tile), title, output file name and graph hash."""

    key: str
    title: str
    output: str
    params_hash: str


@dataclass
class Plan:
    """The planned batch jobs, their process graphs, and the features as the back-end computes them."""

    jobs: list[Job]
    graphs: dict[str, dict[str, Any]]
    computed: FeatureSpec
    cloud_mask: str
    collections: dict[str, str]
    backend: Backend
    level: str
    kind: str = "tiles"
    """``tiles`` (a GeoTIFF per job) or ``table`` (a CSV of ``aggregate_spatial`` per job)."""


def graph_hash(graph: dict[str, Any]) -> str:
    """SHA-256 (first 16 hex) of a process graph: the job's params hash."""
    return hashlib.sha256(json.dumps(graph, sort_keys=True).encode()).hexdigest()[:16]


def plan_tile_jobs(
    tiles: list[TileId],
    spec: FeatureSpec,
    year: int,
    backend: Backend,
    level: str = "L2A",
    cloud_mask: CloudMaskChoice = "auto",
    on_event: OnEvent = _quiet,
) -> Plan:
    """One batch job per tile: the spec's features on the tile's 10 m EPSG:3035 grid for ``year``.

    Raises:
        SpecError: a year outside the spec's sensors, or features the back-end cannot build.
        RasterError: the spec's cloud mask needs layers the collection lacks (``cloud_mask`` auto).
        ValueError: ``tiles`` is empty.
    """
    jobs, graphs = [], {}
    built = None
    for i, tile in enumerate(tiles):  # a refusal comes before any progress line: it is the one line
        built = feature_cube(spec, year, tile_extent(tile), backend, level, cloud_mask)
        if i:
            on_event("progress", {"stage": "process graphs", "done": i, "total": len(tiles), "info": str(tile)})
        g = {"process_graph": tile_graph(built)}
        key = str(tile)
        graphs[key] = g
        title = f"eulc {spec.name} {year} {key}"
        jobs.append(Job(key, title, f"{spec.name}_{year}_{key}.tif", graph_hash(g)))
    on_event("progress", {"stage": "process graphs", "done": len(tiles), "total": len(tiles), "info": ""})
    if built is None:
        raise ValueError("tiles is empty")
    return Plan(jobs, graphs, built.computed, built.cloud_mask, built.collections, backend, level)


def points_geojson(points: gpd.GeoDataFrame) -> dict[str, Any]:
    """LUCAS points (EPSG:4326, lon/lat) as a GeoJSON FeatureCollection with ``POINT_ID``, ``LC1``
    and ``LU1``, in the order ``aggregate_spatial`` returns its rows.
    """
    feats = []
    for row in points.itertuples():
        geom = {"type": "Point", "coordinates": [float(row.geometry.x), float(row.geometry.y)]}
        feats.append({"type": "Feature", "geometry": geom, "properties": point_properties(row)})
    return {"type": "FeatureCollection", "features": feats}


def points_extent(points: gpd.GeoDataFrame, halo_px: int) -> dict[str, Any]:
    """The EPSG:3035 box of the points' 10 m pixels, ``halo_px`` pixels wider (texture kernels),
    snapped outward to the 10 m grid.
    """
    step = 10
    x, y = points["x_3035"].to_numpy(float), points["y_3035"].to_numpy(float)
    pad = (halo_px + 1) * step
    return {
        "west": int(math.floor((x.min() - pad) / step) * step),
        "south": int(math.floor((y.min() - pad) / step) * step),
        "east": int(math.ceil((x.max() + pad) / step) * step),
        "north": int(math.ceil((y.max() + pad) / step) * step),
        "crs": 3035,
    }


def plan_table_jobs(
    points_file: Path,
    spec: FeatureSpec,
    year: int,
    backend: Backend,
    level: str = "L2A",
    cloud_mask: CloudMaskChoice = "auto",
    shard_size: int = 2000,
    on_event: OnEvent = _quiet,
) -> Plan:
    """One batch job per shard of LUCAS points (at most ``shard_size``, one EEA 100 km cell each,
    as ``eulc gee export-table`` shards them): the spec's features over the points' box, then
    ``aggregate_spatial`` at the points (the mean of the one 10 m pixel each falls in), saved as CSV.

    Raises:
        SchemaError: an unreadable point file or points outside the grid.
        SpecError, RasterError: as :func:`plan_tile_jobs`.
        ValueError: the point file gives no shard.
    """
    pts = read_points(points_file)
    parts = list(shards(pts, shard_size))
    halo = max((f.kernel_radius_px or 0) for f in spec.features)
    jobs, graphs = [], {}
    built = None
    for i, (key, grp) in enumerate(parts):
        built = feature_cube(spec, year, points_extent(grp, halo), backend, level, cloud_mask)
        sampled = built.cube.aggregate_spatial(geometries=points_geojson(grp), reducer="mean")
        g = {"process_graph": dict(sampled.save_result(format="CSV").flat_graph())}
        graphs[key] = g
        jobs.append(Job(key, f"eulc {spec.name} {year} {key}", f"{spec.name}_{year}_{key}.csv", graph_hash(g)))
        on_event("progress", {"stage": "process graphs", "done": i + 1, "total": len(parts), "info": key})
    if built is None:
        raise ValueError("the point file gave no shard")
    return Plan(jobs, graphs, built.computed, built.cloud_mask, built.collections, backend, level, "table")


def sampled_points(graph: dict[str, Any]) -> dict[str, Any]:
    """The FeatureCollection a table job's ``aggregate_spatial`` samples (its rows' order).

    Raises:
        ValueError: the graph has no ``aggregate_spatial`` node (it is a tile job's).
    """
    for node in graph["process_graph"].values():
        if node["process_id"] == "aggregate_spatial":
            return dict(node["arguments"]["geometries"])
    raise ValueError("the graph samples no points (no aggregate_spatial node)")


def table_layout(raw: pd.DataFrame, points: dict[str, Any], bands: list[str], where: str) -> pd.DataFrame:
    """An ``aggregate_spatial`` CSV (``feature_index``, an optional ``date``, then one column per band
    in the cube's band order, as the openEO geopyspark driver writes it) as the table builder reads
    an Earth Engine sample: ``system:index``, the features, ``LC1``, ``LU1``, ``POINT_ID``, ``.geo``.

    Raises:
        RasterError: no ``feature_index``, another number of band columns than ``bands``, or an
            index outside the sampled points (the message names ``where``).
    """
    if "feature_index" not in raw.columns:
        raise RasterError(
            f"{where}: no feature_index column (columns: {list(raw.columns)[:6]})",
            "Check the job's result: eulc reads aggregate_spatial CSVs",
        )
    values = raw.drop(columns=[c for c in ("feature_index", "date") if c in raw.columns])
    if values.shape[1] != len(bands):
        raise RasterError(
            f"{where}: {values.shape[1]} value columns, but the plan has {len(bands)} bands",
            "Check that the job ran the plan's graph",
        )
    feats = points["features"]
    idx = raw["feature_index"].astype(int).to_numpy()
    if len(idx) and (idx.min() < 0 or idx.max() >= len(feats)):
        raise RasterError(f"{where}: feature_index outside the {len(feats)} sampled points", "Rerun the job")
    out = pd.DataFrame({"system:index": [str(i) for i in idx]})
    for name, col in zip(bands, values.columns, strict=True):
        out[name] = pd.to_numeric(values[col], errors="coerce").to_numpy()
    props = [feats[i]["properties"] for i in idx]
    out["LC1"] = [pr.get("LC1") for pr in props]
    out["LU1"] = [pr.get("LU1") for pr in props]
    out["POINT_ID"] = [int(pr["POINT_ID"]) for pr in props]
    out[".geo"] = [json.dumps(feats[i]["geometry"]) for i in idx]
    return out.iloc[np.argsort(idx, kind="stable")].reset_index(drop=True)


def write_plan(out: Path, plan: Plan, year: int, on_event: OnEvent = _quiet) -> None:
    """Write ``graphs/<key>.json``, ``jobs.csv``, ``bands.json`` and ``spec.yaml`` (the features as
    the back-end computes them: ``eulc table --spec`` builds a table whose contract is theirs)
    into ``out`` (guarded writes).
    """
    for i, (key, g) in enumerate(plan.graphs.items(), 1):
        write_json(out / "graphs" / f"{key}.json", g, indent=None)
        on_event("progress", {"stage": "graphs written", "done": i, "total": len(plan.graphs), "info": ""})
    with atomic_path(out / "jobs.csv") as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "title", "output", "params_hash", "backend"])
        for j in plan.jobs:
            w.writerow([j.key, j.title, j.output, j.params_hash, plan.backend.url])
    record = sidecar_record(plan.computed, year, dtype="float32", nodata=None)
    record.update(
        engine="openeo",
        backend=plan.backend.url,
        collections=plan.collections,
        processing_level=plan.level,
        cloud_mask=plan.cloud_mask,
    )
    write_json(out / "bands.json", record)
    with atomic_path(out / SPEC_FILE) as tmp:
        tmp.write_text(
            "# the features as the openEO back-end computes them (eulc openeo); for eulc table --spec\n"
            + yaml.safe_dump(plan.computed.model_dump(mode="json"), sort_keys=False, width=120),
            encoding="utf-8",
        )
