"""The map stage: feature COGs (or a STAC source, whose features are computed on the worker that
maps each tile) → class/confidence COGs, STAC items and a resumable manifest
(:func:`tiles.mapping.runner.run_map`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from model.bundle import load_bundle_cached
from pipeline.core.aoi import parse_tile_size, parse_tiles
from pipeline.core.errors import EulcError
from pipeline.core.featurecog import band_names
from pipeline.core.selection import FeatureSelection
from pipeline.stages.events import Event, ignore, tagged
from pipeline.stages.features import check_run_fields, source_of
from pipeline.stages.pretrained import pick_bundle, resolve_bundle
from tiles.engine.cluster import DASHBOARD
from tiles.engine.runner import plan_features
from tiles.mapping.runner import COMPRESSIONS, MapSummary, run_map

ACCEPTABLE = ("cloud_mask", "level")
"""The feature-contract differences a map may tolerate (:mod:`pipeline.core.contract`)."""
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class MapRequest:
    """What to map, with which model, where.

    Attributes:
        out: the run folder (COGs, STAC items, ``manifest.sqlite``).
        feature_files: feature COGs/VRTs to map whole (without ``tiles``), or one mosaic.
        bundle: the model bundle (folder or shipped name).
        tiles: EEA cells (codes, ``bbox:W,S,E,N`` lon/lat degrees, a ``.txt`` list, a vector file).
        tile_size: cell size for a bbox or vector ``tiles``.
        features_dir: a folder of per-tile feature COGs (``<tile>_<year>.tif``, ...).
        mosaic: one feature COG or VRT holding every tile of ``tiles``.
        level2: a Level-2 crop bundle (crop types inside Cropland).
        scheduler: ``local``, ``threads``, ``sync`` or a dask scheduler address.
        workers: worker count for ``local``/``threads``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, resolved on each worker.
        precision: ``auto``, ``fp32`` or ``bf16``.
        probabilities: also write per-class probabilities.
        adapt_priors: Dirichlet-MAP EM class-prior adaptation per tile with a likelihood-gain
            guard (Saerens et al. 2002; :mod:`model.priors`).
        compress: ``DEFLATE``, ``ZSTD`` or ``LZW``.
        ood: also write the OOD layer.
        stac, catalog: compute the bundle's features first, from a STAC API or a static catalogue,
            into ``out/features`` (needs ``year`` and ``tiles``), each tile on the worker that
            maps it; with ``collection``, ``s1_collection``, ``dem_collection``,
            ``cloud_mask``, ``processing_level`` and ``allow_root`` as for the features stage.
        year: the map year of a STAC source.
        overwrite: write into an ``out`` holding other files (never replacing them).
        dashboard: ``host:port`` of a local cluster's dask dashboard.
        accept: feature-contract differences to tolerate (``cloud_mask``, ``level``).
    """

    out: Path
    feature_files: tuple[Path, ...] = ()
    bundle: str = "elc10-l1"
    tiles: str | None = None
    tile_size: str = "10km"
    features_dir: Path | None = None
    mosaic: Path | None = None
    level2: str | None = None
    scheduler: str = "local"
    workers: int | None = None
    device: str = "auto"
    precision: str = "auto"
    probabilities: bool = False
    adapt_priors: bool = False
    compress: str = "DEFLATE"
    ood: bool = False
    stac: str | None = None
    catalog: Path | None = None
    collection: str = "sentinel-2-l2a"
    s1_collection: str | None = None
    dem_collection: str | None = None
    cloud_mask: str = "auto"
    year: int | None = None
    processing_level: str = "L2A"
    allow_root: tuple[Path, ...] = ()
    overwrite: bool = False
    dashboard: str = DASHBOARD
    accept: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        bad = [a for a in self.accept if a not in ACCEPTABLE]
        if bad:
            raise EulcError(
                f"`accept` {','.join(bad)}: only cloud_mask and level differences can be accepted",
                "Recompute the features with the bundle's spec instead",
            )
        if self.compress.upper() not in COMPRESSIONS:
            raise EulcError(
                f"`compress` {self.compress.upper()!r} is not supported", f"Use one of {', '.join(COMPRESSIONS)}"
            )
        if self.precision not in PRECISIONS:
            raise EulcError(f"`precision` {self.precision!r} is not a precision", "Use auto, fp32 or bf16")
        check_run_fields(self.cloud_mask, self.scheduler, self.workers, self.dashboard)
        if self.stac is not None or self.catalog is not None:
            if self.stac is not None and self.catalog is not None:
                raise EulcError("`stac` and `catalog` both given", "Compute the features from one of them")
            if self.year is None or not self.tiles or self.feature_files or self.mosaic or self.features_dir:
                raise EulcError("`stac` and `catalog` need `year` and `tiles`, and no other feature source")


def map_tiles(req: MapRequest, on_event: Event = ignore) -> MapSummary:
    """Map the request's tiles, resumably (:func:`tiles.mapping.runner.run_map`).

    With ``stac`` or ``catalog``, the bundle's own features (its spec and selection) are
    planned per tile into ``out/features`` (their ledger ``.eulc-features.json``); a tile
    whose feature COG is not current has it computed on the worker that then maps it. The
    cloud-mask and processing-level differences such sources imply are accepted, recorded in
    each class COG's ``contract`` tag and reported as a ``warning`` event.

    Returns:
        The :class:`~tiles.mapping.runner.MapSummary` (failures: tile id → reason).

    Raises:
        EulcError: bad request fields (named), a bundle that does not load, feature sources
            that do not fit, another run on ``out``.
    """
    emit = tagged(on_event, "map")
    bundle_dir = resolve_bundle(req.bundle)
    level2_dir = resolve_bundle(req.level2) if req.level2 else None
    cells = parse_tiles(req.tiles, parse_tile_size(req.tile_size)) if req.tiles else None
    accepted = tuple(req.accept)
    files = ([req.mosaic] if req.mosaic else []) + list(req.feature_files)
    features_dir = req.features_dir
    feature_jobs = None
    if req.stac is not None or req.catalog is not None:
        assert req.year is not None and cells is not None
        b = load_bundle_cached(bundle_dir)
        sp = b.feature_spec()
        sel = FeatureSelection.of(sp, b.features, "bundle")
        features_dir = Path(req.out) / "features"
        source = source_of(
            None,
            req.catalog,
            req.stac,
            req.collection,
            req.s1_collection,
            req.dem_collection,
            req.processing_level,
            req.allow_root,
        )
        feature_jobs = plan_features(cells, source, sp, sel, req.year, features_dir, req.cloud_mask)
        # the features come from items this run searched: the cloud mask the items allow and
        # their processing level are what there is (README "How the STAC path reads items")
        accepted = tuple(sorted({*accepted, *ACCEPTABLE}))
        emit(
            "warning",
            {
                "message": f"features from STAC: differences from the bundle's features in "
                f"{', '.join(accepted)} are accepted and recorded in each class COG's "
                "`contract` tag"
            },
        )
    summary = run_map(
        cells,
        bundle_dir,
        Path(req.out),
        features_dir=features_dir,
        features_files=files or None,
        level2_dir=level2_dir,
        scheduler=req.scheduler,
        workers=req.workers,
        device=req.device,
        probabilities=req.probabilities,
        compress=req.compress.upper(),
        on_event=emit,
        accept=accepted,
        dashboard=req.dashboard,
        overwrite=req.overwrite,
        adapt_priors=req.adapt_priors,
        precision=req.precision,
        ood=req.ood,
        feature_jobs=feature_jobs,
    )
    hint = bundle_hint(summary.failures, files, req.bundle, bundle_dir)
    if hint:
        emit("warning", {"message": hint})
    return summary


def bundle_hint(failures: dict[str, str], files: list[Path], bundle: str, bundle_dir: Path) -> str | None:
    """What to pass as ``bundle`` when tiles failed and the first feature file lacks features the
    bundle needs: the bundle in use (saying when it is the default) and the shipped bundle that
    uses the most of the file's bands (:func:`pipeline.stages.pretrained.pick_bundle`); None when
    nothing failed, no file was given, or the file has every feature (or cannot be read: its
    tile's own failure says why).
    """
    if not failures or not files:
        return None
    import rasterio

    try:
        with rasterio.open(files[0]) as src:
            bands = band_names(src, files[0])
    except (rasterio.errors.RasterioIOError, EulcError):
        return None
    if set(load_bundle_cached(bundle_dir).features) <= set(bands):
        return None
    default = " (the default)" if bundle == MapRequest.bundle else ""
    fits = pick_bundle(bands)
    then = (
        f"the shipped bundle that uses the most of them is {fits.name}: `bundle` {fits.name}"
        if fits is not None
        else "no shipped bundle uses only those: train one on them (`eulc train TABLE --features ...`)"
    )
    return (
        f"`bundle` {bundle}{default} needs features that {files[0].name} lacks; the file has "
        f"{len(bands)} ({', '.join(bands[:4])}{', ...' if len(bands) > 4 else ''}), and {then}"
    )
