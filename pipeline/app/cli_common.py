"""What the ``eulc`` command groups share: the typer app, the consoles, option types that mean
the same in every command, progress bars and the small parsers of option values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipeline.core.contract import features_digest
from pipeline.core.errors import EulcError
from pipeline.core.resume import StepLog, content_sha256, input_key

app = typer.Typer(add_completion=True, no_args_is_help=True,
                  help="eulc: 10 m land-cover maps of Europe from Copernicus data and LUCAS.",
                  epilog="Examples: `eulc demo --out demo` (the main job, shipped data); `eulc info`; "
                         "`eulc --threads 4 map --features-dir feats --bundle elc10-l1 --out maps`; "
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
ProcessingLevelOpt = Annotated[str, typer.Option(
    "--processing-level", help="with --stac/--catalog: the Sentinel-2 processing level of the items, L2A "
    "(harmonization offset applied) or L1C")]

# Options that mean the same in every command that has them (tests/test_cli_options.py checks
# that an option name keeps one help text across commands, or is listed there with the reason)
FeaturesOpt = Annotated[str | None, typer.Option(
    "--features", help="which features: a selection JSON (`eulc select`), a model bundle (folder or "
    "shipped name, e.g. elc10-ndvi-l1) or comma-separated names; default: every feature of the spec")]
LevelOpt = Annotated[str, typer.Option(
    "--level", help="the class legend: level1 (7 land-cover classes) or level2 (19 crop types)")]
DeviceOpt = Annotated[str, typer.Option(
    "--device", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N")]
CrosswalkOpt = Annotated[str, typer.Option(
    "--crosswalk", help="reference legend to Level-1: clcplus_backbone, corine_l3, osm_clcplus, eucropmap, "
    "eolearn_lulc, elc10 or eulc_level1 (pipeline/legends/)")]
_TILES = typer.Option("--tiles", help="EEA grid cells: codes (10kmE467N253,...), a .txt list, bbox:W,S,E,N "
                      "(EPSG:4326 degrees) or a vector file")
TilesOpt = Annotated[str | None, _TILES]
RequiredTilesOpt = Annotated[str, _TILES]
TileSizeOpt = Annotated[str, typer.Option(
    "--tile-size", help="cell size for a bbox or vector --tiles: 100km, 10km, 1km, 250m")]
SpecOpt = Annotated[str | None, typer.Option(
    "--spec", help="feature spec: a shipped name (elc10, bridge-lc-196) or a YAML path; default: the spec "
    "that --features carries (a selection or bundle), else elc10")]
StacOpt = Annotated[str | None, typer.Option(
    "--stac", help="STAC API URL to compute the features from, e.g. https://earth-search.aws.element84.com/v1")]
LandscapesOpt = Annotated[int, typer.Option(
    "--landscapes", help="K of the OOD reference's landscape clusters (K-Means on the S2 band medians of the "
    "training rows; seed paper 002: 16); 0 stores no reference (then `eulc map --ood` is refused)")]
EmaOpt = Annotated[bool, typer.Option(
    "--ema/--no-ema", help="weight EMA of the neural model(s), as the authors (each preset sets its momentum)")]
_FEATURES_DIR_HELP = ("folder of feature COGs (*.tif): with --tiles one per tile, named <tile>.tif, <tile>_<year>.tif "
                      "or <spec>_<year>_<tile>.tif; without, every file")
FeaturesDirOpt = Annotated[Path, typer.Option("--features-dir", help=_FEATURES_DIR_HELP)]
OptionalFeaturesDirOpt = Annotated[Path | None, typer.Option("--features-dir", help=_FEATURES_DIR_HELP)]
BUNDLE_HELP = "model bundle: a folder, or the name of a shipped bundle (elc10-l1, elc10-ndvi-l1, ... `eulc info`)"


def _stac_source(stac: str | None, catalog: Path | None, collection: str, s1_collection: str | None,
                 dem_collection: str | None) -> Any:
    """A static catalogue path, or the STAC API with a collection per sensor kind."""
    from tiles.engine.stac_search import StacApi

    if stac is None:
        return catalog
    cols = {"s2": collection} | ({"s1": s1_collection} if s1_collection else {}) | (
        {"dem": dem_collection} if dem_collection else {})
    return StacApi(stac, cols)


PROGRESS_EVERY_VAR = "EULC_PROGRESS_S"
"""Seconds between the plain progress lines printed when stderr is not a terminal (default 10)."""


class PlainProgress(Progress):
    """Progress for a stderr that is not a terminal (a log file, a pipe, CI, a batch job), where
    rich draws no bar: each visible task prints one plain line at most every ``every_s`` seconds
    and one when it completes, with done/total, the share, the time elapsed and the estimated
    time left (rich's speed estimate over the last updates, else the mean rate so far).

    The same calls as :class:`rich.progress.Progress` (``add_task``, ``update``, ``advance``).
    """

    def __init__(self, every_s: float) -> None:
        super().__init__(console=console, disable=True)
        self.every_s = every_s
        self._printed: dict[TaskID, float] = {}
        self._finished: set[TaskID] = set()

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        """As :meth:`rich.progress.Progress.update`, then a line when one is due."""
        super().update(task_id, **kwargs)
        self._line(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        """As :meth:`rich.progress.Progress.advance`, then a line when one is due."""
        super().advance(task_id, advance)
        self._line(task_id)

    def _line(self, task_id: TaskID) -> None:
        task = self._tasks[task_id]
        done = task.total is not None and task.completed >= task.total
        now = self.get_time()
        last = self._printed.get(task_id, task.start_time or now)
        if not task.visible or task_id in self._finished or (not done and now - last < self.every_s):
            return
        self._printed[task_id] = now
        if done:
            self._finished.add(task_id)
        info = str(task.fields.get("info", ""))
        elapsed = _duration(task.elapsed or 0.0)
        if task.total:
            left = task.time_remaining  # rich's estimate from the recent speed; the mean rate until it has one
            if left is None and task.completed and task.elapsed:
                left = task.elapsed * (task.total - task.completed) / task.completed
            eta = "" if done or left is None else f", about {_duration(left)} left"
            head = (f"{task.description}: {task.completed:,.0f}/{task.total:,.0f} "
                    f"({100 * task.completed / task.total:.0f} %) in {elapsed}{eta}")
        else:
            head = f"{task.description}: {task.completed:,.0f} done in {elapsed}"
        console.print(head + (f"; {info}" if info else ""), highlight=False, markup=False, soft_wrap=True)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _progress() -> Progress:
    """A progress display on stderr: rich bars with the time left in a terminal, else plain
    lines every ``$EULC_PROGRESS_S`` seconds (:class:`PlainProgress`).
    """
    if not console.is_terminal:
        try:
            every_s = float(os.environ.get(PROGRESS_EVERY_VAR, "10"))
        except ValueError:
            raise EulcError(f"${PROGRESS_EVERY_VAR}={os.environ[PROGRESS_EVERY_VAR]!r} is not a number of seconds",
                            f"Set it to e.g. 10, or unset {PROGRESS_EVERY_VAR}") from None
        return PlainProgress(every_s)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=console)


def _spec_and_selection(spec: str | None, features: str | None, default_spec: str = "elc10") -> tuple[Any, Any]:
    """:func:`pipeline.app.resolve.spec_and_selection`, imported when a command runs (it loads torch)."""
    from pipeline.app.resolve import spec_and_selection

    return spec_and_selection(spec, features, default_spec)


def _table_selection(spec: Any, features: str | None) -> Any:
    """:func:`pipeline.app.resolve.table_selection`, imported when a command runs."""
    from pipeline.app.resolve import table_selection

    return table_selection(spec, features)


def _cloud_mask(choice: str) -> Any:
    if choice not in ("auto", "none"):
        raise EulcError(f"--cloud-mask {choice!r} is not a choice", "Use auto or none")
    return choice


def _features_from_catalog(catalog: Any, tiles: str | None, tile_size: str, sp: Any, sel: Any,
                           year: int, out: Path, processing_level: str, keep_going: bool = False,
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
            key = input_key("features", features_digest(sub), year, str(cloud_mask), processing_level, source,
                            str(cell))
            # resume: the same request on the same inputs, and the file as written (SHA-256)
            if dest.is_file() and log.done(dest.name, key):
                prog.update(task, advance=1, info=f"{cell} up to date")
                continue
            try:
                features_from_stac(catalog, sp, sel, year, cell.window(), dest, processing_level, cloud_mask,
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
