"""``eulc features``, ``sample`` and ``drift``: the local/STAC feature engine and its outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipeline.app.cli_common import (
    BUNDLE_HELP,
    AllowRootOpt,
    CatalogOpt,
    CloudMaskOpt,
    DashboardOpt,
    DemCollection,
    EventView,
    FeaturesDirOpt,
    FeaturesOpt,
    ProcessingLevelOpt,
    S1Collection,
    S2Collection,
    SchedulerOpt,
    SpecOpt,
    StacOpt,
    TileSizeOpt,
    TilesOpt,
    WorkersOpt,
    app,
    fail_tiles,
    out_console,
)


@app.command()
def features(
    out: Annotated[Path, typer.Option("--out", help="output directory")],
    year: Annotated[int, typer.Option(help="map year")],
    files: Annotated[str | None, typer.Option("--files", help="stack manifest (YAML) or shipped name")] = None,
    catalog: CatalogOpt = None,
    stac: StacOpt = None,
    collection: S2Collection = "sentinel-2-l2a",
    s1_collection: S1Collection = None,
    dem_collection: DemCollection = None,
    cloud_mask: CloudMaskOpt = "auto",
    tiles: TilesOpt = None,
    tile_size: TileSizeOpt = "10km",
    processing_level: ProcessingLevelOpt = "L2A",
    spec: SpecOpt = None,
    features: FeaturesOpt = None,
    tile_id: Annotated[str | None, typer.Option(help="output name (default: manifest name)")] = None,
    allow_root: AllowRootOpt = None,
    scheduler: SchedulerOpt = "local",
    workers: WorkersOpt = None,
    dashboard: DashboardOpt = "127.0.0.1:8787",
    device: Annotated[
        str,
        typer.Option(
            "--device",
            help="where percentiles and medians are sorted: cpu, or cuda, cuda:N, auto (torch; same values)",
        ),
    ] = "cpu",
) -> None:
    """Compute spec features from a local stack (whole, or cut into --tiles), a static STAC
    catalogue or a STAC API: one feature COG per tile, on the same schedulers as `eulc map`.

    A rerun skips tiles that are current (.eulc-features.json); a tile that fails is recorded
    with its reason and the others go on (exit 1, listed).
    """
    from pipeline.stages.features import FeaturesRequest
    from pipeline.stages.features import features as run

    req = FeaturesRequest(
        out,
        year,
        files=files,
        catalog=catalog,
        stac=stac,
        collection=collection,
        s1_collection=s1_collection,
        dem_collection=dem_collection,
        cloud_mask=cloud_mask,
        tiles=tiles,
        tile_size=tile_size,
        processing_level=processing_level,
        spec=spec,
        features=features,
        tile_id=tile_id,
        allow_root=tuple(allow_root or ()),
        scheduler=scheduler,
        workers=workers,
        dashboard=dashboard,
        device=device,
    )
    with EventView("features") as view:
        summary = run(req, view)
    if tiles is None and not summary.done and not summary.failures:  # a whole stack: one COG
        out_console.print(f"{summary.outputs[0]} is up to date")
        return
    if tiles is None and summary.done:
        out_console.print(f"wrote {summary.outputs[0]}")
        return
    out_console.print(
        f"wrote {summary.done} feature COG(s) to {out} ({summary.skipped} up to date"
        + (f", {len(summary.failures)} without features" if summary.failures else "")
        + f") in {summary.seconds:.1f} s"
    )
    fail_tiles(
        summary.failures,
        "tile(s) without features",
        out / ".eulc-features.json",
        "rerun to retry them: done tiles are kept",
    )


@app.command()
def sample(
    points: Annotated[
        Path,
        typer.Option(
            help="LUCAS points: CSV with POINT_ID and TH_LAT/TH_LONG or lat/lon (EPSG:4326), or polygons; LC1/LU1 kept"
        ),
    ],
    features_dir: FeaturesDirOpt,
    out: Annotated[Path, typer.Option("--out", help="export CSV for `eulc table` (GEE sampleRegions layout)")],
) -> None:
    """Sample feature COGs at points: the local engine's table export (then `eulc table`)."""
    from pipeline.core.atomic import atomic_path
    from pipeline.core.errors import RasterError
    from pipeline.core.ledger import out_lock
    from tiles.engine.sample import points_frame, sample_features

    cogs = sorted(p for p in features_dir.glob("*.tif") if not p.name.startswith("."))
    if not cogs:
        raise RasterError("has no feature COG (*.tif)", "Compute them with `eulc features`", path=features_dir)
    table, counts = sample_features(cogs, points_frame(points))
    with out_lock(out, "eulc sample", is_file=True), atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    out_console.print(
        f"wrote {out}: {counts['sampled']:,} of {counts['points']:,} points sampled "
        f"({counts['outside']:,} outside the {len(cogs)} COG(s)), {table.shape[1] - 2} columns"
    )


@app.command()
def drift(
    table_path: Annotated[Path, typer.Option("--table", help="FeatureTable from `eulc table`")],
    features_dir: FeaturesDirOpt,
    out: Annotated[Path | None, typer.Option(help="write every (tile, feature) row to this CSV")] = None,
    threshold: Annotated[float, typer.Option(help="PSI above which a feature is flagged as shifted")] = 0.25,
    fail_on_shift: Annotated[bool, typer.Option(help="exit 1 when any feature is flagged")] = False,
    bundle: Annotated[
        str | None,
        typer.Option(
            help="also compare the tiles' landscape histogram with this bundle's training landscapes "
            f"(its OOD reference); {BUNDLE_HELP}"
        ),
    ] = None,
    landscapes_csv: Annotated[
        Path | None, typer.Option(help="with --bundle: write the (tile, landscape cluster) shares to this CSV")
    ] = None,
    landscapes_png: Annotated[
        Path | None, typer.Option(help="with --bundle: draw the training vs tile landscape histograms into this PNG")
    ] = None,
) -> None:
    """Flag features whose distribution over the tiles differs from the training table (PSI, KS),
    and with --bundle landscapes the training data did not have (seed paper 002's histograms).
    """
    from pipeline.assess.drift import PSI_MODERATE, PSI_SIGNIFICANT, READ_WITH_OOD, beyond_line
    from pipeline.stages.assess import DriftRequest
    from pipeline.stages.assess import drift as run

    req = DriftRequest(table_path, features_dir, out, threshold, bundle, landscapes_csv, landscapes_png)
    with EventView("drift") as view:
        res = run(req, view)
    df = res.rows
    tab = Table(
        "tile",
        "feature",
        "PSI",
        "KS",
        "median train",
        "median tile",
        "nodata",
        "flag",
        "PSI of one training landscape (p90)",
        title=f"drift (PSI > {threshold:g} = shift, > {PSI_MODERATE:g} = moderate)",
    )
    for r in df.head(15).itertuples():
        tab.add_row(
            str(r.tile),
            str(r.feature),
            f"{r.psi:.3f}",
            f"{r.ks:.3f}",
            f"{r.median_train:.4g}",
            f"{r.median_tile:.4g}",
            f"{r.nodata_share:.0%}",
            str(r.flag),
            f"{r.expected_p90:.3f}" + (" beyond" if r.beyond_expected else ""),
        )
    out_console.print(tab)
    shifted = df[df["flag"] == "shift"]
    out_console.print(
        f"{len(shifted)} of {len(df)} (tile, feature) pairs shifted in {shifted['tile'].nunique()} "
        f"of {len(res.tiles)} tile(s)" + (f"; all rows in {out}" if out else "")
    )
    out_console.print(beyond_line(df), soft_wrap=True)
    if res.landscape_summary is not None:
        ltab = Table(
            "tile",
            "pixels",
            "landscape PSI",
            "rare or unseen landscape",
            "flag",
            title=f"landscapes of {bundle} (K = {res.k}; PSI > {PSI_SIGNIFICANT:g} = shift)",
        )
        for rec in res.landscape_summary.head(15).to_dict("records"):
            v = float(rec["psi"])
            flag = "shift" if v > PSI_SIGNIFICANT else ("moderate" if v > PSI_MODERATE else "stable")
            ltab.add_row(
                str(rec["tile"]), f"{int(rec['pixels']):,}", f"{v:.3f}", f"{float(rec['rare_share']):.1%}", flag
            )
        out_console.print(ltab)
        out_console.print(READ_WITH_OOD, soft_wrap=True)
        if landscapes_csv or landscapes_png:
            out_console.print("wrote " + " and ".join(str(p) for p in (landscapes_csv, landscapes_png) if p))
    if fail_on_shift and len(shifted):
        raise typer.Exit(1)
