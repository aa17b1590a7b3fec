"""The features stage: feature COGs from a stack manifest, a static STAC catalogue or a STAC API,
for one stack or many EEA cells, resumably, on the same schedulers as the map
(:mod:`tiles.engine.runner`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from model.reduce_torch import order_stats_on
from pipeline.core.aoi import parse_tile_size, parse_tiles
from pipeline.core.atomic import WriteError
from pipeline.core.errors import EulcError
from pipeline.core.grid import TileId
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import FeatureSpec
from pipeline.stages.events import Event, ignore, tagged
from pipeline.stages.resolve import spec_and_selection
from tiles.engine.cluster import DASHBOARD, check_dashboard, check_scheduler
from tiles.engine.runner import FeatureJob, FeatureSource, FeaturesSummary, plan_features, run_features
from tiles.engine.stac_search import StacApi

CLOUD_MASKS = ("auto", "none")


@dataclass(frozen=True)
class FeaturesRequest:
    """What to compute, from what, where.

    Attributes:
        out: the output folder (feature COGs, ``.eulc-features.json``).
        year: the year whose observations are composited.
        files: a stack manifest (YAML path or shipped name); or
        catalog: a static STAC catalogue (``catalog.json``); or
        stac: a STAC API URL, with ``collection`` (S2), ``s1_collection`` and ``dem_collection``.
        cloud_mask: ``auto`` (the spec's mask, SCL when items lack s2cloudless CLP) or ``none``.
        tiles: EEA cells (codes, ``bbox:W,S,E,N`` in degrees lon/lat, a ``.txt`` list or a vector
            file); needed for STAC sources; with ``files`` the stack is cut into these cells.
        tile_size: the cell size for a bbox or vector ``tiles`` (``10km``, ``1km``, ``250m``).
        processing_level: Sentinel-2 level of STAC items, ``L2A`` or ``L1C``.
        spec: the feature spec (name or YAML); default: the one ``features`` carries, else ``elc10``.
        features: a selection JSON, a bundle (folder or shipped name) or comma-separated names.
        tile_id: the name of a whole stack's COG (default: the manifest's name).
        allow_root: folders besides a static catalogue's tree its assets may lie in.
        scheduler: ``local``, ``threads``, ``sync`` or a dask scheduler address.
        workers: worker count for ``local``/``threads`` (default: the CPU count).
        dashboard: ``host:port`` of a local cluster's dask dashboard.
        device: where the masked percentiles and medians are sorted: ``cpu`` (numpy, the
            default) or ``cuda``/``cuda:N``/``auto`` (torch, :mod:`model.reduce_torch`; the same
            values); checked where the run starts, so a GPU must be visible there.
    """

    out: Path
    year: int
    files: str | None = None
    catalog: Path | None = None
    stac: str | None = None
    collection: str = "sentinel-2-l2a"
    s1_collection: str | None = None
    dem_collection: str | None = None
    cloud_mask: str = "auto"
    tiles: str | None = None
    tile_size: str = "10km"
    processing_level: str = "L2A"
    spec: str | None = None
    features: str | None = None
    tile_id: str | None = None
    allow_root: tuple[Path, ...] = ()
    scheduler: str = "local"
    workers: int | None = None
    dashboard: str = DASHBOARD
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_run_fields(self.cloud_mask, self.scheduler, self.workers, self.dashboard)
        if not re.fullmatch(r"cpu|cuda(:\d+)?|auto", self.device):
            raise EulcError(f"`device` {self.device!r} is not a device", "Use cpu, cuda, cuda:N or auto")

    def source(self) -> FeatureSource:
        """The :class:`~tiles.engine.runner.FeatureSource` this request names.

        Raises:
            EulcError: none or several of ``files``, ``catalog``, ``stac``.
        """
        return source_of(
            self.files,
            self.catalog,
            self.stac,
            self.collection,
            self.s1_collection,
            self.dem_collection,
            self.processing_level,
            self.allow_root,
        )

    def cells(self) -> list[TileId] | None:
        """The cells of ``tiles`` (None without).

        Raises:
            EulcError: a bad ``tiles`` or ``tile_size``.
        """
        return parse_tiles(self.tiles, parse_tile_size(self.tile_size)) if self.tiles else None


def check_run_fields(cloud_mask: str, scheduler: str, workers: int | None, dashboard: str = DASHBOARD) -> None:
    """The fields the features and map requests share: ``cloud_mask``, the scheduler, the dashboard.

    Raises:
        EulcError: naming ``cloud_mask``, ``scheduler``, ``workers`` or ``dashboard``.
    """
    if cloud_mask not in CLOUD_MASKS:
        raise EulcError(f"`cloud_mask` {cloud_mask!r} is not a choice", "Use auto or none")
    check_scheduler(scheduler, workers)
    check_dashboard(dashboard)


def source_of(
    files: str | None,
    catalog: Path | None,
    stac: str | None,
    collection: str,
    s1_collection: str | None,
    dem_collection: str | None,
    processing_level: str,
    allow_root: tuple[Path, ...] = (),
) -> FeatureSource:
    """A :class:`~tiles.engine.runner.FeatureSource` from the request fields that name one."""
    api = None
    if stac is not None:
        cols = (
            {"s2": collection}
            | ({"s1": s1_collection} if s1_collection else {})
            | ({"dem": dem_collection} if dem_collection else {})
        )
        api = StacApi(stac, cols)
    return FeatureSource(
        files=files,
        catalog=None if catalog is None else str(catalog),
        stac=api,
        processing_level=processing_level,
        allow_roots=tuple(str(r) for r in allow_root),
    )


def plan(
    req: FeaturesRequest, spec: FeatureSpec | None = None, selection: FeatureSelection | None = None
) -> list[FeatureJob]:
    """The request's jobs (one per tile, or one for a whole stack), each with its ledger key.

    Args:
        req: the request.
        spec, selection: given by a caller that resolved them already (the map stage: the
            bundle's); default: from ``req.spec`` and ``req.features``.

    Raises:
        EulcError: as :func:`features`.
    """
    source = req.source()
    if spec is None or selection is None:
        spec, selection = spec_and_selection(req.spec, req.features)
    order_stats = order_stats_on(req.device)  # None on the CPU: the engine's numpy path
    return plan_features(
        req.cells(), source, spec, selection, req.year, Path(req.out), req.cloud_mask, req.tile_id, order_stats
    )


def features(req: FeaturesRequest, on_event: Event = ignore) -> FeaturesSummary:
    """Compute the request's feature COGs; tiles current in the folder's ledger are skipped,
    failed tiles are recorded with their reason and the others go on.

    Returns:
        The :class:`~tiles.engine.runner.FeaturesSummary` (``outputs``: the COG paths, float32
        or int16 at the spec's stored scale, one band per feature, EPSG:3035 10 m, the feature
        contract in the tags).

    Raises:
        EulcError: bad request fields (named), an unreadable source, a spec/selection mismatch,
            another run on ``out``; and the tile's own error when the request has a single tile
            and it failed (a run of many tiles lists its failures in the summary instead).
    """
    jobs = plan(req)
    summary = run_features(
        jobs,
        Path(req.out),
        scheduler=req.scheduler,
        workers=req.workers,
        emit=tagged(on_event, "features"),
        dashboard=req.dashboard,
    )
    if summary.failures and summary.tiles == 1:
        name, msg = next(iter(summary.failures.items()))
        raise (WriteError if name in summary.write_failures else EulcError)(msg)
    return summary
