"""What the ``eulc`` command groups share: the typer app, the consoles, option types that mean
the same in every command, progress bars and the small parsers of option values.
"""

from __future__ import annotations

import os
import threading
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
from rich.text import Text

from pipeline.core.errors import EulcError


def _flags_show_no_type() -> None:
    """Help shows no value type for a flag: typer 0.29 prints ``<bool>`` beside every flag (even
    ``--help``), which reads as a value to type (``--ood true`` then takes ``true`` as the next
    argument). Only what help displays changes; parsing is click's.
    """
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "eulc_flags_plain", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich.eulc_flags_plain = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_show_no_type()

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    help="eulc: 10 m land-cover maps of Europe from Copernicus data and LUCAS.",
    epilog="Examples: `eulc demo --out demo` (the main job, shipped data); `eulc info`; "
    "`eulc --threads 4 map --features-dir feats --bundle elc10-l1 --out maps`; "
    "`eulc report --map maps.vrt --reference clcplus.tif --crosswalk clcplus_backbone "
    "--out report`. Shell completion: `eulc --install-completion`.",
)
console = Console(stderr=True)
out_console = Console()
state = {"debug": False}


S2Collection = Annotated[str, typer.Option("--collection", help="with --stac: the S2 collection")]
S1Collection = Annotated[
    str | None,
    typer.Option(
        "--s1-collection",
        help="with --stac: the S1 collection of linear σ⁰/γ⁰ (e.g. sentinel-1-rtc on Planetary "
        "Computer); needed when the features use S1",
    ),
]
DemCollection = Annotated[
    str | None,
    typer.Option(
        "--dem-collection", help="with --stac: the DEM collection (e.g. cop-dem-glo-30); needed for DEM features"
    ),
]
YearOpt = Annotated[int, typer.Option(help="feature year")]
ExportOutOpt = Annotated[Path, typer.Option("--out", help="output directory")]
PointsOpt = Annotated[Path, typer.Option(help="LUCAS points (CSV) or polygons (GeoPackage/GeoParquet)")]
ShardSizeOpt = Annotated[
    int, typer.Option(help="max points per export task or job (shards lie in one EEA 100 km cell each)")
]
StartOpt = Annotated[
    bool,
    typer.Option("--start", help="sign in and start the exports; a rerun resumes from OUT's job database"),
]
CloudMaskOpt = Annotated[
    str,
    typer.Option(
        "--cloud-mask", help="auto: the spec's S2 mask, SCL when the items lack s2cloudless CLP; none: no cloud mask"
    ),
]
ProcessingLevelOpt = Annotated[
    str,
    typer.Option(
        "--processing-level",
        help="with --stac/--catalog, and for openEO: the Sentinel-2 processing level of the items "
        "or collection, L2A (carries SCL; STAC items get the harmonization offset) or L1C",
    ),
]

# Options that mean the same in every command that has them (tests/test_cli_options.py checks
# that an option name keeps one help text across commands, or is listed there with the reason)
FeaturesOpt = Annotated[
    str | None,
    typer.Option(
        "--features",
        help="which features: a selection JSON (`eulc select`), a model bundle (folder or "
        "shipped name, e.g. elc10-ndvi-l1) or comma-separated names; default: every feature of the spec",
    ),
]
LevelOpt = Annotated[
    str, typer.Option("--level", help="the class legend: level1 (7 land-cover classes) or level2 (19 crop types)")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N")]
CrosswalkOpt = Annotated[
    str,
    typer.Option(
        "--crosswalk",
        help="reference legend to Level-1: clcplus_backbone, corine_l3, osm_clcplus, eucropmap, "
        "eolearn_lulc, elc10 or eulc_level1 (pipeline/legends/)",
    ),
]
_TILES = typer.Option(
    "--tiles",
    help="EEA grid cells: codes (10kmE467N253,...), a .txt list, bbox:W,S,E,N (EPSG:4326 degrees) or a vector file",
)
TilesOpt = Annotated[str | None, _TILES]
RequiredTilesOpt = Annotated[str, _TILES]
TileSizeOpt = Annotated[
    str, typer.Option("--tile-size", help="cell size for a bbox or vector --tiles: 100km, 10km, 1km, 250m")
]
SpecOpt = Annotated[
    str | None,
    typer.Option(
        "--spec",
        help="feature spec: a shipped name (elc10, bridge-lc-196) or a YAML path; default: the spec "
        "that --features carries (a selection or bundle), else elc10",
    ),
]
StacOpt = Annotated[
    str | None,
    typer.Option(
        "--stac", help="STAC API URL to compute the features from, e.g. https://earth-search.aws.element84.com/v1"
    ),
]
LandscapesOpt = Annotated[
    int,
    typer.Option(
        "--landscapes",
        help="K of the OOD reference's landscape clusters (K-Means on the S2 band medians of the "
        "training rows; seed paper 002: 16); 0 stores no reference (then `eulc map --ood` is refused)",
    ),
]
EmaOpt = Annotated[
    bool,
    typer.Option(
        "--ema/--no-ema", help="weight EMA of the neural model(s), as the authors (each preset sets its momentum)"
    ),
]
_FEATURES_DIR_HELP = (
    "folder of feature COGs (*.tif): with --tiles one per tile, named <tile>.tif, <tile>_<year>.tif "
    "or <spec>_<year>_<tile>.tif; without, every file"
)
FeaturesDirOpt = Annotated[Path, typer.Option("--features-dir", help=_FEATURES_DIR_HELP)]
OptionalFeaturesDirOpt = Annotated[Path | None, typer.Option("--features-dir", help=_FEATURES_DIR_HELP)]
CatalogOpt = Annotated[
    Path | None,
    typer.Option("--catalog", help="static STAC catalogue (catalog.json) of S2 items to compute the features from"),
]
AllowRootOpt = Annotated[
    list[Path] | None,
    typer.Option("--allow-root", help="with --catalog: a folder outside the catalogue's own its assets may lie in"),
]
SchedulerOpt = Annotated[
    str,
    typer.Option(
        "--scheduler",
        help="local (LocalCluster of worker processes), threads, sync (this process), or a dask "
        "scheduler address tcp://host:8786 (dask-jobqueue, Kubernetes)",
    ),
]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="workers for local/threads (default: CPU count)")]
DashboardOpt = Annotated[
    str, typer.Option("--dashboard", help="host:port of the local cluster's dask dashboard (loopback by default)")
]
BUNDLE_HELP = "model bundle: a folder, or the name of a shipped bundle (elc10-l1, elc10-ndvi-l1, ... `eulc info`)"


PROGRESS_EVERY_VAR = "EULC_PROGRESS_S"
"""Seconds between the plain progress lines printed when stderr is not a terminal (default 10)."""


class PlainProgress(Progress):
    """Progress for a stderr that is not a terminal (a log file, a pipe, CI, a batch job), where
    rich draws no bar: each visible task prints a line when it starts, then one at least every
    ``every_s`` seconds while it runs (a heartbeat thread, so a long step between two updates is
    never silent) and one when it completes, with done/total, the share, the time elapsed and the
    estimated time left (:meth:`time_left`).

    The same calls as :class:`rich.progress.Progress` (``add_task``, ``update``, ``advance``).
    """

    def __init__(self, every_s: float, get_time: Any = None) -> None:
        super().__init__(console=console, disable=True, get_time=get_time)
        self.every_s = every_s
        self._printed: dict[TaskID, float] = {}
        self._finished: set[TaskID] = set()
        self._moved: dict[TaskID, tuple[float, float]] = {}  # (time, completed) of the last change
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def start(self) -> None:
        """Start the heartbeat (``with`` does)."""
        if self._beat is None:
            self._beat = threading.Thread(target=self._heartbeat, name="eulc-progress", daemon=True)
            self._beat.start()

    def stop(self) -> None:
        """Stop the heartbeat."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=2)
            self._beat = None

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(1.0, self.every_s)):
            for task_id in list(self._tasks):
                self._line(task_id)

    def add_task(
        self,
        description: str,
        start: bool = True,
        total: float | None = 100.0,
        completed: int = 0,
        visible: bool = True,
        **fields: Any,
    ) -> TaskID:
        """As :meth:`rich.progress.Progress.add_task`, then its first line at once."""
        task_id = super().add_task(description, start, total, completed, visible, **fields)
        self._line(task_id, force=True)
        return task_id

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        """As :meth:`rich.progress.Progress.update`, then a line when one is due."""
        super().update(task_id, **kwargs)
        self._note_move(task_id)
        self._line(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        """As :meth:`rich.progress.Progress.advance`, then a line when one is due."""
        super().advance(task_id, advance)
        self._note_move(task_id)
        self._line(task_id)

    def _note_move(self, task_id: TaskID) -> None:
        with self._lock:
            task = self._tasks[task_id]
            if self._moved.get(task_id, (0.0, 0.0))[1] != task.completed:
                self._moved[task_id] = (self.get_time(), task.completed)

    def time_left(self, task_id: TaskID) -> float | None:
        """Seconds left at the mean rate so far, less the time since the count last moved (so a
        heartbeat between two updates counts down instead of repeating); None before any progress.
        """
        task = self._tasks[task_id]
        moved_at, completed = self._moved.get(task_id, (0.0, 0.0))
        if not task.total or not completed or task.start_time is None or moved_at <= task.start_time:
            return None
        rate = completed / (moved_at - task.start_time)
        return max(0.0, (task.total - completed) / rate - (self.get_time() - moved_at))

    def _line(self, task_id: TaskID, force: bool = False) -> None:
        with self._lock:
            task = self._tasks[task_id]
            done = task.total is not None and task.completed >= task.total
            now = self.get_time()
            last = self._printed.get(task_id, task.start_time or now)
            if not task.visible or task_id in self._finished or (not (done or force) and now - last < self.every_s):
                return
            self._printed[task_id] = now
            if done:
                self._finished.add(task_id)
            info = str(task.fields.get("info", ""))
            elapsed = _duration(task.elapsed or 0.0)
            if task.total:
                left = self.time_left(task_id)
                eta = "" if done or left is None else f", about {_duration(left)} left"
                head = (
                    f"{task.description}: {_count(task.completed)}/{task.total:,.0f} "
                    f"({100 * task.completed / task.total:.0f} %) in {elapsed}{eta}"
                )
            else:
                head = f"{task.description}: {task.completed:,.0f} done in {elapsed}"
            console.print(head + (f"; {info}" if info else ""), highlight=False, markup=False, soft_wrap=True)


def _count(x: float) -> str:
    """A count as done/total shows it: whole, or with one decimal (epochs within an epoch)."""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


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
            raise EulcError(
                f"${PROGRESS_EVERY_VAR}={os.environ[PROGRESS_EVERY_VAR]!r} is not a number of seconds",
                f"Set it to e.g. 10, or unset {PROGRESS_EVERY_VAR}",
            ) from None
        return PlainProgress(every_s)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    )


def _spec_and_selection(spec: str | None, features: str | None, default_spec: str = "elc10") -> tuple[Any, Any]:
    """:func:`pipeline.stages.resolve.spec_and_selection`, imported when a command runs (it loads torch)."""
    from pipeline.stages.resolve import spec_and_selection

    return spec_and_selection(spec, features, default_spec)


def _size_m(text: str) -> int:
    """:func:`pipeline.core.aoi.parse_tile_size`."""
    from pipeline.core.aoi import parse_tile_size

    return parse_tile_size(text)


class EventView:
    """Renders a stage's events (:mod:`pipeline.stages.events`) on the terminal: one progress bar
    per counted phase (``plan``/``tile``, ``feature``, ``progress``), steps and warnings as lines,
    the dashboard link on stdout. Use as a context manager; pass the instance as ``on_event``.

    Args:
        label: the bar of ``plan``/``tile`` events (``features``, ``mapping``).
        feature_total: the number of features of a single-tile features run (its bar counts them).
    """

    def __init__(self, label: str = "tiles", feature_total: int | None = None) -> None:
        self.label = label
        self.feature_total = feature_total
        self.prog = _progress()
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> EventView:
        self.prog.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.prog.__exit__(None, None, None)

    def _task(self, name: str, total: float | None = None) -> TaskID:
        if name not in self.tasks:
            self.tasks[name] = self.prog.add_task(name, total=total, info="")
        return self.tasks[name]

    def __call__(self, kind: str, info: dict[str, Any]) -> None:
        """Render one event."""
        if kind == "plan":
            t = self._task(self.label)
            self.prog.update(
                t,
                total=info["total"],
                completed=info["skipped"],
                info=f"{info['skipped']} up to date" if info["skipped"] else "",
            )
        elif kind == "tile":
            t = self._task(self.label)
            self.prog.update(t, advance=1, info=f"{info['tile_id']} {info['status']}")
            if info.get("status") == "failed" and info.get("stage") == "features":
                console.print(
                    Text(f"{info['tile_id']}: no features ({_flags(str(info.get('error')))})", "yellow"),
                    highlight=False,
                    soft_wrap=True,
                )
        elif kind == "feature":
            t = self._task("features", self.feature_total)
            self.prog.update(t, advance=1, info=str(info["name"]))
        elif kind == "progress":
            t = self._task(str(info.get("stage") or "progress"), info.get("total"))
            self.prog.update(t, completed=info["done"], total=info.get("total"), info=str(info.get("info", "")))
        elif kind == "step":
            self.prog.console.print(
                Text.assemble((f"{info['step']:>9}", "cyan"), "  ", _flags(str(info["message"]))),
                highlight=False,
                soft_wrap=True,
            )
        elif kind == "note":
            out_console.print(_flags(str(info["message"])), highlight=False, markup=False, soft_wrap=True)
        elif kind == "status":
            self.prog.console.print(Text(str(info["message"]), "dim"), highlight=False, soft_wrap=True)
        elif kind == "dashboard":
            out_console.print(f"dask dashboard: {info['link']}", highlight=False, markup=False)
        elif kind == "warning":
            console.print(
                Text.assemble(("warning:", "yellow"), " ", _flags(str(info["message"]))),
                highlight=False,
                soft_wrap=True,
            )


def fail_tiles(failures: dict[str, str], what: str, ledger: Path, retry: str) -> None:
    """List the tiles that failed (each with its reason, fields spelt as flags) and exit 1.

    Args:
        failures: tile or file name → its one-line reason.
        what: how the tiles failed (``failed tile(s)``, ``tile(s) without features``).
        ledger: where they are recorded.
        retry: what a rerun does.
    """
    if not failures:
        return
    console.print(
        Text.assemble((f"{len(failures)} {what}", "bold red"), f" (recorded in {ledger}; {retry}):"),
        highlight=False,
        soft_wrap=True,
    )
    for name, err in failures.items():
        console.print(Text(f"  {name}: {_flags(err)}"), highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _flags(message: str) -> str:
    from pipeline.app.flags import to_flags

    return to_flags(message)
