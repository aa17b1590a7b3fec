"""The idempotent tile runner behind ``eulc map``: tiles → class/confidence COGs on dask.distributed.

Per run folder:

- ``manifest.sqlite`` (:mod:`tiles.mapping.manifest`): one row per tile with its inputs hash, status,
  outputs and their SHA-256, error and timings. A rerun skips tiles that are done, unchanged
  and intact; a failed tile is recorded with its message and the other tiles go on.
- ``<tile>_class.tif``, ``<tile>_confidence.tif`` (and ``_proba``/``_level2``): written by the
  workers, each to a temporary file renamed into place (:func:`pipeline.core.atomic.atomic_path`),
  so a crash at any moment leaves whole files or none.
- ``<tile>.json`` (STAC Item) per tile and ``catalog.json`` per run (:mod:`tiles.mapping.stac`);
- ``model.json`` (and ``model_level2.json``): the STAC MLM item of each bundle used (:mod:`model.mlm`),
  linked from every tile item as ``derived_from``.

Scheduling: ``local`` (default) starts a dask.distributed ``LocalCluster`` of single-threaded
worker processes, ``threads`` one of threads, ``sync`` runs in this process (debugging), and
any other value is the address of an existing scheduler (``tcp://host:8786``: dask-jobqueue,
Kubernetes, Coiled). Only this client process writes the manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import re
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.bundle import load_bundle_cached
from model.infer import cpu_has_fast_bf16, resolve_precision
from pipeline.core.atomic import PREFIX, WRITTEN
from pipeline.core.config import cpu_threads
from pipeline.core.errors import EulcError, RasterError
from pipeline.core.featurecog import dataset_window
from pipeline.core.grid import TileId
from pipeline.core.hashing import file_sha256
from pipeline.core.ledger import JsonLedger, folder_lock
from pipeline.core.names import safe_name, unique_names
from tiles.engine.cluster import check_scheduler, execute, worker_result
from tiles.engine.runner import FEATURES_LEDGER, FEATURES_LOCK, FeatureJob, feature_tile, record_feature_result
from tiles.mapping.manifest import Manifest
from tiles.mapping.predict import Predictor, predict_tile, resolve_device
from tiles.mapping.stac import MODEL_ITEMS, tile_item, write_catalog, write_item, write_model_items

log = logging.getLogger(__name__)

FORMAT = "eulc-map/1"
LOCK = ".eulc-map.lock"
COMPRESSIONS = ("DEFLATE", "ZSTD", "LZW")
DASHBOARD = "127.0.0.1:8787"
MANIFEST = "manifest.sqlite"


@dataclass(frozen=True)
class MapJob:
    """One tile's work, sent to a worker (picklable).

    Attributes:
        tile_id: output name and tag.
        tile: the grid cell, or None for the whole feature file.
        features_file: the feature COG/VRT holding the tile.
        bundle_dir, level2_dir: model bundle folders (Level-2 optional).
        out_dir: the run folder.
        device: ``auto``, ``cpu`` or ``cuda``, resolved on the worker that runs the tile.
        probabilities: also write ``<tile>_proba.tif``.
        compress: ``DEFLATE`` or ``ZSTD``.
        threads: torch threads in the worker.
        inputs_hash: the manifest key of these inputs.
        accept: feature-contract fields whose difference is tolerated (``cloud_mask``, ``level``).
        adapt_priors: EM class-prior adaptation per tile (:func:`~tiles.mapping.predict.predict_tile`).
        bf16: bfloat16 autocast for the model (:func:`model.infer.resolve_precision`).
        ood: also write ``<tile>_ood.tif`` from the bundle's OOD reference (:mod:`model.ood`).
        model_hash: the bundles' digests (``<level1>[+<level2>]``): the worker's predictor cache
            key, checked against the bundles it loads.
        ood_hash: the OOD reference's digest (with ``ood``).
        features: the tile's features to compute first on the same worker (``eulc map --stac``);
            ``inputs_hash`` is then computed there from the COG written.
    """

    tile_id: str
    tile: TileId | None
    features_file: str
    bundle_dir: str
    level2_dir: str | None
    out_dir: str
    device: str = "cpu"
    probabilities: bool = False
    compress: str = "DEFLATE"
    threads: int = 1
    inputs_hash: str = ""
    accept: tuple[str, ...] = ()
    adapt_priors: bool = False
    bf16: bool = False
    ood: bool = False
    model_hash: str = ""
    ood_hash: str = ""
    features: FeatureJob | None = None

    def key(self, features_sha256: str) -> str:
        """The manifest key of this tile for a feature file with this SHA-256 (:func:`inputs_hash`)."""
        return inputs_hash(
            features_sha256,
            self.tile_id,
            self.tile,
            self.model_hash,
            self.probabilities,
            self.compress,
            self.accept,
            self.adapt_priors,
            self.bf16,
            self.ood_hash,
        )


@dataclass
class MapSummary:
    """What a run did. ``failures`` maps tile id → error message."""

    out_dir: Path
    tiles: int = 0
    done: int = 0
    skipped: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    write_failures: set[str] = field(default_factory=set)
    """Tiles that failed because a file could not be written (full disk): exit 1, not 2."""
    pixels: int = 0
    nodata: int = 0
    seconds: float = 0.0
    dashboard: str | None = None
    features_done: int = 0
    features_failed: int = 0

    @property
    def ok(self) -> bool:
        """No tile failed."""
        return not self.failures


_PREDICTORS: dict[tuple[str, str, bool, bool], Any] = {}


def _predictor(job: MapJob) -> Any:
    """The worker's predictor for a job: one per (bundles' digest, device, precision, OOD) and
    process; the bundles come from :func:`model.bundle.load_bundle_cached`, checked against the
    digests the client planned with, and the device is resolved here, where the tile runs.
    """
    key = (job.model_hash, job.device, job.bf16, job.ood)
    if key not in _PREDICTORS or not job.model_hash:
        d1, _, d2 = job.model_hash.partition("+")
        b1 = load_bundle_cached(Path(job.bundle_dir), d1 or None)
        b2 = load_bundle_cached(Path(job.level2_dir), d2 or None) if job.level2_dir else None
        _PREDICTORS[key] = Predictor(b1, b2, device=str(resolve_device(job.device)), bf16=job.bf16, ood=job.ood)
    return _PREDICTORS[key]


def run_tile(job: MapJob) -> dict[str, Any]:
    """Map one tile on a worker (computing its features first when the job carries them). Never
    raises: errors come back as ``status: failed``.

    Returns:
        ``{"status", "outputs": {file name: SHA-256}, "error", "seconds", "n_pixels",
        "n_nodata", "class_counts", "year", "spec_hash", "worker", "peak_rss_mb"}``, with the
        OOD layer also ``"ood_counts"`` (pixels per code) and ``"ood_share"``; with features
        computed here also ``"features"`` (their result) and ``"inputs_hash"``.
    """
    import torch

    chained: dict[str, Any] = {}
    if job.features is not None:
        fres = feature_tile(job.features)
        chained = {"features": fres}
        if fres["status"] != "done":
            return {**fres, **chained}
        chained["inputs_hash"] = job.key(fres["outputs"][job.features.name])

    def work() -> dict[str, Any]:
        torch.set_num_threads(max(1, job.threads))
        res = predict_tile(
            _predictor(job),
            Path(job.features_file),
            Path(job.out_dir),
            job.tile_id,
            tile=job.tile,
            probabilities=job.probabilities,
            compress=job.compress,
            accept=job.accept,
            adapt_priors=job.adapt_priors,
        )
        tags = res.tags
        return {
            "status": "done",
            "outputs": {p.name: file_sha256(p) for p in res.outputs},
            "n_pixels": res.n_pixels,
            "n_nodata": res.n_nodata,
            "class_counts": res.class_counts,
            "year": tags.get("year", ""),
            "spec_hash": tags.get("spec_hash", ""),
            "features_digest": tags.get("features_digest", ""),
            "contract": tags.get("contract", ""),
            "peak_rss_mb": _peak_rss_mb(),
            **({"ood_counts": res.ood_counts, "ood_share": res.ood_share} if res.ood_counts is not None else {}),
        }

    res = worker_result(work, job.features_file)
    if "features" in chained:  # the tile's time includes its features'
        res["seconds"] += chained["features"]["seconds"]
    return {**res, **chained}


def _peak_rss_mb() -> float:
    """Peak RSS of this process (VmHWM; ru_maxrss would carry a forking parent's peak)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM")) / 1024.0
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@contextlib.contextmanager
def run_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run folder; remove temporaries left by a killed run
    (:func:`pipeline.core.ledger.folder_lock`).

    Raises:
        EulcError: another ``eulc map`` holds the folder.
    """
    with folder_lock(out_dir, LOCK, "eulc map"):
        yield


def find_features(features_dir: Path, tile_id: str) -> Path:
    """The feature file of a tile in ``features_dir``, whichever stage wrote it.

    - ``<tile>.tif`` / ``<tile>.vrt`` (a mosaic of GEE export parts: ``gdalbuildvrt``);
    - ``<tile>_<year>.tif`` (``eulc features --catalog/--stac/--files``);
    - ``<spec>_<year>_<tile>.tif`` (``eulc gee export-tiles``, its ``bands.json`` beside it).

    Raises:
        RasterError: none, or several candidates (the message lists them).
    """
    exact = [features_dir / f"{tile_id}{s}" for s in (".tif", ".vrt")]
    pattern = re.compile(rf"(?:.+_)?{re.escape(tile_id)}(?:_[^_]+)?\.tif")
    found = [p for p in exact if p.is_file()] or sorted(
        p for p in features_dir.glob(f"*{tile_id}*.tif") if pattern.fullmatch(p.name)
    )
    if not found:
        raise RasterError(
            f"no feature COG for tile {tile_id}",
            f"Expected {tile_id}.tif, {tile_id}_<year>.tif (`eulc features`) or "
            f"<spec>_<year>_{tile_id}.tif (`eulc gee export-tiles`)",
            path=features_dir,
        )
    if len(found) > 1:
        raise RasterError(
            f"several feature files for tile {tile_id}: {[p.name for p in found]}",
            "Keep one per tile, or mosaic the parts with `gdalbuildvrt <tile>.vrt ...`",
            path=features_dir,
        )
    return found[0]


def inputs_hash(
    features_sha256: str,
    tile_id: str,
    tile: TileId | None,
    model_hash: str,
    probabilities: bool,
    compress: str,
    accept: tuple[str, ...] = (),
    adapt_priors: bool = False,
    bf16: bool = False,
    ood_hash: str = "",
) -> str:
    """SHA-256 of everything a tile's outputs depend on (feature bytes, cell, models, options,
    and the OOD reference's hash when its layer is asked for).
    """
    key = {
        "format": FORMAT,
        "features": features_sha256,
        "tile_id": tile_id,
        "cell": str(tile) if tile else None,
        "model": model_hash,
        "probabilities": probabilities,
        "compress": compress,
        **({"accept": sorted(accept)} if accept else {}),
        **({"adapt_priors": True} if adapt_priors else {}),
        **({"precision": "bf16"} if bf16 else {}),
        **({"ood": ood_hash} if ood_hash else {}),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


Event = Callable[[str, dict[str, Any]], None]


def run_map(
    tiles: list[TileId] | None,
    bundle_dir: Path,
    out_dir: Path,
    *,
    features_dir: Path | None = None,
    features_files: list[Path] | None = None,
    level2_dir: Path | None = None,
    scheduler: str = "local",
    workers: int | None = None,
    device: str = "auto",
    probabilities: bool = False,
    compress: str = "DEFLATE",
    on_event: Event | None = None,
    accept: tuple[str, ...] = (),
    dashboard: str = "127.0.0.1:8787",
    overwrite: bool = False,
    adapt_priors: bool = False,
    precision: str = "auto",
    ood: bool = False,
    feature_jobs: list[FeatureJob] | None = None,
    tile_ids: list[str] | None = None,
) -> MapSummary:
    """Map tiles, resumably. See the module docstring for the files written.

    Args:
        tiles: grid cells to map; None maps each of ``features_files`` (or every ``*.tif``/``*.vrt``
            of ``features_dir``) whole, the tile id being the file's stem.
        bundle_dir: the model bundle; ``level2_dir`` an optional Level-2 crop bundle.
        out_dir: the run folder.
        features_dir: per-tile feature COGs (:func:`find_features`), or
        features_files: one feature COG/VRT holding every tile (read windowed), or without
            ``tiles`` the files to map whole.
        scheduler: ``local``, ``threads``, ``sync`` or a scheduler address.
        workers: worker count for ``local``/``threads`` (default: :func:`~pipeline.core.config.cpu_threads`,
            the cores this process may use or ``--threads``).
        device: ``auto``, ``cpu`` or ``cuda`` (``auto`` picks CUDA when torch sees a GPU).
        probabilities: also write per-class probabilities.
        compress: ``DEFLATE`` or ``ZSTD``.
        on_event: ``(kind, info)`` callback: ``plan`` (total, skipped), ``dashboard`` (link),
            ``tile`` (tile_id, status, error).
        accept: feature-contract fields whose difference from the bundle's is tolerated
            (``cloud_mask``, ``level``); any other difference fails the tile.
        dashboard: ``host:port`` of the local cluster's dask dashboard (loopback by default;
            ``0.0.0.0:8787`` exposes it on every interface).
        overwrite: write into an ``out_dir`` that holds files this run did not write (they are
            never replaced: a tile whose output name is taken by one fails).
        adapt_priors: adapt each tile's Level-1 class priors by Dirichlet-MAP EM on its own pixels
            (Saerens et al. 2002; :data:`model.priors.DEFAULT_ADAPTATION`, guarded by EM's
            likelihood gain; the bundle must record its training priors).
        precision: ``auto`` (bf16 on CUDA, float32 on CPU), ``fp32`` or ``bf16``
            (:func:`model.infer.resolve_precision`; recorded in the tags and the resume key).
        ood: also write ``<tile>_ood.tif`` (:mod:`model.ood`) and record each tile's OOD share
            in the manifest and its STAC item; the bundle must carry an OOD reference.
        feature_jobs: the tiles' features (:func:`tiles.engine.runner.plan_features`, into
            ``features_dir``): a tile whose feature COG is not current in that folder's ledger has
            it computed first on the worker that maps it, and recorded in that ledger.
        tile_ids: without ``tiles``, the tile ids (output names) of ``features_files`` (default:
            each file's stem).

    Returns:
        The :class:`MapSummary` (``ok`` is False when any tile failed).

    Raises:
        EulcError: bad bundles, neither or both feature sources, another run on ``out_dir``, an
            ``out_dir`` holding other files without ``overwrite``, an unknown ``compress``.
    """
    if (features_dir is None) == (not features_files):
        raise EulcError(
            "give either `features_dir` (one COG per tile) or feature file(s)",
            "Use `features_dir` DIR with `tiles`, or `mosaic` FILE (one mosaic for all `tiles`)",
        )
    if tiles is None and features_dir is not None:  # every feature file of the folder, each whole
        features_files = sorted(
            p
            for p in features_dir.glob("*")
            if p.suffix in (".tif", ".vrt") and not p.name.startswith(".") and p.is_file()
        )
        if not features_files:
            raise RasterError(
                "has no feature file (*.tif, *.vrt)",
                "Compute features with `eulc features`, or give `tiles`",
                path=features_dir,
            )
        features_dir = None
    if tiles is not None and features_files and len(features_files) > 1:
        raise EulcError(
            f"`tiles` with {len(features_files)} feature files",
            "Give one mosaic (a COG or a VRT: `gdalbuildvrt all.vrt *.tif`) or `features_dir`",
        )
    if compress not in COMPRESSIONS:
        raise EulcError(f"`compress` {compress!r} is not supported", f"Use one of {', '.join(COMPRESSIONS)}")
    check_scheduler(scheduler, workers)
    emit = on_event or (lambda kind, info: None)
    b1 = load_bundle_cached(bundle_dir)
    b2 = load_bundle_cached(level2_dir) if level2_dir else None
    if adapt_priors:  # refused before any tile runs, with the bundle named
        b1.class_prior()
    ood_hash = ""
    if ood:  # refused before any tile runs: a bundle without a reference, or a damaged one
        ood_hash = b1.require_ood().digest
    model_hash = b1.digest + (f"+{b2.digest}" if b2 else "")
    legends = {"class": b1.legend, **({"level2": b2.legend} if b2 else {})}
    dev_t = resolve_device(device)
    dev = str(dev_t)
    bf16 = resolve_precision(precision, dev_t)
    if bf16 and dev_t.type == "cpu" and not cpu_has_fast_bf16():
        emit(
            "warning",
            {"message": "`precision` bf16 on a CPU without AMX-BF16: oneDNN emulates it, slower than float32"},
        )
    ncpu = cpu_threads()  # --threads / EULC_THREADS, else the cores this process may use
    n_workers = workers or (1 if dev.startswith("cuda") else ncpu)
    threads = max(1, ncpu // n_workers) if scheduler in ("local", "threads", "sync") else 1
    if scheduler == "sync":
        threads = ncpu
    summary = MapSummary(out_dir=out_dir)
    t_run = time.perf_counter()
    with contextlib.ExitStack() as locks:
        locks.enter_context(run_lock(out_dir))
        fledger = None
        if feature_jobs:
            locks.enter_context(folder_lock(Path(str(features_dir)), FEATURES_LOCK, "eulc features"))
            fledger = JsonLedger(Path(str(features_dir)), FEATURES_LEDGER)
        own = _own_files(out_dir / MANIFEST)
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in own and not p.name.startswith(PREFIX))
        if foreign and not overwrite:
            raise EulcError(
                f"`out` {out_dir} holds files this map run did not write "
                f"({', '.join(foreign[:4])}{' ...' if len(foreign) > 4 else ''})",
                "Give a new or empty folder, or pass `overwrite` to write beside them "
                "(eulc never replaces a file it did not write)",
            )
        chained: dict[str, FeatureJob] = {}
        known: dict[Path, str] = {}  # current feature COGs: the SHA-256 the ledger just verified
        for fj in feature_jobs or []:
            entry = fledger.entry(fj.name) if fledger is not None else None
            if fledger is not None and fledger.current(fj.name, fj.key) and entry is not None:
                known[fj.dest] = entry.outputs[fj.name]
            else:
                chained[fj.tile_id] = fj
        jobs, planned_failures = _plan(
            tiles,
            features_dir,
            features_files,
            bundle_dir,
            level2_dir,
            out_dir,
            device,
            probabilities,
            compress,
            threads,
            model_hash,
            accept,
            adapt_priors,
            bf16,
            ood_hash,
            chained,
            tile_ids,
            known,
        )
        manifest = Manifest(out_dir / MANIFEST)  # created only once the inputs are known to be usable
        try:
            models = write_model_items(out_dir, {"class": bundle_dir, **({"level2": level2_dir} if level2_dir else {})})
            for j in list(jobs):  # with --overwrite: a foreign file named like an output fails its tile
                clash = [n for n in _output_names(j, level2_dir is not None) if n in foreign]
                if clash:
                    jobs.remove(j)
                    planned_failures[j.tile_id] = (
                        j.features_file,
                        f"{out_dir}: {clash} exist and were not "
                        "written by eulc; move them away (they are never overwritten)",
                    )
            summary.tiles = len(jobs) + len(planned_failures)
            todo = [j for j in jobs if not manifest.current(j.tile_id, j.inputs_hash)]
            summary.skipped = len(jobs) - len(todo)
            emit("plan", {"total": summary.tiles, "skipped": summary.skipped, "todo": len(todo)})
            for tid, (ffile, err) in planned_failures.items():
                manifest.begin(tid, "", ffile)
                manifest.record(tid, {"status": "failed", "error": err})
                summary.failures[tid] = err
                emit("tile", {"tile_id": tid, "status": "failed", "error": err})
            for j in todo:
                manifest.begin(j.tile_id, j.inputs_hash, j.features_file)

            def on_cluster(kind: str, info: dict[str, Any]) -> None:
                if kind == "dashboard":  # the address it listens on (threads too: cluster.local_dashboard_link)
                    summary.dashboard = info["link"]
                    emit(kind, info)

            for job, res in execute(
                run_tile,
                todo,
                scheduler=scheduler,
                workers=n_workers,
                key=lambda j: f"eulc-map-{j.tile_id}-{(j.inputs_hash or 'chained')[:12]}",
                failure=_dead_worker,
                emit=on_cluster,
                dashboard=dashboard,
            ):
                if job.features is not None and "features" in res and fledger is not None:
                    record_feature_result(fledger, job.features, res["features"])
                    if res["features"]["status"] == "done":
                        summary.features_done += 1
                    else:
                        summary.features_failed += 1
                _record(job, res, manifest, out_dir, legends, model_hash, summary, emit, models)
            done_rows = [r for r in manifest.rows() if r.status == "done"]

            write_catalog(
                out_dir,
                [r.tile_id for r in done_rows if f"{r.tile_id}.json" in r.outputs],
                f"eulc land-cover map, model {model_hash}",
            )
        finally:
            manifest.close()
    summary.seconds = time.perf_counter() - t_run
    return summary


def _own_files(manifest_path: Path) -> set[str]:
    """Names in a run folder that this kind of run writes: its manifest (and SQLite side files),
    catalogue, lock, features folder (``--stac``) and every output an existing manifest records.
    """
    own = {
        MANIFEST,
        f"{MANIFEST}-journal",
        f"{MANIFEST}-wal",
        f"{MANIFEST}-shm",
        "catalog.json",
        *MODEL_ITEMS.values(),
        LOCK,
        "features",
        WRITTEN,
    }
    if manifest_path.is_file():
        m = Manifest(manifest_path)
        try:
            for row in m.rows():  # a tile started but not recorded (a killed run) may have written its files
                own |= set(row.outputs) | {f"{row.tile_id}{s}" for s in OUTPUT_SUFFIXES}
        finally:
            m.close()
    return own


OUTPUT_SUFFIXES = ("_class.tif", "_confidence.tif", "_proba.tif", "_level2.tif", "_ood.tif", ".json")
"""What a tile writes into the run folder: ``<tile><suffix>``."""


def _output_names(job: MapJob, level2: bool) -> list[str]:
    """The files a tile's job writes into the run folder."""
    names = [f"{job.tile_id}_class.tif", f"{job.tile_id}_confidence.tif", f"{job.tile_id}.json"]
    return (
        names
        + ([f"{job.tile_id}_proba.tif"] if job.probabilities else [])
        + ([f"{job.tile_id}_level2.tif"] if level2 else [])
        + ([f"{job.tile_id}_ood.tif"] if job.ood else [])
    )


def _plan(
    tiles: list[TileId] | None,
    features_dir: Path | None,
    features_files: list[Path] | None,
    bundle_dir: Path,
    level2_dir: Path | None,
    out_dir: Path,
    device: str,
    probabilities: bool,
    compress: str,
    threads: int,
    model_hash: str,
    accept: tuple[str, ...] = (),
    adapt_priors: bool = False,
    bf16: bool = False,
    ood_hash: str = "",
    chained: dict[str, FeatureJob] | None = None,
    tile_ids: list[str] | None = None,
    known: dict[Path, str] | None = None,
) -> tuple[list[MapJob], dict[str, tuple[str | None, str]]]:
    jobs: list[MapJob] = []
    failed: dict[str, tuple[str | None, str]] = {}
    hashes: dict[Path, str] = dict(known or {})  # each feature file hashed once
    cells: list[tuple[str, TileId | None, Path | None]] = (
        [(str(t), t, features_files[0] if features_files else None) for t in tiles]
        if tiles is not None
        else [
            (tid, None, f)
            for tid, f in zip(tile_ids or [f.stem for f in features_files or []], features_files or [], strict=True)
        ]
    )
    for tid, _, given in cells:  # every output stays inside --out, and no two inputs share one
        safe_name(tid, "feature file" if given is not None and tiles is None else "tile id")
    unique_names(((tid, str(given or tid)) for tid, _, given in cells), "the feature files")
    for tid, cell, given in cells:
        fjob = (chained or {}).get(tid)
        if fjob is not None:  # features computed on the worker that maps the tile; its key there
            jobs.append(
                MapJob(
                    tid,
                    cell,
                    str(fjob.dest),
                    str(bundle_dir),
                    str(level2_dir) if level2_dir else None,
                    str(out_dir),
                    device,
                    probabilities,
                    compress,
                    threads,
                    "",
                    accept,
                    adapt_priors,
                    bf16,
                    bool(ood_hash),
                    model_hash,
                    ood_hash,
                    fjob,
                )
            )
            continue
        try:
            ffile = given if given is not None else find_features(Path(str(features_dir)), tid)
            if not ffile.is_file():
                raise RasterError("does not exist", "Check the feature file or `mosaic` path", path=ffile)
        except RasterError as e:
            failed[tid] = (None, str(e))
            continue
        if ffile not in hashes:
            hashes[ffile] = file_sha256(ffile)
        job = MapJob(
            tid,
            cell,
            str(ffile),
            str(bundle_dir),
            str(level2_dir) if level2_dir else None,
            str(out_dir),
            device,
            probabilities,
            compress,
            threads,
            "",
            accept,
            adapt_priors,
            bf16,
            bool(ood_hash),
            model_hash,
            ood_hash,
        )
        jobs.append(dataclasses.replace(job, inputs_hash=job.key(hashes[ffile])))
    return jobs, failed


def _dead_worker(job: MapJob, e: BaseException) -> dict[str, Any]:
    return {"status": "failed", "error": f"{job.features_file}: the worker failed ({type(e).__name__}: {e})"}


def _with_item(
    job: MapJob,
    res: dict[str, Any],
    out_dir: Path,
    legends: dict[str, Any],
    model_hash: str,
    models: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write the tile's STAC item (linking the run's model items ``models``); ``res`` with the
    item among its outputs.
    """
    files = {name.removeprefix(f"{job.tile_id}_").removesuffix(".tif"): name for name in res["outputs"]}
    window = job.tile.window() if job.tile is not None else dataset_window(out_dir / files["class"])
    props = {
        "eulc:model_hash": model_hash,
        "eulc:spec_hash": res.get("spec_hash", ""),
        "eulc:features_digest": res.get("features_digest", ""),
        "eulc:contract": res.get("contract", ""),
        "eulc:n_pixels": res["n_pixels"],
        "eulc:n_nodata": res["n_nodata"],
        "eulc:class_counts": res["class_counts"],
    }
    if res.get("ood_counts") is not None:
        props |= {"eulc:ood_share": round(float(res["ood_share"]), 6), "eulc:ood_counts": res["ood_counts"]}
    item = tile_item(
        job.tile_id,
        window,
        str(res.get("year", "")),
        files,
        {k: v for k, v in legends.items() if k in files},
        props,
        models,
    )
    ipath = write_item(item, out_dir)
    return {**res, "outputs": {**res["outputs"], ipath.name: file_sha256(ipath)}}


def _record(
    job: MapJob,
    res: dict[str, Any],
    manifest: Manifest,
    out_dir: Path,
    legends: dict[str, Any],
    model_hash: str,
    summary: MapSummary,
    emit: Event,
    models: dict[str, str] | None = None,
) -> None:
    if res["status"] == "done":
        try:
            res = _with_item(job, res, out_dir, legends, model_hash, models)
        except Exception as e:  # noqa: BLE001 - the tile is recorded as failed, never left "running"
            res = {
                **res,
                "status": "failed",
                "error": f"{job.tile_id}: its STAC item could not be written "
                f"({type(e).__name__}: {' '.join(str(e).split())[:200]})",
            }
    if res["status"] == "done":
        summary.done += 1
        summary.pixels += int(res["n_pixels"])
        summary.nodata += int(res["n_nodata"])
    else:
        summary.failures[job.tile_id] = str(res.get("error"))
        if res.get("write_error"):
            summary.write_failures.add(job.tile_id)
    manifest.record(job.tile_id, res)
    if res["status"] == "done":
        log.info(
            "%s: mapped in %.1f s, %s pixels (%s nodata), peak RSS %.0f MB",
            job.tile_id,
            res.get("seconds", 0.0),
            f"{int(res['n_pixels']):,}",
            f"{int(res['n_nodata']):,}",
            res.get("peak_rss_mb"),
        )
    else:
        log.info("%s: %s after %.1f s: %s", job.tile_id, res["status"], res.get("seconds", 0.0), res.get("error"))
    emit("tile", {"tile_id": job.tile_id, **{k: res.get(k) for k in ("status", "error", "seconds", "peak_rss_mb")}})
