"""``eulc features``, ``sample`` and ``drift``: the local/STAC feature engine and its outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipeline.app.cli_common import (
    BUNDLE_HELP,
    FEATURES_LOG,
    CloudMaskOpt,
    DemCollection,
    FeaturesDirOpt,
    FeaturesOpt,
    ProcessingLevelOpt,
    S1Collection,
    S2Collection,
    SpecOpt,
    StacOpt,
    TileSizeOpt,
    TilesOpt,
    _cloud_mask,
    _features_from_catalog,
    _progress,
    _spec_and_selection,
    _stac_source,
    app,
    console,
    out_console,
)
from pipeline.core.atomic import remove_leftovers
from pipeline.core.contract import features_digest
from pipeline.core.errors import EulcError
from pipeline.core.resume import StepLog, input_key


@app.command()
def features(
    out: Annotated[Path, typer.Option("--out", help="output directory")],
    year: Annotated[int, typer.Option(help="map year")],
    files: Annotated[str | None, typer.Option("--files", help="stack manifest (YAML) or shipped name")] = None,
    catalog: Annotated[Path | None, typer.Option(help="static STAC catalogue (catalog.json) of S2 items")] = None,
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
    allow_root: Annotated[list[Path] | None, typer.Option(
        "--allow-root", help="with --catalog: a folder outside the catalogue's own its assets may lie in")] = None,
) -> None:
    """Compute spec features from a local Sentinel stack and write a feature COG."""
    from tiles.engine.run import features_from_stack, stack_features_path
    from tiles.engine.stack import load_manifest

    sp, sel = _spec_and_selection(spec, features)
    remove_leftovers(out)  # temporaries of a killed earlier run, even when everything is up to date
    if sum(v is not None for v in (files, catalog, stac)) != 1:
        raise EulcError("give one of --files (a local stack manifest), --catalog (a static STAC catalogue) "
                        "or --stac (a STAC API URL)")
    if catalog is not None or stac is not None:
        _features_from_catalog(_stac_source(stac, catalog, collection, s1_collection, dem_collection), tiles,
                               tile_size, sp, sel, year, out, processing_level, cloud_mask=_cloud_mask(cloud_mask),
                               allow_roots=tuple(allow_root or ()))
        return
    assert files is not None
    man, root = load_manifest(files)
    dest = stack_features_path(out, man.name, year, tile_id)
    sub = sp.subset(sel.names)
    inputs = [root / it.path for it in man.items if (root / it.path).is_file()]
    key = input_key("features", features_digest(sub), year, cloud_mask, str(files), *inputs)
    log = StepLog(out, FEATURES_LOG)
    if dest.is_file() and log.done(dest.name, key):
        out_console.print(f"{dest} is up to date")
        return
    with _progress() as prog:
        task = prog.add_task("features", total=len(sel.names), info="")
        features_from_stack(files, sp, sel, year, dest,
                            lambda n: prog.update(task, advance=1, info=n), cloud_mask=_cloud_mask(cloud_mask))
    log.mark(dest.name, key, [dest])
    out_console.print(f"wrote {dest}")


@app.command()
def sample(
    points: Annotated[Path, typer.Option(
        help="LUCAS points: CSV with POINT_ID and TH_LAT/TH_LONG or lat/lon (EPSG:4326), or polygons; LC1/LU1 kept")],
    features_dir: FeaturesDirOpt,
    out: Annotated[Path, typer.Option("--out", help="export CSV for `eulc table` (GEE sampleRegions layout)")],
) -> None:
    """Sample feature COGs at points: the local engine's table export (then `eulc table`)."""
    from pipeline.core.atomic import atomic_path
    from pipeline.core.errors import RasterError
    from tiles.engine.sample import points_frame, sample_features

    cogs = sorted(p for p in features_dir.glob("*.tif") if not p.name.startswith("."))
    if not cogs:
        raise RasterError("has no feature COG (*.tif)", "Compute them with `eulc features`", path=features_dir)
    table, counts = sample_features(cogs, points_frame(points))
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    out_console.print(f"wrote {out}: {counts['sampled']:,} of {counts['points']:,} points sampled "
                      f"({counts['outside']:,} outside the {len(cogs)} COG(s)), {table.shape[1] - 2} columns")


@app.command()
def drift(
    table_path: Annotated[Path, typer.Option("--table", help="FeatureTable from `eulc table`")],
    features_dir: FeaturesDirOpt,
    out: Annotated[Path | None, typer.Option(help="write every (tile, feature) row to this CSV")] = None,
    threshold: Annotated[float, typer.Option(help="PSI above which a feature is flagged as shifted")] = 0.25,
    fail_on_shift: Annotated[bool, typer.Option(help="exit 1 when any feature is flagged")] = False,
    bundle: Annotated[str | None, typer.Option(
        help="also compare the tiles' landscape histogram with this bundle's training landscapes "
             f"(its OOD reference); {BUNDLE_HELP}")] = None,
    landscapes_csv: Annotated[Path | None, typer.Option(
        help="with --bundle: write the (tile, landscape cluster) shares to this CSV")] = None,
    landscapes_png: Annotated[Path | None, typer.Option(
        help="with --bundle: draw the training vs tile landscape histograms into this PNG")] = None,
) -> None:
    """Flag features whose distribution over the tiles differs from the training table (PSI, KS),
    and with --bundle landscapes the training data did not have (seed paper 002's histograms).
    """
    from pipeline.assess.drift import PSI_MODERATE, drift_table
    from pipeline.core.atomic import atomic_path
    from pipeline.core.errors import RasterError
    from pipeline.table import read_feature_table

    tiles = sorted(p for p in features_dir.glob("*.tif") if not p.name.startswith("."))
    if not tiles:
        raise RasterError("has no feature COG (*.tif)", "Point --features-dir at `eulc features` outputs",
                          path=features_dir)
    train, _ = read_feature_table(table_path)
    with console.status(f"comparing {len(tiles)} tile(s) with {len(train):,} training rows"):
        df = drift_table(train, tiles, psi_threshold=threshold)
    if out:
        with atomic_path(out) as tmp:
            df.to_csv(tmp, index=False)
    tab = Table("tile", "feature", "PSI", "KS", "median train", "median tile", "nodata", "flag",
                title=f"drift (PSI > {threshold:g} = shift, > {PSI_MODERATE:g} = moderate)")
    for r in df.head(15).itertuples():
        tab.add_row(str(r.tile), str(r.feature), f"{r.psi:.3f}", f"{r.ks:.3f}", f"{r.median_train:.4g}",
                    f"{r.median_tile:.4g}", f"{r.nodata_share:.0%}", str(r.flag))
    out_console.print(tab)
    shifted = df[df["flag"] == "shift"]
    out_console.print(f"{len(shifted)} of {len(df)} (tile, feature) pairs shifted in {shifted['tile'].nunique()} "
                      f"of {len(tiles)} tile(s)" + (f"; all rows in {out}" if out else ""))
    if bundle is not None:
        _landscape_drift(bundle, tiles, landscapes_csv, landscapes_png)
    elif landscapes_csv or landscapes_png:
        raise typer.BadParameter("--landscapes-csv and --landscapes-png need --bundle")
    if fail_on_shift and len(shifted):
        raise typer.Exit(1)


def _landscape_drift(bundle: str, tiles: list[Path], csv: Path | None, png: Path | None) -> None:
    """The landscape part of ``eulc drift`` (:func:`tiles.mapping.landscapes.landscape_drift`)."""
    from model.bundle import load_bundle
    from pipeline.app.pretrained import resolve_bundle
    from pipeline.assess.drift import PSI_MODERATE, PSI_SIGNIFICANT
    from pipeline.assess.report_figures import landscape_bars
    from pipeline.core.atomic import atomic_path
    from tiles.mapping.landscapes import landscape_drift

    ref = load_bundle(resolve_bundle(bundle)).require_ood()
    with console.status(f"assigning the tiles' pixels to {ref.k} training landscapes"):
        hist, summ = landscape_drift(ref, tiles)
    tab = Table("tile", "pixels", "landscape PSI", "rare or unseen landscape", "flag",
                title=f"landscapes of {bundle} (K = {ref.k}; PSI > {PSI_SIGNIFICANT:g} = shift)")
    for r in summ.head(15).to_dict("records"):
        v = float(r["psi"])
        flag = "shift" if v > PSI_SIGNIFICANT else ("moderate" if v > PSI_MODERATE else "stable")
        tab.add_row(str(r["tile"]), f"{int(r['pixels']):,}", f"{v:.3f}", f"{float(r['rare_share']):.1%}", flag)
    out_console.print(tab)
    if csv:
        with atomic_path(csv) as tmp:
            hist.to_csv(tmp, index=False)
    if png:
        with atomic_path(png) as tmp:
            tmp.write_bytes(landscape_bars(hist))
    if csv or png:
        out_console.print("wrote " + " and ".join(str(p) for p in (csv, png) if p))
