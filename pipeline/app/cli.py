"""The ``eulc`` command line: one library call per subcommand (typer + rich).

Bad input ends with a one-line error naming the file and column/band and what to change,
exit status 2, and no traceback (``eulc --debug ...`` shows it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.app.cli_gee import gee_app
from pipeline.core.errors import EulcError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="eulc: 10 m land-cover maps of Europe from Copernicus data and LUCAS.")
app.add_typer(gee_app, name="gee")
console = Console(stderr=True)
out_console = Console()
_state = {"debug": False}


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    _state["debug"] = debug


S2Collection = Annotated[str, typer.Option("--collection", help="with --stac: the S2 collection")]
S1Collection = Annotated[str | None, typer.Option(
    "--s1-collection", help="with --stac: the S1 collection of linear σ⁰/γ⁰ (e.g. sentinel-1-rtc on Planetary "
    "Computer); needed when the features use S1")]
DemCollection = Annotated[str | None, typer.Option(
    "--dem-collection", help="with --stac: the DEM collection (e.g. cop-dem-glo-30); needed for DEM features")]
CloudMaskOpt = Annotated[str, typer.Option(
    "--cloud-mask", help="auto: the spec's S2 mask, SCL when the items lack s2cloudless CLP; none: no cloud mask")]
S2Level = Annotated[str, typer.Option("--level", help="with --stac/--catalog: S2 level, L2A (harmonization "
                                      "offset) or L1C")]


def _stac_source(stac: str | None, catalog: Path | None, collection: str, s1_collection: str | None,
                 dem_collection: str | None) -> Any:
    """A static catalogue path, or the STAC API with a collection per sensor kind."""
    from tiles.engine.stac_search import StacApi

    if stac is None:
        return catalog
    cols = {"s2": collection} | ({"s1": s1_collection} if s1_collection else {}) | (
        {"dem": dem_collection} if dem_collection else {})
    return StacApi(stac, cols)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=console)


@app.command()
def table(
    exports: Annotated[list[Path], typer.Argument(help="GEE sampleRegions CSV export(s)")],
    out: Annotated[Path, typer.Option("--out", help="output FeatureTable (.parquet)")],
    spec: Annotated[str, typer.Option(help="feature spec name or YAML path")] = "elc10",
    lucas: Annotated[Path | None, typer.Option(help="LUCAS point CSV with LC1/LU1")] = None,
    year: Annotated[int | None, typer.Option(help="survey year (default: the spec's)")] = None,
) -> None:
    """Build a FeatureTable (GeoParquet) from GEE exports, labels and bioregions."""
    from pipeline.core.spec import load_spec
    from pipeline.table import build_feature_table, write_feature_table

    with console.status("building the training table"):
        gdf, rep = build_feature_table(exports, load_spec(spec), lucas, year)
        write_feature_table(gdf, out)
    for line in rep.lines():
        console.print(f"  {line}")
    out_console.print(f"wrote {out}")


@app.command()
def train(
    table_path: Annotated[Path, typer.Argument(help="FeatureTable from `eulc table`")],
    out: Annotated[Path, typer.Option("--out", help="bundle directory")],
    features: Annotated[str | None, typer.Option(
        help="selection JSON, or comma-separated names (default: every spec feature)")] = None,
    spec: Annotated[str | None, typer.Option(
        help="feature spec name or YAML path (default: the table's)")] = None,
    level: Annotated[str, typer.Option(help="level1 or level2")] = "level1",
    epochs: Annotated[int, typer.Option(help="training epochs (paper: 500)")] = 500,
    lr: Annotated[float, typer.Option(help="AdamW learning rate (paper: 1e-4)")] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="batch size (authors' code: 128)")] = 128,
    seed: Annotated[int, typer.Option()] = 0,
    ema: Annotated[bool, typer.Option(help="weight EMA (0.95) from the halfway epoch, as the authors")] = True,
    preset: Annotated[str, typer.Option(
        help="eulc (default: blocked hold-out selection + calibration), bridge-lc (faithful) or mlp")] = "eulc",
) -> None:
    """Train a model (eulc's default, faithful BRIDGE-LC or a plain MLP) and write a ModelBundle
    (safetensors + JSON).
    """
    from model.api import train_from_table
    from model.train import TrainConfig
    from pipeline.core.selection import parse_selection
    from pipeline.core.spec import load_spec
    from pipeline.table import table_metadata, table_spec

    sel = parse_selection(load_spec(spec) if spec else table_spec(table_metadata(table_path), f"table {table_path}"),
                          features)
    if level not in ("level1", "level2"):
        raise typer.BadParameter(f"--level must be level1 or level2, not {level!r}")
    from model.presets import PRESETS, preset_config

    if preset not in PRESETS:
        raise typer.BadParameter(f"unknown preset {preset!r}; use one of {list(PRESETS)}")
    cfg = preset_config(preset, TrainConfig.model_validate({
        "level": level, "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
        **({} if ema else {"ema_momentum": None})}))
    with _progress() as prog:
        task = prog.add_task("training", total=epochs, info="")
        metrics = train_from_table(
            table_path, out, sel, cfg,
            lambda e, loss: prog.update(task, completed=e, info=f"loss {loss:.3f}"))
    msg = (f"wrote {out}: {metrics.get('holdout', '')} hold-out accuracy {metrics.get('val_accuracy', 0):.3f}, "
           f"weighted F1 {metrics.get('val_weighted_f1', 0):.3f}")
    if "temperature" in metrics:
        msg += (f", ECE {metrics['val_ece'] * 100:.1f} % → {metrics['val_ece_calibrated'] * 100:.1f} % "
                f"after temperature scaling (T = {metrics['temperature']:.2f})")
    out_console.print(msg)


@app.command()
def features(
    out: Annotated[Path, typer.Option("--out", help="output directory")],
    year: Annotated[int, typer.Option(help="map year")],
    files: Annotated[str | None, typer.Option("--files", help="stack manifest (YAML) or shipped name")] = None,
    catalog: Annotated[Path | None, typer.Option(help="static STAC catalogue (catalog.json) of S2 items")] = None,
    stac: Annotated[str | None, typer.Option(
        help="STAC API URL, e.g. https://earth-search.aws.element84.com/v1")] = None,
    collection: S2Collection = "sentinel-2-l2a",
    s1_collection: S1Collection = None,
    dem_collection: DemCollection = None,
    cloud_mask: CloudMaskOpt = "auto",
    tiles: Annotated[str | None, typer.Option(
        help="with --catalog/--stac: EEA cells (codes, bbox:W,S,E,N or a file)")] = None,
    tile_size: Annotated[str, typer.Option(help="cell size for a bbox or vector AOI")] = "10km",
    level: S2Level = "L2A",
    spec: Annotated[str | None, typer.Option(
        help="feature spec name or YAML path (default: the selection's or bundle's own, else elc10)")] = None,
    select: Annotated[str | None, typer.Option(
        help="selection JSON, comma-separated names, or a model bundle dir")] = None,
    tile_id: Annotated[str | None, typer.Option(help="output name (default: manifest name)")] = None,
) -> None:
    """Compute spec features from a local Sentinel stack and write a feature COG."""
    from tiles.engine.run import features_from_stack
    from tiles.engine.stack import load_manifest

    sp, sel = _spec_and_selection(spec, select)
    if sum(v is not None for v in (files, catalog, stac)) != 1:
        raise EulcError("give one of --files (a local stack manifest), --catalog (a static STAC catalogue) "
                        "or --stac (a STAC API URL)")
    if catalog is not None or stac is not None:
        _features_from_catalog(_stac_source(stac, catalog, collection, s1_collection, dem_collection), tiles,
                               tile_size, sp, sel, year, out, level, cloud_mask=_cloud_mask(cloud_mask))
        return
    assert files is not None
    name = tile_id or load_manifest(files)[0].name
    dest = out / f"{name}_{year}.tif"
    with _progress() as prog:
        task = prog.add_task("features", total=len(sel.names), info="")
        features_from_stack(files, sp, sel, year, dest,
                            lambda n: prog.update(task, advance=1, info=n), cloud_mask=_cloud_mask(cloud_mask))
    out_console.print(f"wrote {dest}")


def _spec_and_selection(spec: str | None, select: str | None) -> tuple[Any, Any]:
    """``--spec``/``--select`` → (spec, selection); a bundle directory brings its own spec."""
    from pipeline.core.selection import FeatureSelection, resolve_selection

    if select and Path(select).is_dir():
        from model.bundle import load_bundle
        from pipeline.core.spec import load_spec

        b = load_bundle(Path(select))
        sp = b.feature_spec()
        sel = FeatureSelection.of(sp, b.features, "bundle")
        if spec:
            sel.check_against(load_spec(spec), f"bundle {select}")
        return sp, sel
    return resolve_selection(spec, select, "elc10")


def _cloud_mask(choice: str) -> Any:
    if choice not in ("auto", "none"):
        raise EulcError(f"--cloud-mask {choice!r} is not a choice", "Use auto or none")
    return choice


def _features_from_catalog(catalog: Any, tiles: str | None, tile_size: str, sp: Any, sel: Any,
                           year: int, out: Path, level: str, keep_going: bool = False,
                           cloud_mask: Any = "auto") -> None:
    from pipeline.core.aoi import parse_tiles
    from pipeline.core.featurecog import is_up_to_date
    from tiles.engine.run import features_from_stac

    sub = sp.subset(sel.names)
    if not tiles:
        raise EulcError("--catalog/--stac need --tiles",
                        "Name the EEA cells to compute (codes, bbox:W,S,E,N or a file)")
    cells = parse_tiles(tiles, _size_m(tile_size))
    done = failed = 0
    with _progress() as prog:
        task = prog.add_task("features", total=len(cells), info="")
        for cell in cells:
            dest = out / f"{cell}_{year}.tif"
            if dest.is_file() and is_up_to_date(dest, sub, year, cloud_mask):  # resume (files are whole: atomic)
                prog.update(task, advance=1, info=f"{cell} up to date")
                continue
            try:
                features_from_stac(catalog, sp, sel, year, cell.window(), dest, level, cloud_mask)
            except EulcError as e:
                if not keep_going:
                    raise
                console.print(f"[yellow]{cell}: no features[/yellow] ({e})", highlight=False, soft_wrap=True)
                prog.update(task, advance=1, info=f"{cell} failed")
                failed += 1
                continue
            done += 1
            prog.update(task, advance=1, info=str(cell))
    out_console.print(f"wrote {done} feature COG(s) to {out} ({len(cells) - done - failed} up to date"
                      + (f", {failed} without features" if failed else "") + ")")


@app.command("map")
def map_(
    feature_cogs: Annotated[list[Path] | None, typer.Argument(
        help="feature COG(s) to map whole (without --tiles)", show_default=False)] = None,
    bundle: Annotated[Path, typer.Option("--bundle", help="model bundle directory")] = Path("models/elc10-l1"),
    out: Annotated[Path, typer.Option("--out", help="run folder: COGs, STAC, manifest.sqlite")] = Path("maps"),
    tiles: Annotated[str | None, typer.Option(
        help="cells: codes (10kmE467N253,...), a .txt list, bbox:W,S,E,N (EPSG:4326) or a vector file")] = None,
    tile_size: Annotated[str, typer.Option(help="cell size for a bbox or vector AOI: 100km, 10km, 1km, 250m")] = "10km",
    features_dir: Annotated[Path | None, typer.Option(
        "--features-dir", help="feature COGs: with --tiles one per tile (<tile>.tif, <tile>_<year>.tif, "
        "<spec>_<year>_<tile>.tif); without, every file mapped whole")] = None,
    features: Annotated[Path | None, typer.Option(
        "--features", help="one feature COG/VRT holding all --tiles (read windowed)")] = None,
    level2: Annotated[Path | None, typer.Option(help="Level-2 crop bundle: crop types inside Cropland")] = None,
    scheduler: Annotated[str, typer.Option(
        help="local (LocalCluster), threads, sync, or a dask scheduler address tcp://host:8786")] = "local",
    workers: Annotated[int | None, typer.Option(help="workers for local/threads (default: CPU count)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    probabilities: Annotated[bool, typer.Option(help="also write per-class probabilities")] = False,
    compress: Annotated[str, typer.Option(help="DEFLATE or ZSTD")] = "DEFLATE",
    stac: Annotated[str | None, typer.Option(
        help="compute the bundle's features first from this STAC API (into OUT/features)")] = None,
    collection: S2Collection = "sentinel-2-l2a",
    s1_collection: S1Collection = None,
    dem_collection: DemCollection = None,
    cloud_mask: CloudMaskOpt = "auto",
    year: Annotated[int | None, typer.Option(help="with --stac: the map year")] = None,
    level: S2Level = "L2A",
    accept: Annotated[str | None, typer.Option(
        help="feature-contract differences to tolerate: cloud_mask, level (comma-separated); "
             "any other difference from the bundle's features fails the tile")] = None,
) -> None:
    """Map tiles with a model bundle: class + confidence COGs, STAC items, a resumable manifest.

    A rerun skips tiles that are done and unchanged; failed tiles are listed and the exit
    status is 1.
    """
    from pipeline.core.aoi import parse_tiles
    from tiles.mapping.runner import run_map

    size_m = _size_m(tile_size)
    cells = parse_tiles(tiles, size_m) if tiles else None
    accepted = [a.strip() for a in (accept or "").split(",") if a.strip()]
    bad = [a for a in accepted if a not in ("cloud_mask", "level")]
    if bad:
        raise EulcError(f"--accept {','.join(bad)}: only cloud_mask and level differences can be accepted",
                        "Recompute the features with the bundle's spec instead")
    files = ([features] if features else []) + list(feature_cogs or [])
    if stac is not None:  # one command from a public STAC API: features, then the map
        if year is None or not tiles or files or features_dir is not None:
            raise EulcError("--stac needs --year and --tiles, and no other feature source")
        sp, sel = _spec_and_selection(None, str(bundle))  # the bundle's own spec: YAML-path specs work too
        features_dir = out / "features"
        # the features come from items this command searched: the cloud mask the items allow and
        # their processing level are what there is (printed per tile; README "How the STAC path reads items")
        accepted = sorted({*accepted, "cloud_mask", "level"})
        out_console.print(f"--stac: differences from the bundle's features in {', '.join(accepted)} are "
                          "accepted and recorded in each class COG's `contract` tag")
        _features_from_catalog(_stac_source(stac, None, collection, s1_collection, dem_collection), tiles,
                               tile_size, sp, sel, year, features_dir, level, keep_going=True,
                               cloud_mask=_cloud_mask(cloud_mask))
    with _progress() as prog:
        task = prog.add_task("mapping", total=None, info="")

        def on_event(kind: str, info: dict[str, Any]) -> None:
            if kind == "plan":
                prog.update(task, total=info["total"], completed=info["skipped"],
                            info=f"{info['skipped']} up to date" if info["skipped"] else "")
            elif kind == "dashboard":
                out_console.print(f"dask dashboard: {info['link']}")
            elif kind == "tile":
                prog.update(task, advance=1, info=f"{info['tile_id']} {info['status']}")

        summary = run_map(cells, bundle, out, features_dir=features_dir, features_files=files or None,
                          level2_dir=level2, scheduler=scheduler, workers=workers, device=device,
                          probabilities=probabilities, compress=compress.upper(), on_event=on_event,
                          accept=tuple(accepted))
    px = summary.pixels - summary.nodata
    rate = f", {summary.pixels / summary.seconds / 1e6:.2f} Mpx/s" if summary.done and summary.seconds else ""
    out_console.print(f"{out}: {summary.done} tile(s) mapped, {summary.skipped} up to date, "
                      f"{len(summary.failures)} failed; {px:,} pixels classified, {summary.nodata:,} nodata"
                      f" in {summary.seconds:.1f} s{rate}")
    if summary.failures:
        console.print(f"[bold red]{len(summary.failures)} failed tile(s)[/bold red] (recorded in "
                      f"{out / 'manifest.sqlite'}; fix them and rerun: done tiles are kept):")
        for tid, err in summary.failures.items():
            console.print(f"  {tid}: {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _size_m(text: str) -> int:
    t = text.strip().lower()
    try:
        return int(float(t[:-2]) * 1000) if t.endswith("km") else int(t.removesuffix("m"))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: write the cell size like 10km or 250m") from None


@app.command("agreement")
def agreement_(
    class_map: Annotated[Path, typer.Argument(help="class COG from `eulc map`")],
    reference: Annotated[Path, typer.Option(help="reference raster")],
    crosswalk: Annotated[str, typer.Option(help="crosswalk: eolearn_lulc or elc10")] = "eolearn_lulc",
    out: Annotated[Path | None, typer.Option(help="write the JSON here")] = None,
) -> None:
    """Agreement of a class map with a reference map (confusion, user's/producer's accuracy)."""
    from pipeline.assess.agreement import agreement
    from pipeline.core.atomic import write_json
    from pipeline.core.legend import Crosswalk, level1_legend

    res = agreement(class_map, reference, Crosswalk.shipped(crosswalk), level1_legend())
    if out:
        write_json(out, res)
    _print_agreement(res)


@app.command()
def report(
    map_path: Annotated[Path, typer.Option("--map", help="class COG from `eulc map` (Level-1)")],
    reference: Annotated[Path, typer.Option(help="reference raster (CLC+ Backbone, CORINE, ...), any CRS")],
    crosswalk: Annotated[str, typer.Option(
        help="clcplus_backbone, corine_l3, osm_clcplus, eucropmap, eolearn_lulc, elc10 or eulc_level1")],
    out: Annotated[Path, typer.Option("--out", help="output folder")],
    points: Annotated[Path | None, typer.Option(
        help="reference points: FeatureTable or LUCAS LC1 points (accuracy + area with 95 % CI)")] = None,
    zones: Annotated[Path | None, typer.Option(help="zones (e.g. NUTS polygons): composition per zone")] = None,
    previous: Annotated[Path | None, typer.Option(help="an earlier class map: transition matrix (ha)")] = None,
    bundle: Annotated[Path | None, typer.Option(help="the model bundle (its model card goes in the report)")] = None,
    title: Annotated[str | None, typer.Option(help="report title")] = None,
) -> None:
    """Compare a map with a reference map: report.html (self-contained), metrics.json, CSVs."""
    from pipeline.assess.report import write_report

    with console.status("comparing and drawing"):
        m = write_report(map_path, reference, crosswalk, out, points=points, zones=zones, previous=previous,
                         bundle=bundle, title=title)
    oa = m["overall_agreement"]
    msg = f"wrote {out / 'report.html'}: overall agreement {oa * 100:.1f} % over {m['area_compared_ha']:,.1f} ha"
    if "reference_sample" in m and m["reference_sample"]["overall"] is not None:
        rs = m["reference_sample"]
        msg += f"; accuracy from {rs['n_points']} points {rs['overall'] * 100:.1f} ± {rs['overall_ci95'] * 100:.1f} %"
    out_console.print(msg)


@app.command()
def sample(
    points: Annotated[Path, typer.Option(
        help="LUCAS points: CSV with POINT_ID and TH_LAT/TH_LONG or lat/lon (EPSG:4326), or polygons; LC1/LU1 kept")],
    features_dir: Annotated[Path, typer.Option("--features-dir", help="feature COGs (*.tif) covering the points")],
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
    table_path: Annotated[Path, typer.Option("--table", help="training FeatureTable (eulc table)")],
    features_dir: Annotated[Path, typer.Option("--features-dir", help="feature COGs to check (*.tif)")],
    out: Annotated[Path | None, typer.Option(help="write every (tile, feature) row to this CSV")] = None,
    threshold: Annotated[float, typer.Option(help="PSI above which a feature is flagged as shifted")] = 0.25,
    fail_on_shift: Annotated[bool, typer.Option(help="exit 1 when any feature is flagged")] = False,
) -> None:
    """Flag features whose distribution over the tiles differs from the training table (PSI, KS)."""
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
    if fail_on_shift and len(shifted):
        raise typer.Exit(1)


@app.command()
def evaluate(
    table_path: Annotated[Path, typer.Option("--table", help="FeatureTable from `eulc table`")],
    out: Annotated[Path, typer.Option("--out", help="output directory")],
    bundle: Annotated[Path | None, typer.Option(help="evaluate this bundle on the table")] = None,
    scenario: Annotated[str | None, typer.Option(
        help="extrap, extrap-blocked, loro or ablation (Table 12 variants on LORO)")] = None,
    features: Annotated[str | None, typer.Option(help="selection JSON or names (default: all)")] = None,
    models: Annotated[str, typer.Option(
        help="comma-separated: bridge-lc (faithful), eulc (default), mlp, rf, xgboost, svm")
    ] = "bridge-lc,eulc,mlp,rf,xgboost,svm",
    seeds: Annotated[int, typer.Option(help="number of seeds (paper-style: >= 5)")] = 5,
    epochs: Annotated[int, typer.Option(help="neural-model epochs (paper: 500)")] = 500,
    lr: Annotated[float, typer.Option(help="neural-model learning rate (paper: 1e-4)")] = 1e-4,
    level: Annotated[str, typer.Option(help="level1 or level2")] = "level1",
    regions: Annotated[str | None, typer.Option(help="LORO regions, comma-separated (default: all 8)")] = None,
    max_rows: Annotated[int | None, typer.Option(help="subsample the table (quick runs)")] = None,
    ema: Annotated[bool, typer.Option(help="BRIDGE-LC weight EMA (0.95) from the halfway epoch")] = True,
) -> None:
    """Evaluate a bundle on a table (metrics.json), or run a paper scenario (CSV + Markdown)."""
    from pipeline.core.atomic import write_json

    if bundle is not None:
        from model.evaluate import evaluate_bundle

        m = evaluate_bundle(bundle, table_path)
        write_json(out / "metrics.json", m)
        left_out = {k: v for k, v in m["dropped"].items() if v}
        out_console.print(f"overall accuracy {m['overall_accuracy']:.4f}, weighted F1 {m['weighted_f1']:.4f}, "
                          f"ECE {100 * m['ece']:.1f} % on {m['n']:,} rows"
                          + (f" (left out, not imputed: {left_out})" if left_out else "")
                          + f"; wrote {out / 'metrics.json'}")
        return
    if scenario is None:
        raise typer.BadParameter("give --bundle or --scenario")
    from model.evaluate import run_scenario
    from model.train import TrainConfig
    from pipeline.core.selection import parse_selection
    from pipeline.table import table_metadata, table_spec

    chosen = tuple(m.strip() for m in models.split(",") if m.strip())
    sel = parse_selection(table_spec(table_metadata(table_path), f"table {table_path}"), features)
    cfg = TrainConfig.model_validate({"level": level, "epochs": epochs, "lr": lr,
                                      **({} if ema else {"ema_momentum": None})})
    with _progress() as prog:
        task = prog.add_task(scenario, total=None, info="")
        df = run_scenario(table_path, sel.names, scenario, out, chosen, tuple(range(seeds)), cfg,
                          [r.strip() for r in regions.split(",")] if regions else None, max_rows,
                          lambda r: prog.update(task, advance=1, info=f"{r['split']} {r['model']}: "
                                                                       f"F1 {r['weighted_f1']:.3f}"))
    out_console.print((out / f"{scenario}_summary.md").read_text())
    out_console.print(f"{len(df)} runs; wrote {out / f'{scenario}_runs.csv'}")


@app.command()
def select(
    table_path: Annotated[Path, typer.Option("--table", help="FeatureTable from `eulc table`")],
    out: Annotated[Path, typer.Option("--out", help="FeatureSelection JSON to write")],
    k: Annotated[int | None, typer.Option(help="features to keep (default: 109 of 196, else the same share)")] = None,
    method: Annotated[str, typer.Option(help="mdi (impurity) or permutation (blocked hold-out)")] = "mdi",
    seeds: Annotated[int, typer.Option(help="RF seeds to average (stability is reported)")] = 3,
    level: Annotated[str, typer.Option(help="labels to rank for: level1 or level2")] = "level1",
    curve: Annotated[Path | None, typer.Option(help="also write the accuracy-vs-k curve (CSV + PNG) here")] = None,
) -> None:
    """Rank features by Random-Forest importance and keep the top k (paper §2, after Ghassemi et al. 2024)."""
    from model.importance import accuracy_vs_k, curve_png, default_k, rf_importance, select_top_k
    from model.train import training_arrays
    from pipeline.table import read_feature_table, table_metadata, table_spec

    if method not in ("mdi", "permutation"):
        raise typer.BadParameter(f"unknown method {method!r}; use mdi or permutation")
    spec = table_spec(table_metadata(table_path), f"table {table_path}")
    table, _ = read_feature_table(table_path)
    names = [n for n in spec.names if n in table.columns]
    d = training_arrays(table, names, level)
    kk = k if k is not None else default_k(len(names))
    dropped = {kk_: v for kk_, v in d.dropped.items() if v}
    out_console.print(f"{len(d.y):,} rows, {len(names)} features" + (f"; left out: {dropped}" if dropped else ""))
    with _progress() as prog:
        task = prog.add_task(f"RF importance ({method})", total=seeds, info="")
        imp = rf_importance(d.x, d.y, d.cells, names, method,  # type: ignore[arg-type]
                            tuple(range(seeds)), lambda s: prog.update(task, advance=1))
    sel = select_top_k(spec, imp, kk)
    sel.save(out)
    out_console.print(f"kept {kk} of {len(names)}: {', '.join(sel.names[:10])}{' …' if kk > 10 else ''}")
    out_console.print(f"stability: {sel.note}; wrote {out}")
    if curve is not None:
        from pipeline.core.atomic import atomic_path

        with _progress() as prog:
            task = prog.add_task("accuracy vs k", total=None, info="")
            df = accuracy_vs_k(d.x, d.y, d.cells, imp,
                               on_k=lambda kv, f1: prog.update(task, advance=1, info=f"k={kv}: F1 {f1:.3f}"))
        with atomic_path(curve / "accuracy_vs_k.csv") as tmp:
            df.to_csv(tmp, index=False)
        curve_png(df, str(curve / "accuracy_vs_k.png"), f"{spec.name}: RF on top-k features ({method})", kk)
        out_console.print(df.to_string(index=False))
        out_console.print(f"wrote {curve / 'accuracy_vs_k.csv'} and .png")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="output directory")],
    epochs: Annotated[int, typer.Option(help="training epochs of the short schedule")] = 10,
    lr: Annotated[float, typer.Option(help="learning rate of the short schedule")] = 1e-3,
    year: Annotated[int, typer.Option(help="map year of the Slovenia stack")] = 2017,
    train: Annotated[bool, typer.Option("--train", help="train a model here instead of using the shipped one")] = False,
) -> None:
    """The main job on the real data: table → train → features → map → agreement."""
    from pipeline.app.demo import run_demo

    with _progress() as prog:
        task = prog.add_task("training", total=epochs, info="", visible=False)

        def on_epoch(e: int, loss: float) -> None:
            prog.update(task, visible=True, completed=e, info=f"loss {loss:.3f}")

        def report(step: str, msg: str) -> None:
            prog.console.print(f"[cyan]{step:>9}[/cyan]  {msg}")

        res = run_demo(out, epochs=epochs, lr=lr, year=year, train=train, report=report, on_epoch=on_epoch)
    _print_agreement(res)
    out_console.print(f"outputs in {out} (agreement.json, maps/, features/"
                      f"{', model/, table.parquet' if train else ''})")


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}"


def _print_agreement(res: dict[str, Any]) -> None:
    t = Table(title=f"Agreement with {Path(res['reference']).name} "
                    f"({res['n_pixels']:,} pixels, {res['resampling']} resampling)")
    for col in ("class", "user's acc.", "producer's acc.", "F1", "map px", "reference px"):
        t.add_column(col, justify="right" if col != "class" else "left")
    for name, r in res["per_class"].items():
        if r["map_pixels"] or r["reference_pixels"]:
            t.add_row(name, _fmt(r["users_accuracy"]), _fmt(r["producers_accuracy"]),
                      _fmt(r["f1"]), f"{r['map_pixels']:,}", f"{r['reference_pixels']:,}")
    out_console.print(t)
    cm = res["confusion"]
    keep = [i for i, _ in enumerate(cm["classes"])
            if sum(cm["matrix"][i]) or sum(row[i] for row in cm["matrix"])]
    c = Table(title="Confusion matrix (rows = map, columns = reference)")
    c.add_column("map \\ ref")
    for i in keep:
        c.add_column(cm["classes"][i][:12], justify="right")
    for i in keep:
        c.add_row(cm["classes"][i][:18], *[str(cm["matrix"][i][j]) for j in keep])
    out_console.print(c)
    out_console.print(f"[bold]overall accuracy: {_fmt(res['overall_accuracy'])}[/bold]")


def main() -> None:
    """Console-script entry point: run the app, turning eulc errors into one-line messages."""
    import rasterio.errors

    try:
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:  # typer.Exit(n) comes back as a return value here
            sys.exit(rc)
    except EulcError as e:
        if _state["debug"]:
            raise
        console.print(f"[bold red]error:[/bold red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except rasterio.errors.RasterioError as e:
        if _state["debug"]:
            raise
        console.print(f"[bold red]error:[/bold red] raster input: {e}", highlight=False,
                      soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted; rerun the same command to resume")
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # click usage errors surface here in non-standalone mode
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
