"""What the ``eulc`` command groups share: the typer app, the consoles, option types that mean
the same in every command, progress bars and the small parsers of option values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.core.contract import features_digest
from pipeline.core.errors import EulcError
from pipeline.core.resume import StepLog, content_sha256, input_key

app = typer.Typer(add_completion=True, no_args_is_help=True,
                  help="eulc: 10 m land-cover maps of Europe from Copernicus data and LUCAS.",
                  epilog="Examples: `eulc demo --out demo` (the main job, shipped data); `eulc info`; "
                         "`eulc --threads 4 map --features-dir feats --bundle models/elc10-l1 --out maps`; "
                         "`eulc report --map maps.vrt --reference clcplus.tif --crosswalk clcplus_backbone "
                         "--out report`. Shell completion: `eulc --install-completion`.")
console = Console(stderr=True)
out_console = Console()
state = {"debug": False}


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
                           cloud_mask: Any = "auto", allow_roots: tuple[Path, ...] = ()) -> None:
    from pipeline.core.aoi import parse_tiles
    from tiles.engine.run import features_from_stac

    sub = sp.subset(sel.names)
    if not tiles:
        raise EulcError("--catalog/--stac need --tiles",
                        "Name the EEA cells to compute (codes, bbox:W,S,E,N or a file)")
    cells = parse_tiles(tiles, _size_m(tile_size))
    log = StepLog(out, FEATURES_LOG)
    source = _source_key(catalog, allow_roots)
    done = failed = 0
    with _progress() as prog:
        task = prog.add_task("features", total=len(cells), info="")
        for cell in cells:
            dest = out / f"{cell}_{year}.tif"
            key = input_key("features", features_digest(sub), year, str(cloud_mask), level, source, str(cell))
            # resume: the same request on the same inputs, and the file as written (SHA-256)
            if dest.is_file() and log.done(dest.name, key):
                prog.update(task, advance=1, info=f"{cell} up to date")
                continue
            try:
                features_from_stac(catalog, sp, sel, year, cell.window(), dest, level, cloud_mask,
                                   allow_roots=allow_roots)
                log.mark(dest.name, key, [dest])
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


FEATURES_LOG = ".eulc-features.json"
"""The resume log of a feature folder: per COG, its request and input key and its SHA-256."""


def _source_key(source: Any, allow_roots: tuple[Path, ...] = ()) -> str:
    """What the features are computed from, for the resume key: a static catalogue by the content
    of its JSON files (items, hrefs, dates), a STAC API by its URL and collections.
    """
    from tiles.engine.stac_load import items_from_catalog
    from tiles.engine.stac_search import StacApi

    if isinstance(source, StacApi):
        return json.dumps({"url": source.url, "collections": source.collections}, sort_keys=True)
    items = sorted((it.to_dict(include_self_link=False) for it in items_from_catalog(Path(source), allow_roots)),
                   key=lambda d: str(d.get("id")))
    return input_key(content_sha256(Path(source)), json.dumps(items, sort_keys=True, default=str))


def _size_m(text: str) -> int:
    t = text.strip().lower()
    try:
        size = int(float(t[:-2]) * 1000) if t.endswith("km") else int(t.removesuffix("m"))
    except ValueError:
        raise EulcError(f"--tile-size {text!r} is not a size", "Write the cell size like 10km or 250m") from None
    if size < 100 or size % 10:
        raise EulcError(f"--tile-size {text!r} is not an EEA grid cell size",
                        "Use a whole number of 10 m pixels from 100m up, e.g. 100km, 10km, 1km or 250m")
    return size
