"""``eulc openeo ...``: openEO batch jobs (Copernicus Data Space Ecosystem), offline graphs.

One library call per subcommand (``openeo_scripts.run``); ``openeo`` is imported only when a
subcommand runs (the ``[openeo]`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from pipeline.app.cli_common import (
    CloudMaskOpt,
    EventView,
    ExportOutOpt,
    FeaturesOpt,
    PointsOpt,
    ProcessingLevelOpt,
    RequiredTilesOpt,
    ShardSizeOpt,
    StartOpt,
    TileSizeOpt,
    YearOpt,
    _size_m,
    _spec_and_selection,
)
from pipeline.core.errors import EulcError

out_console = Console()

openeo_app = typer.Typer(
    no_args_is_help=True, help="openEO batch jobs on the Copernicus Data Space Ecosystem (offline process graphs)."
)


def _openeo(backend: str, cloud_mask: str) -> tuple[Any, Any]:
    """``openeo_scripts.run`` and the named back-end, or one line saying how to install openEO
    support or which ``--backend``/``--cloud-mask`` values exist.
    """
    try:
        import openeo_scripts.run as run  # (imports openeo)
    except ImportError as e:
        raise EulcError(f"openEO support is not installed ({e})", 'Run pip install -e ".[openeo]"') from None
    from openeo_scripts.backends import BACKENDS

    if backend not in BACKENDS:
        raise typer.BadParameter(f"--backend must be one of {sorted(BACKENDS)}")
    if cloud_mask not in ("auto", "none"):
        raise typer.BadParameter("--cloud-mask must be auto or none")
    return run, BACKENDS[backend]


def _write_or_start(out: Path, plan: Any, year: int, start: bool, view: Any) -> None:
    """Write the plan offline, or (``--start``) sign in, run its jobs through openEO's job manager
    and download their results; say where everything is.
    """
    if not start:
        import openeo_scripts.run as run

        run.write_plan(out, plan, year, view)
        out_console.print(
            f"{len(plan.jobs)} job(s): process graphs in {out / 'graphs'}, list in {out / 'jobs.csv'}, "
            f"band names in {out / 'bands.json'}; cloud mask: {plan.cloud_mask}"
        )
        return
    from openeo_scripts.jobs import connect, run_live

    rows = run_live(out, plan, year, connect(plan.backend))
    counts = rows["status"].value_counts().to_dict()
    what = "GeoTIFFs (eulc map --features-dir)" if plan.kind == "tiles" else "CSVs (eulc table --spec spec.yaml)"
    out_console.print(f"jobs by status: {counts}; {what} in {out / 'downloads'}; rerun to resume")


SpecOpt = Annotated[
    str | None,
    typer.Option(
        "--spec",
        help="feature spec: a shipped name (elc10, ...) or a YAML path; default: the spec that --features "
        "carries (a selection or bundle), else elc10",
    ),
]
BackendOpt = Annotated[str, typer.Option(help="openEO back-end: cdse (openeo.dataspace.copernicus.eu)")]


@openeo_app.command("export-tiles")
def openeo_export_tiles(
    tiles: RequiredTilesOpt,
    year: YearOpt,
    out: ExportOutOpt,
    tile_size: TileSizeOpt = "10km",
    features: FeaturesOpt = None,
    spec: SpecOpt = None,
    backend: BackendOpt = "cdse",
    processing_level: ProcessingLevelOpt = "L2A",
    cloud_mask: CloudMaskOpt = "auto",
    start: StartOpt = False,
) -> None:
    """Write one openEO batch-job process graph per EEA tile (features on the 10 m EPSG:3035 grid),
    the job list and the band sidecar the map step reads beside the downloaded GeoTIFFs; with
    --start, run the jobs and download their results.
    """
    from pipeline.core.aoi import parse_tiles

    run, be = _openeo(backend, cloud_mask)
    ids = parse_tiles(tiles, _size_m(tile_size))
    sp, sel = _spec_and_selection(spec, features, "elc10")
    with EventView() as view:
        plan = run.plan_tile_jobs(ids, sp.subset(sel.names), year, be, processing_level, cloud_mask, view)
        _write_or_start(out, plan, year, start, view)


@openeo_app.command("export-table")
def openeo_export_table(
    points: PointsOpt,
    year: YearOpt,
    out: ExportOutOpt,
    features: FeaturesOpt = None,
    spec: SpecOpt = None,
    shard_size: ShardSizeOpt = 2000,
    backend: BackendOpt = "cdse",
    processing_level: ProcessingLevelOpt = "L2A",
    cloud_mask: CloudMaskOpt = "auto",
    start: StartOpt = False,
) -> None:
    """Write one openEO batch-job process graph per shard of points: the features over the points'
    box, sampled with aggregate_spatial; with --start, run the jobs and download each shard's CSV
    in the layout `eulc table` reads (OUT/downloads, with spec.yaml for its --spec).
    """
    run, be = _openeo(backend, cloud_mask)
    if shard_size < 1:
        raise typer.BadParameter("--shard-size must be at least 1")
    sp, sel = _spec_and_selection(spec, features, "elc10")
    with EventView() as view:
        plan = run.plan_table_jobs(
            points, sp.subset(sel.names), year, be, processing_level, cloud_mask, shard_size, view
        )
        _write_or_start(out, plan, year, start, view)
