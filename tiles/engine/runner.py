"""The features runner: feature COGs for many EEA cells on the same executor as maps.

One job per tile (:class:`FeatureJob`), run by :func:`tiles.engine.cluster.execute` on ``sync``,
``threads``, ``local`` or a dask scheduler address, from any source (:class:`FeatureSource`):
a local stack manifest (whole, or cut into the cells of ``cells``), a static STAC catalogue or
a STAC API. Per output folder:

- ``<cell>_<year>.tif`` (or ``<manifest name>_<year>.tif`` for a whole stack): the feature COG,
  written by the worker through :func:`pipeline.core.atomic.atomic_path`;
- ``.eulc-features.json``: the ledger (:class:`pipeline.core.ledger.JsonLedger`), written by this
  process only, one atomic rewrite per finished tile: ``done`` with the COG's SHA-256, or
  ``failed`` with its one-line reason. A rerun skips every tile that is current
  (:func:`pipeline.core.ledger.is_current`) and redoes the rest, so a ``kill -9`` at any moment
  costs only the tiles that were running;
- ``.eulc-features.lock``: one run at a time per folder.

The same jobs are chained into the map (``tiles.mapping.runner``): a tile's features are then
computed on the worker that maps it.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.cloud_mask import CloudMaskChoice
from pipeline.core.config import cpu_threads
from pipeline.core.contract import features_digest
from pipeline.core.errors import EulcError
from pipeline.core.grid import TileId
from pipeline.core.hashing import file_sha256
from pipeline.core.ledger import JsonLedger, content_sha256, folder_lock, input_key
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import FeatureSpec
from tiles.engine.cluster import DASHBOARD, Emit, check_scheduler, execute, worker_result
from tiles.engine.composite import OrderStats
from tiles.engine.features import check_local_engine
from tiles.engine.run import features_from_stac, features_from_stack, stack_features_path
from tiles.engine.stac_load import items_from_catalog
from tiles.engine.stac_search import StacApi
from tiles.engine.stack import load_manifest

FEATURES_LEDGER = ".eulc-features.json"
"""The ledger of a feature folder: per COG, its input key and SHA-256, or why it failed."""
FEATURES_LOCK = ".eulc-features.lock"
MAX_TILES = 100_000
"""More cells than this in one run is refused before anything is enumerated further (a Europe
bbox at 10 km is about 60,000 cells)."""


@dataclass(frozen=True)
class FeatureSource:
    """What features are computed from: exactly one of a stack manifest, a static STAC
    catalogue or a STAC API.

    Attributes:
        files: a stack manifest (YAML path) or a shipped manifest name (``eolearn_slovenia``).
        catalog: a static STAC catalogue (``catalog.json``).
        stac: a STAC API with a collection per sensor kind.
        processing_level: the Sentinel-2 level of STAC items (``L2A`` or ``L1C``).
        allow_roots: folders besides a static catalogue's own tree its assets may lie in.
    """

    files: str | None = None
    catalog: str | None = None
    stac: StacApi | None = None
    processing_level: str = "L2A"
    allow_roots: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if sum(v is not None for v in (self.files, self.catalog, self.stac)) != 1:
            raise EulcError(
                "give one of `files` (a local stack manifest), `catalog` (a static STAC catalogue) "
                "or `stac` (a STAC API URL)"
            )
        if self.processing_level not in ("L2A", "L1C"):
            raise EulcError(f"`processing_level` {self.processing_level!r} is not a Sentinel-2 level", "Use L2A or L1C")

    def key(self) -> str:
        """What the features are computed from, for the ledger's input key: a stack by its files
        (path, size, mtime), a static catalogue by the content of its JSON files (items, hrefs,
        dates), a STAC API by its URL and collections.

        Raises:
            EulcError: an unreadable manifest or catalogue (named).
        """
        if self.stac is not None:
            return json.dumps({"url": self.stac.url, "collections": self.stac.collections}, sort_keys=True)
        if self.files is not None:
            man, root = load_manifest(self.files)
            inputs = [root / it.path for it in man.items if (root / it.path).is_file()]
            return input_key(str(self.files), *inputs)
        cat = Path(str(self.catalog))
        items = sorted(
            (
                it.to_dict(include_self_link=False)
                for it in items_from_catalog(cat, tuple(Path(r) for r in self.allow_roots))
            ),
            key=lambda d: str(d.get("id")),
        )
        return input_key(content_sha256(cat), json.dumps(items, sort_keys=True, default=str))


@dataclass(frozen=True)
class FeatureJob:
    """One tile's features, sent to a worker (picklable).

    Attributes:
        name: the COG's file name (``<cell>_<year>.tif``), its name in the ledger.
        cell: the EEA cell, or None for a whole stack.
        source: where the features come from.
        spec: the full spec; ``names`` picks and orders its features.
        names: the features, in the COG's band order.
        year: the year composited.
        out_dir: the output folder.
        cloud_mask: ``auto`` or ``none`` (:mod:`pipeline.core.cloud_mask`).
        key: the ledger's input key of this tile.
        order_stats: how percentiles and medians are computed (None: numpy; a picklable torch
            one for a GPU worker). Not in the key: every implementation gives the same values.
    """

    name: str
    cell: TileId | None
    source: FeatureSource
    spec: FeatureSpec
    names: tuple[str, ...]
    year: int
    out_dir: str
    cloud_mask: CloudMaskChoice
    key: str
    order_stats: OrderStats | None = None

    @property
    def dest(self) -> Path:
        """The feature COG's path."""
        return Path(self.out_dir) / self.name

    @property
    def tile_id(self) -> str:
        """The tile's id: the cell code, or the COG's stem for a whole stack."""
        return str(self.cell) if self.cell is not None else Path(self.name).stem


@dataclass
class FeaturesSummary:
    """What a features run did. ``failures`` maps COG name → its one-line reason."""

    out_dir: Path
    tiles: int = 0
    done: int = 0
    skipped: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    write_failures: set[str] = field(default_factory=set)
    """Tiles that failed because a file could not be written (full disk): exit 1, not 2."""
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No tile failed."""
        return not self.failures


def feature_tile(job: FeatureJob, on_feature: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Compute one tile's feature COG on a worker. Never raises: errors come back as
    ``status: failed`` with the one-line message.

    Returns:
        ``{"status", "outputs": {COG name: SHA-256}, "error", "seconds", "worker"}``.
    """

    def work() -> dict[str, Any]:
        sel = FeatureSelection.of(job.spec, list(job.names), "names")
        src = job.source
        if src.files is not None:
            features_from_stack(
                src.files,
                job.spec,
                sel,
                job.year,
                job.dest,
                on_feature,
                cloud_mask=job.cloud_mask,
                window=job.cell.window() if job.cell is not None else None,
                order_stats=job.order_stats,
            )
        else:
            assert job.cell is not None
            features_from_stac(
                src.stac if src.stac is not None else Path(str(src.catalog)),
                job.spec,
                sel,
                job.year,
                job.cell.window(),
                job.dest,
                src.processing_level,
                job.cloud_mask,
                on_feature=on_feature,
                allow_roots=tuple(Path(r) for r in src.allow_roots),
                order_stats=job.order_stats,
            )
        return {"status": "done", "outputs": {job.name: file_sha256(job.dest)}}

    return worker_result(work, str(job.dest))


def plan_features(
    cells: list[TileId] | None,
    source: FeatureSource,
    spec: FeatureSpec,
    selection: FeatureSelection,
    year: int,
    out_dir: Path,
    cloud_mask: str = "auto",
    tile_id: str | None = None,
    order_stats: OrderStats | None = None,
) -> list[FeatureJob]:
    """The jobs of a features run, each with its ledger input key (features digest, year, cloud
    mask, processing level, the source's key and the cell).

    Args:
        cells: EEA cells (any size); None computes a stack manifest's whole extent as one COG.
        source: the source; a static catalogue or a STAC API needs ``cells``.
        spec, selection: the full spec and the features to compute.
        year: the year composited.
        out_dir: the output folder.
        cloud_mask: ``auto`` or ``none``.
        tile_id: the whole-stack COG's name instead of the manifest's (no ``cells``).
        order_stats: given to every job (:class:`FeatureJob`).

    Raises:
        EulcError: no ``cells`` for a STAC source, ``tile_id`` with ``cells``, too many cells, a
            name that cannot stay inside ``out_dir``, an unreadable source, a feature the local
            engine cannot compute (a learned embedding: :func:`~tiles.engine.features.check_local_engine`).
    """
    if cloud_mask not in ("auto", "none"):
        raise EulcError(f"`cloud_mask` {cloud_mask!r} is not a choice", "Use auto or none")
    mask: CloudMaskChoice = "auto" if cloud_mask == "auto" else "none"
    sub = spec.subset(selection.names)
    check_local_engine(sub)
    skey = source.key()
    base = ["features", features_digest(sub), year, cloud_mask, source.processing_level, skey]
    names = tuple(selection.names)
    if cells is None:
        if source.files is None:
            raise EulcError(
                "features from a STAC catalogue or API need `tiles`",
                "Name the EEA cells to compute (codes, bbox:W,S,E,N or a file)",
            )
        man, _ = load_manifest(source.files)
        dest = stack_features_path(out_dir, man.name, year, tile_id)
        return [
            FeatureJob(dest.name, None, source, spec, names, year, str(out_dir), mask, input_key(*base), order_stats)
        ]
    if tile_id is not None:
        raise EulcError(
            "`tile_id` names the COG of a whole stack", "Leave it out with `tiles`: COGs are named <cell>_<year>.tif"
        )
    if len(cells) > MAX_TILES:
        raise EulcError(
            f"`tiles` gives {len(cells):,} cells, more than {MAX_TILES:,} in one run",
            "Use larger cells or a smaller area",
        )
    return [
        FeatureJob(
            f"{cell}_{year}.tif",
            cell,
            source,
            spec,
            names,
            year,
            str(out_dir),
            mask,
            input_key(*base, str(cell)),
            order_stats,
        )
        for cell in cells
    ]


def run_features(
    jobs: list[FeatureJob],
    out_dir: Path,
    *,
    scheduler: str = "local",
    workers: int | None = None,
    emit: Emit | None = None,
    dashboard: str = DASHBOARD,
) -> FeaturesSummary:
    """Run feature jobs resumably on ``scheduler``; every tile is recorded as done or failed, and
    a bad tile does not stop the others.

    A single job to do runs in this process (no cluster to start for one tile), with
    per-feature progress.

    Args:
        jobs: from :func:`plan_features` (all into ``out_dir``).
        out_dir: the output folder (locked for the run).
        scheduler: ``local``, ``threads``, ``sync`` or a scheduler address.
        workers: worker count for ``local``/``threads`` (default: :func:`~pipeline.core.config.cpu_threads`).
        emit: ``(kind, info)`` callback: ``plan`` (total, skipped, todo), ``dashboard`` (link),
            ``feature`` (name; one job only), ``tile`` (tile_id, name, status, error, seconds).
        dashboard: ``host:port`` of a local cluster's dashboard.

    Returns:
        The :class:`FeaturesSummary`.

    Raises:
        EulcError: a bad scheduler or worker count, another run holding ``out_dir``.
    """
    check_scheduler(scheduler, workers)
    say = emit or (lambda kind, info: None)
    t0 = time.perf_counter()
    summary = FeaturesSummary(out_dir=out_dir, tiles=len(jobs))
    with folder_lock(out_dir, FEATURES_LOCK, "eulc features"):
        ledger = JsonLedger(out_dir, FEATURES_LEDGER)
        todo = [j for j in jobs if not ledger.current(j.name, j.key)]
        summary.skipped = len(jobs) - len(todo)
        say("plan", {"total": len(jobs), "skipped": summary.skipped, "todo": len(todo)})
        if len(todo) == 1 and scheduler in ("local", "threads"):
            scheduler = "sync"
        fn: Callable[[FeatureJob], dict[str, Any]] = feature_tile
        if len(todo) == 1:
            fn = functools.partial(feature_tile, on_feature=lambda n: say("feature", {"name": n}))
        n_workers = min(workers or cpu_threads(), max(1, len(todo)))
        for job, res in execute(
            fn,
            todo,
            scheduler=scheduler,
            workers=n_workers,
            key=lambda j: f"eulc-features-{j.name}-{j.key}",
            failure=_dead_worker,
            emit=say,
            dashboard=dashboard,
        ):
            record_feature_result(ledger, job, res, summary)
            say(
                "tile",
                {
                    "tile_id": job.tile_id,
                    "name": job.name,
                    "status": res["status"],
                    "error": res.get("error"),
                    "seconds": res.get("seconds"),
                },
            )
    summary.outputs = [j.dest for j in jobs if j.name not in summary.failures]
    summary.seconds = time.perf_counter() - t0
    return summary


def record_feature_result(
    ledger: JsonLedger, job: FeatureJob, res: dict[str, Any], summary: FeaturesSummary | None = None
) -> None:
    """Record a feature tile's result in its folder's ledger (done with the COG's SHA-256, or
    failed with the reason) and count it in ``summary``.
    """
    if res["status"] == "done":
        ledger.finish(job.name, job.key, res["outputs"])
        if summary is not None:
            summary.done += 1
    else:
        ledger.fail(job.name, job.key, str(res.get("error")))
        if summary is not None:
            summary.failures[job.name] = str(res.get("error"))
            if res.get("write_error"):
                summary.write_failures.add(job.name)


def _dead_worker(job: FeatureJob, e: BaseException) -> dict[str, Any]:
    return {"status": "failed", "error": f"{job.dest}: the worker failed ({type(e).__name__}: {e})"}
