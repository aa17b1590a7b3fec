"""``eulc map``, ``agreement``, ``report`` and ``demo``: maps and their assessment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pipeline.app.cli_common import (
    BUNDLE_HELP,
    AllowRootOpt,
    CatalogOpt,
    CloudMaskOpt,
    CrosswalkOpt,
    DashboardOpt,
    DemCollection,
    DeviceOpt,
    EventView,
    OptionalFeaturesDirOpt,
    ProcessingLevelOpt,
    S1Collection,
    S2Collection,
    SchedulerOpt,
    StacOpt,
    TileSizeOpt,
    TilesOpt,
    WorkersOpt,
    app,
    fail_tiles,
    out_console,
)


@app.command("map")
def map_(
    out: Annotated[Path, typer.Option("--out", help="run folder: COGs, STAC, manifest.sqlite")],
    feature_cogs: Annotated[
        list[Path] | None, typer.Argument(help="feature COG(s) to map whole (without --tiles)", show_default=False)
    ] = None,
    bundle: Annotated[str, typer.Option("--bundle", help=BUNDLE_HELP)] = "elc10-l1",
    tiles: TilesOpt = None,
    tile_size: TileSizeOpt = "10km",
    features_dir: OptionalFeaturesDirOpt = None,
    mosaic: Annotated[
        Path | None,
        typer.Option("--mosaic", help="one feature COG or VRT mosaic holding all --tiles (read window by window)"),
    ] = None,
    level2: Annotated[
        str | None,
        typer.Option(help="Level-2 crop bundle (folder or shipped name, e.g. elc10-l2): crop types inside Cropland"),
    ] = None,
    scheduler: SchedulerOpt = "local",
    workers: WorkersOpt = None,
    device: DeviceOpt = "auto",
    precision: Annotated[
        str,
        typer.Option(
            help="auto (bf16 on CUDA, float32 on CPU), fp32, or bf16: ~2x faster on CPUs with AMX-BF16, "
            "0.1 % of pixels change class against float32; recorded in the tags"
        ),
    ] = "auto",
    probabilities: Annotated[bool, typer.Option(help="also write per-class probabilities")] = False,
    adapt_priors: Annotated[
        bool,
        typer.Option(
            help="adapt each tile's class priors by Dirichlet-MAP EM on its own pixels (Saerens et al. "
            "2002, pulled toward the training priors), skipped where EM's likelihood gain is above the "
            "guard; setting chosen on inner held-out bioregions (docs/results.md); the tags record the "
            "setting, the gain and whether it applied; reads each tile twice"
        ),
    ] = False,
    compress: Annotated[str, typer.Option(help="DEFLATE or ZSTD")] = "DEFLATE",
    ood: Annotated[
        bool,
        typer.Option(
            "--ood",
            help="also write <tile>_ood.tif: 0 in distribution, 1 rare landscape, 2 far from the training "
            "data in feature space, 3 both (the bundle's OOD reference; docs/outputs.md)",
        ),
    ] = False,
    stac: StacOpt = None,
    catalog: CatalogOpt = None,
    allow_root: AllowRootOpt = None,
    collection: S2Collection = "sentinel-2-l2a",
    s1_collection: S1Collection = None,
    dem_collection: DemCollection = None,
    cloud_mask: CloudMaskOpt = "auto",
    year: Annotated[int | None, typer.Option(help="with --stac: the map year")] = None,
    processing_level: ProcessingLevelOpt = "L2A",
    overwrite: Annotated[
        bool, typer.Option(help="write into an --out holding other files (never replacing them)")
    ] = False,
    dashboard: DashboardOpt = "127.0.0.1:8787",
    accept: Annotated[
        str | None,
        typer.Option(
            help="feature-contract differences to tolerate: cloud_mask, level (comma-separated); "
            "any other difference from the bundle's features fails the tile"
        ),
    ] = None,
) -> None:
    """Map tiles with a model bundle: class + confidence COGs, STAC items, a resumable manifest.

    A rerun skips tiles that are done and unchanged; failed tiles are listed and the exit
    status is 1. With --stac or --catalog, each tile's features are computed first, into
    OUT/features, on the worker that then maps it.
    """
    from pipeline.stages.mapping import MapRequest, map_tiles

    req = MapRequest(
        out=out,
        feature_files=tuple(feature_cogs or ()),
        bundle=bundle,
        tiles=tiles,
        tile_size=tile_size,
        features_dir=features_dir,
        mosaic=mosaic,
        level2=level2,
        scheduler=scheduler,
        workers=workers,
        device=device,
        precision=precision,
        probabilities=probabilities,
        adapt_priors=adapt_priors,
        compress=compress,
        ood=ood,
        stac=stac,
        catalog=catalog,
        collection=collection,
        s1_collection=s1_collection,
        dem_collection=dem_collection,
        cloud_mask=cloud_mask,
        year=year,
        processing_level=processing_level,
        allow_root=tuple(allow_root or ()),
        overwrite=overwrite,
        dashboard=dashboard,
        accept=tuple(a.strip() for a in (accept or "").split(",") if a.strip()),
    )
    with EventView("mapping") as view:
        summary = map_tiles(req, view)
    px = summary.pixels - summary.nodata
    rate = f", {summary.pixels / summary.seconds / 1e6:.2f} Mpx/s" if summary.done and summary.seconds else ""
    out_console.print(
        f"{out}: {summary.done} tile(s) mapped, {summary.skipped} up to date, "
        f"{len(summary.failures)} failed; {px:,} pixels classified, {summary.nodata:,} nodata"
        f" in {summary.seconds:.1f} s{rate}"
    )
    if ood:
        _print_ood(out)
    if summary.features_done or summary.features_failed:
        out_console.print(
            f"features computed on the mapping workers: {summary.features_done} tile(s)"
            + (f", {summary.features_failed} without features" if summary.features_failed else "")
            + f" (in {out / 'features'})"
        )
    fail_tiles(summary.failures, "failed tile(s)", out / "manifest.sqlite", "fix them and rerun: done tiles are kept")


@app.command("agreement")
def agreement_(
    class_map: Annotated[Path, typer.Argument(help="class COG from `eulc map`")],
    reference: Annotated[Path, typer.Option(help="reference raster (CLC+ Backbone, CORINE, ...), any CRS")],
    crosswalk: CrosswalkOpt,
    out: Annotated[Path | None, typer.Option(help="write the JSON here")] = None,
) -> None:
    """Agreement of a class map with a reference map (confusion, user's/producer's accuracy)."""
    from pipeline.stages.assess import AgreementRequest, agreement

    with EventView("comparing") as view:
        res = agreement(AgreementRequest(class_map, reference, crosswalk, out), view)
    _print_agreement(res)


@app.command()
def report(
    map_path: Annotated[Path, typer.Option("--map", help="class COG from `eulc map` (Level-1)")],
    reference: Annotated[Path, typer.Option(help="reference raster (CLC+ Backbone, CORINE, ...), any CRS")],
    crosswalk: CrosswalkOpt,
    out: Annotated[Path, typer.Option("--out", help="output folder")],
    points: Annotated[
        Path | None,
        typer.Option(help="reference points: FeatureTable or LUCAS LC1 points (accuracy + area with 95 % CI)"),
    ] = None,
    zones: Annotated[Path | None, typer.Option(help="zones (e.g. NUTS polygons): composition per zone")] = None,
    previous: Annotated[Path | None, typer.Option(help="an earlier class map: transition matrix (ha)")] = None,
    bundle: Annotated[str | None, typer.Option(help=f"its model card goes in the report; {BUNDLE_HELP}")] = None,
    title: Annotated[str | None, typer.Option(help="report title")] = None,
    ood_layer: Annotated[
        Path | None,
        typer.Option(
            help="the map's OOD layer from `eulc map --ood` (default: the <tile>_ood.tif beside --map, if any)"
        ),
    ] = None,
    drift: Annotated[
        Path | None,
        typer.Option(help="the CSV of `eulc drift --out` for the map's features: shown beside the OOD share"),
    ] = None,
) -> None:
    """Compare a map with a reference map: report.html (self-contained), metrics.json, CSVs."""
    from pipeline.stages.assess import ReportRequest
    from pipeline.stages.assess import report as run

    req = ReportRequest(map_path, reference, crosswalk, out, points, zones, previous, bundle, title, ood_layer, drift)
    with EventView("comparing") as view:
        m = run(req, view)
    oa = m["overall_agreement"]
    msg = f"wrote {out / 'report.html'}: overall agreement {_pct(oa)} over {m['area_compared_ha']:,.1f} ha"
    if "reference_sample" in m and m["reference_sample"]["overall"] is not None:
        rs = m["reference_sample"]
        msg += f"; accuracy from {rs['n_points']} points {rs['overall'] * 100:.1f} ± {rs['overall_ci95'] * 100:.1f} %"
    if "ood" in m:
        o = m["ood"]
        msg += (
            f"; {_pct(o['share'])} of the map flagged out of distribution (agreement "
            f"{_pct(o['agreement_flagged'])} there, {_pct(o['agreement_in_distribution'])} elsewhere)"
        )
    out_console.print(msg)


def _pct(v: float | None) -> str:
    """A share as a percentage; ``n/a`` for a rate over 0 pixels (None)."""
    return "n/a" if v is None else f"{v * 100:.1f} %"


def _print_ood(out: Path) -> None:
    """The OOD share of each tile, from the run's manifest."""
    from tiles.mapping.manifest import Manifest

    m = Manifest(out / "manifest.sqlite")
    try:
        rows = [r for r in m.rows() if r.status == "done" and r.ood_share is not None]
    finally:
        m.close()
    if not rows:
        return
    t = Table("tile", "flagged out of distribution", title="OOD layer (<tile>_ood.tif)")
    for r in sorted(rows, key=lambda r: -(r.ood_share or 0))[:15]:
        t.add_row(r.tile_id, f"{(r.ood_share or 0) * 100:.1f} %")
    out_console.print(t)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="output directory")],
    epochs: Annotated[int, typer.Option(help="training epochs of the short schedule")] = 10,
    lr: Annotated[float, typer.Option(help="learning rate of the short schedule")] = 1e-3,
    year: Annotated[int, typer.Option(help="map year of the Slovenia stack")] = 2017,
    train: Annotated[bool, typer.Option("--train", help="train a model here instead of using the shipped one")] = False,
) -> None:
    """The main job on the real data: table → train → features → map → agreement → report."""
    from pipeline.stages.demo import DemoRequest, run_demo

    with EventView("demo") as view:
        res = run_demo(DemoRequest(out, epochs=epochs, lr=lr, year=year, train=train), view)
    _print_agreement(res)
    extra = ", model/, table.parquet" if train else ""
    out_console.print(
        f"outputs in {out} (agreement.json, maps/, features/{extra}); open the report: {out / 'report' / 'report.html'}"
    )


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}"


def _print_agreement(res: dict[str, Any]) -> None:
    t = Table(
        title=f"Agreement with {Path(res['reference']).name} "
        f"({res['n_pixels']:,} pixels, {res['resampling']} resampling)"
    )
    for col in ("class", "user's acc.", "producer's acc.", "F1", "map px", "reference px"):
        t.add_column(col, justify="right" if col != "class" else "left")
    for name, r in res["per_class"].items():
        if r["map_pixels"] or r["reference_pixels"]:
            t.add_row(
                name,
                _fmt(r["users_accuracy"]),
                _fmt(r["producers_accuracy"]),
                _fmt(r["f1"]),
                f"{r['map_pixels']:,}",
                f"{r['reference_pixels']:,}",
            )
    out_console.print(t)
    cm = res["confusion"]
    keep = [i for i, _ in enumerate(cm["classes"]) if sum(cm["matrix"][i]) or sum(row[i] for row in cm["matrix"])]
    c = Table(title="Confusion matrix (rows = map, columns = reference)")
    c.add_column("map \\ ref")
    for i in keep:
        c.add_column(cm["classes"][i][:12], justify="right")
    for i in keep:
        c.add_row(cm["classes"][i][:18], *[str(cm["matrix"][i][j]) for j in keep])
    out_console.print(c)
    out_console.print(f"[bold]overall accuracy: {_fmt(res['overall_accuracy'])}[/bold]")
