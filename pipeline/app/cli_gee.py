"""``eulc gee ...``: Earth Engine exports, offline graphs by default, ``--start`` to submit.

One library call per subcommand (``gee_scripts.run``); ``ee`` is imported only when a
subcommand runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.app.cli_common import (
    EventView,
    ExportOutOpt,
    FeaturesOpt,
    PointsOpt,
    RequiredTilesOpt,
    ShardSizeOpt,
    StartOpt,
    TileSizeOpt,
    YearOpt,
    _size_m,
    _spec_and_selection,
)
from pipeline.core.errors import EulcError

console = Console(stderr=True)
out_console = Console()

gee_app = typer.Typer(no_args_is_help=True, help="Earth Engine exports (offline graphs by default; --start to submit).")


def _gee_common(
    spec: str | None, selection: str | None, dem_asset: str | None = None, dem_band: str | None = None
) -> Any:
    try:
        import gee_scripts.run  # noqa: F401  (imports ee)
    except ImportError as e:
        raise EulcError(f"Earth Engine support is not installed ({e})", 'Run pip install -e ".[gee]"') from None
    from gee_scripts.images import with_dem_asset

    # a selection JSON or a bundle brings its own spec (the select -> export seam); else --spec,
    # default bridge-lc-196
    sp, sel = _spec_and_selection(spec, selection, "bridge-lc-196")
    return with_dem_asset(sp, dem_asset, dem_band).subset(sel.names)


_DEM_HELP = (
    "DEM asset (default ASTER GDEM v3, projects/sat-io/open-datasets/ASTER/GDEM); "
    "e.g. NASA/NASADEM_HGT/001, USGS/SRTMGL1_003, COPERNICUS/DEM/GLO30"
)


def _destination(dest: str, folder: str, bucket: str | None, asset_root: str | None) -> Any:
    from gee_scripts.exports import Destination

    if dest not in ("drive", "gcs", "asset"):
        raise typer.BadParameter("--dest must be drive, gcs or asset")
    return Destination(dest, folder, bucket, asset_root)  # type: ignore[arg-type]


def _report_plan(out: Path, n: int, started: Any = None) -> None:
    out_console.print(
        f"{n} task(s): graphs in {out / 'graphs'}, list in {out / 'tasks.csv'}, band names in {out / 'bands.json'}"
    )
    if started is not None:
        out_console.print(
            f"started {len(started.started)}, already live/done {len(started.skipped)}, "
            f"recovered {len(started.recovered)}, gave up {len(started.gave_up)}; "
            f"`eulc gee status --out {out}` follows them"
        )


# Options shared by both export commands.
SpecOpt = Annotated[
    str | None,
    typer.Option(
        "--spec",
        help="feature spec: a shipped name (elc10, bridge-lc-196) or a YAML path; default: the spec "
        "that --features carries (a selection or bundle), else bridge-lc-196",
    ),
]
DestOpt = Annotated[str, typer.Option(help="drive, gcs or asset")]
FolderOpt = Annotated[str, typer.Option(help="Drive folder / path prefix in the bucket")]
BucketOpt = Annotated[str | None, typer.Option(help="Cloud Storage bucket (--dest gcs)")]
AssetRootOpt = Annotated[str | None, typer.Option(help="asset folder (--dest asset)")]
ProjectOpt = Annotated[str | None, typer.Option(help="Google Cloud project for Earth Engine")]
DemAssetOpt = Annotated[str | None, typer.Option(help=_DEM_HELP)]
DemBandOpt = Annotated[str | None, typer.Option(help="elevation band of --dem-asset")]


@gee_app.command("export-table")
def gee_export_table(
    points: PointsOpt,
    year: YearOpt,
    out: ExportOutOpt,
    spec: SpecOpt = None,
    features: FeaturesOpt = None,
    shard_size: ShardSizeOpt = 2000,
    dest: DestOpt = "drive",
    folder: FolderOpt = "eulc",
    bucket: BucketOpt = None,
    asset_root: AssetRootOpt = None,
    start: StartOpt = False,
    project: ProjectOpt = None,
    dem_asset: DemAssetOpt = None,
    dem_band: DemBandOpt = None,
) -> None:
    """Sample the feature image at LUCAS points: one Export.table task per shard."""
    sp = _gee_common(spec, features, dem_asset, dem_band)
    from gee_scripts.run import plan_table_exports

    d = _destination(dest, folder, bucket, asset_root)
    _plan_or_start(out, lambda ev: plan_table_exports(points, sp, year, d, shard_size, ev), sp, year, project, start)


@gee_app.command("export-tiles")
def gee_export_tiles(
    tiles: RequiredTilesOpt,
    year: YearOpt,
    out: ExportOutOpt,
    tile_size: TileSizeOpt = "10km",
    features: FeaturesOpt = None,
    spec: SpecOpt = None,
    dest: DestOpt = "drive",
    folder: FolderOpt = "eulc",
    bucket: BucketOpt = None,
    asset_root: AssetRootOpt = None,
    start: StartOpt = False,
    project: ProjectOpt = None,
    dem_asset: DemAssetOpt = None,
    dem_band: DemBandOpt = None,
) -> None:
    """Export the selected features per EEA tile as COGs on the 10 m grid (EPSG:3035)."""
    from pipeline.core.aoi import parse_tiles

    ids = parse_tiles(tiles, _size_m(tile_size))
    sp = _gee_common(spec, features, dem_asset, dem_band)
    from gee_scripts.run import plan_tile_exports

    d = _destination(dest, folder, bucket, asset_root)
    _plan_or_start(out, lambda ev: plan_tile_exports(ids, sp, year, d, ev), sp, year, project, start)


def _plan_or_start(out: Path, make: Any, sp: Any, year: int, project: str | None, start: bool) -> None:
    """Write the plan offline, or (``--start``) write it and submit its tasks through the job table."""
    from gee_scripts.run import run_live, run_offline

    if start:
        with EventView() as view:
            rep = run_live(out, make, sp, year, project, on_event=view)
        _report_plan(out, len(rep.started) + len(rep.skipped) + len(rep.recovered) + len(rep.gave_up), rep)
    else:
        with EventView() as view:  # offline: the graphs built and written, with the time left
            plan = run_offline(out, make, sp, year, view)
        _report_plan(out, len(plan.jobs))


@gee_app.command("status")
def gee_status(
    out: Annotated[Path, typer.Option("--out", help="the directory of a started export")],
    project: Annotated[str | None, typer.Option(help="Google Cloud project for Earth Engine")] = None,
) -> None:
    """Poll and show the state of the tasks started from ``--out``."""
    from gee_scripts.run import status

    rows = status(out, project)
    t = Table(title=f"Earth Engine tasks in {out}")
    for col in ("key", "state", "attempts", "task id", "output"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["key"], r["state"], str(r["attempts"]), r["task_id"] or "", r["output_uri"] or "")
    out_console.print(t)
