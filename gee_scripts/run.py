"""One call per ``eulc gee`` subcommand: plan tasks, write them offline, or start and track them."""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gee_scripts.exports import Destination, graph_hash, table_task, task_graph, tile_task
from gee_scripts.images import check_year
from gee_scripts.jobs import EETaskRunner, JobSpec, JobTable, SubmitReport, poll, submit
from gee_scripts.session import initialize_live, offline
from pipeline.core.atomic import atomic_path, write_json
from pipeline.core.config import cpu_threads
from pipeline.core.errors import EulcError
from pipeline.core.featurecog import sidecar_record
from pipeline.core.grid import TileId
from pipeline.core.lucas import read_points, shards
from pipeline.core.spec import FeatureSpec

JOBS_DB = "jobs.sqlite"

OnEvent = Callable[[str, dict[str, Any]], None]
"""``on_event(kind, info)`` as :mod:`pipeline.stages.events` describes: ``status`` for a phase,
``progress`` (``stage``, ``done``, ``total``) for the tasks built and the graphs written."""


def _quiet(kind: str, info: dict[str, Any]) -> None:
    """The default ``on_event``: report nothing."""


@dataclass
class Plan:
    """Planned tasks with their graphs and the band names they produce."""

    jobs: list[JobSpec]
    graphs: dict[str, dict[str, Any]]
    info: dict[str, dict[str, Any]]
    bands: list[str]


def plan_table_exports(
    points_file: Path,
    spec: FeatureSpec,
    year: int,
    dest: Destination,
    shard_size: int = 2000,
    on_event: OnEvent = _quiet,
) -> Plan:
    """Plan sampling tasks for every shard of the points (call inside an ee session); each task
    built is a ``progress`` event (``stage`` ``task graphs``).

    Raises:
        SchemaError: empty/unreadable point file or points outside the grid.
        SpecError: a year the spec's sensors do not cover.
    """
    check_year(spec, year)
    dest.check()
    on_event("status", {"message": f"reading the points of {points_file}"})
    pts = read_points(points_file)
    parts = [(key, grp, TileId.parse(key.rsplit("_", 1)[0])) for key, grp in shards(pts, shard_size)]
    on_event(
        "status",
        {
            "message": f"{len(pts):,} points in {len(parts)} task(s) of at most {shard_size:,} "
            "(one EEA 100 km cell each): building their graphs"
        },
    )
    built = _in_processes(_table_graph, [(spec, year, key, grp, dest, cell) for key, grp, cell in parts], on_event)
    jobs, graphs, info = [], {}, {}
    for (key, grp, cell), (g, desc) in zip(parts, built, strict=True):

        def build(grp: Any = grp, key: str = key, cell: TileId = cell) -> Any:
            return table_task(spec, year, key, grp, dest, cell)

        prefix = f"{spec.name}_{year}_{key}"
        jobs.append(JobSpec(key, "table", desc, graph_hash(g), dest.uri(prefix, "csv"), build))
        graphs[key] = g
        info[key] = {"n_points": len(grp), "cell": str(cell)}
    return Plan(jobs, graphs, info, spec.names)


def _table_graph(args: tuple[Any, ...]) -> tuple[dict[str, Any], str]:
    """One shard's task graph and description (runs in a worker process)."""
    task = table_task(*args)
    return task_graph(task), str((task.config or {})["description"])


PARALLEL_MIN_TASKS = 32
"""Below this many tasks the graphs are built in this process (a worker pool costs more)."""


def _in_processes(fn: Callable[[Any], Any], items: list[Any], on_event: OnEvent = _quiet) -> list[Any]:
    """``[fn(x) for x in items]``, over forked worker processes when there are many items; each
    result is a ``progress`` event (``stage`` ``task graphs``).

    Building and encoding an expression graph is pure Python (about 0.1 s per task), so a plan
    for every LUCAS point (584 tasks) is CPU-bound in one interpreter; forked workers inherit
    the ee session (offline or live) the parent initialised. Results keep the order of ``items``.
    """
    n = min(cpu_threads(), len(items))
    out: list[Any] = []

    def done(result: Any) -> None:
        out.append(result)
        on_event("progress", {"stage": "task graphs", "done": len(out), "total": len(items), "info": ""})

    on_event("progress", {"stage": "task graphs", "done": 0, "total": len(items), "info": ""})
    if n < 2 or len(items) < PARALLEL_MIN_TASKS or "fork" not in mp.get_all_start_methods():
        for x in items:
            done(fn(x))
        return out
    with ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("fork")) as pool:
        # small chunks: results (in order) arrive steadily, so the progress and its ETA are truthful
        for r in pool.map(fn, items, chunksize=max(1, min(8, len(items) // (4 * n)))):
            done(r)
    return out


def plan_tile_exports(
    tiles: list[TileId], spec: FeatureSpec, year: int, dest: Destination, on_event: OnEvent = _quiet
) -> Plan:
    """Plan one feature-raster export per tile (call inside an ee session); each tile built is a
    ``progress`` event (``stage`` ``task graphs``).
    """
    check_year(spec, year)
    dest.check()
    jobs, graphs, info = [], {}, {}
    for i, tile in enumerate(tiles):
        on_event("progress", {"stage": "task graphs", "done": i, "total": len(tiles), "info": str(tile)})

        def build(tile: TileId = tile) -> Any:
            return tile_task(spec, year, tile, dest)

        task = build()
        g = task_graph(task)
        key = str(tile)
        prefix = f"{spec.name}_{year}_{key}"
        jobs.append(
            JobSpec(key, "tile", str(task.config["description"]), graph_hash(g), dest.uri(prefix, "tif"), build)
        )
        graphs[key] = g
        info[key] = {"n_pixels": tile.window().width * tile.window().height, "cell": key}
    on_event("progress", {"stage": "task graphs", "done": len(tiles), "total": len(tiles), "info": ""})
    return Plan(jobs, graphs, info, spec.names)


def write_plan(out: Path, plan: Plan, spec: FeatureSpec, year: int, on_event: OnEvent = _quiet) -> None:
    """Write ``graphs/<key>.json``, ``tasks.csv`` and ``bands.json``: the sidecar the map step
    reads beside the downloaded tiles (band names, stored scales, int16 nodata, and the feature
    contract, :mod:`pipeline.core.contract`, which ``eulc map`` compares with the bundle's).
    """
    for i, (key, g) in enumerate(plan.graphs.items(), 1):
        write_json(out / "graphs" / f"{key}.json", g, indent=None)
        on_event("progress", {"stage": "graphs written", "done": i, "total": len(plan.graphs), "info": ""})
    with atomic_path(out / "tasks.csv") as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "kind", "description", "params_hash", "output_uri", "detail"])
        for j in plan.jobs:
            w.writerow([j.key, j.kind, j.description, j.params_hash, j.output_uri, json.dumps(plan.info[j.key])])
    write_json(out / "bands.json", {**sidecar_record(spec, year), "engine": "gee"})


def run_offline(out: Path, make_plan: Any, spec: FeatureSpec, year: int, on_event: OnEvent = _quiet) -> Plan:
    """Build the plan in an offline ee session and write it (no network, no credentials).

    Args:
        make_plan: ``make_plan(on_event)`` returns the :class:`Plan` (called in the session).
    """
    with offline():
        plan = make_plan(on_event)
        write_plan(out, plan, spec, year, on_event)
    return plan


def run_live(
    out: Path,
    make_plan: Any,
    spec: FeatureSpec,
    year: int,
    project: str | None,
    max_attempts: int = 3,
    on_event: OnEvent = _quiet,
) -> SubmitReport:
    """Check credentials, build the plan, write it, and start the tasks through the job table.

    Raises:
        EulcError: missing credentials or project (before anything is built or submitted).
    """
    initialize_live(project)
    plan = make_plan(on_event)
    write_plan(out, plan, spec, year, on_event)
    table = JobTable(out / JOBS_DB)
    try:
        return submit(table, plan.jobs, EETaskRunner(), max_attempts)
    finally:
        table.close()


def status(out: Path, project: str | None) -> list[dict[str, Any]]:
    """Poll the tasks recorded in ``out/jobs.sqlite`` and return the rows."""
    if not (out / JOBS_DB).is_file():
        raise EulcError(f"no job table in {out}", "Start the exports first (`start`, with this `out` folder)")
    initialize_live(project)
    table = JobTable(out / JOBS_DB)
    try:
        poll(table, EETaskRunner())
        return table.rows()
    finally:
        table.close()
