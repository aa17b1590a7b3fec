"""The assessment stages: agreement and report of a map against a reference map, and drift of
feature COGs against the training table (and a bundle's training landscapes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from model.bundle import load_bundle_cached
from pipeline.assess.agreement import agreement as _agreement
from pipeline.assess.drift import drift_table
from pipeline.assess.report import ood_beside, write_report
from pipeline.assess.report_figures import landscape_bars
from pipeline.core.atomic import atomic_path, write_json
from pipeline.core.errors import EulcError, RasterError
from pipeline.core.ledger import out_lock
from pipeline.core.legend import Crosswalk, level1_legend
from pipeline.stages.events import Event, ignore
from pipeline.stages.pretrained import resolve_bundle
from pipeline.table import read_feature_table
from tiles.mapping.landscapes import landscape_drift


def _windows(on_event: Event, stage: str, last: str = "") -> Any:
    def on_window(i: int, n: int) -> None:
        on_event("progress", {"stage": stage, "done": i, "total": n, "info": last if i >= n else ""})

    return on_window


@dataclass(frozen=True)
class AgreementRequest:
    """A class map against a reference map.

    Attributes:
        class_map: a class COG (Level-1 ids, EPSG:3035) or VRT mosaic.
        reference: the reference raster (CLC+ Backbone, CORINE, ...), any CRS.
        crosswalk: the reference legend's crosswalk to Level-1 (a shipped name).
        out: write the agreement JSON here, or None.
    """

    class_map: Path
    reference: Path
    crosswalk: str
    out: Path | None = None


def agreement(req: AgreementRequest, on_event: Event = ignore) -> dict[str, Any]:
    """Confusion (rows = map, columns = reference), user's/producer's accuracy and F1 per class,
    read window by window (``progress`` events per window).

    Raises:
        EulcError: an unknown crosswalk, reference codes the crosswalk lacks, no overlap.
    """
    res = _agreement(
        Path(req.class_map),
        Path(req.reference),
        Crosswalk.shipped(req.crosswalk),
        level1_legend(),
        on_window=_windows(on_event, "comparing"),
    )
    if req.out is not None:
        with out_lock(req.out, "eulc agreement", is_file=True):
            write_json(Path(req.out), res)
    return res


@dataclass(frozen=True)
class ReportRequest:
    """The report of a map against a reference map.

    Attributes:
        map: the class COG or VRT mosaic (Level-1).
        reference: the reference raster, any CRS.
        crosswalk: its crosswalk to Level-1.
        out: the report folder (``report.html``, ``metrics.json``, CSVs, ``disagreement.tif``).
        points: reference points (FeatureTable or LUCAS LC1 points): accuracy and area with 95 % CI.
        zones: zone polygons (e.g. NUTS): composition per zone.
        previous: an earlier class map: the transition matrix (ha).
        bundle: the model bundle whose card goes into the report (folder or shipped name).
        title: the report title.
        ood_layer: the map's OOD layer (default: the ``<tile>_ood.tif`` beside ``map``, if any).
        drift: the CSV of ``eulc drift --out`` for the map's features: shown beside the OOD share.
    """

    map: Path
    reference: Path
    crosswalk: str
    out: Path
    points: Path | None = None
    zones: Path | None = None
    previous: Path | None = None
    bundle: str | None = None
    title: str | None = None
    ood_layer: Path | None = None
    drift: Path | None = None


def report(req: ReportRequest, on_event: Event = ignore) -> dict[str, Any]:
    """Write the report files and return ``metrics.json`` as a dict (``progress`` events per
    window of the map).

    Raises:
        EulcError: unknown reference codes, no overlap, an unknown crosswalk, an OOD layer on
            another grid.
    """
    with out_lock(req.out, "eulc report"):
        return _report(req, on_event)


def _report(req: ReportRequest, on_event: Event) -> dict[str, Any]:
    ood = req.ood_layer
    if ood is None and (ood := ood_beside(Path(req.map))) is not None:
        on_event("note", {"message": f"OOD layer: {ood} (found beside `map`)"})
    return write_report(
        Path(req.map),
        Path(req.reference),
        req.crosswalk,
        Path(req.out),
        points=req.points,
        zones=req.zones,
        previous=req.previous,
        bundle=resolve_bundle(req.bundle) if req.bundle else None,
        title=req.title,
        ood=ood,
        drift=req.drift,
        on_window=_windows(on_event, "comparing", "drawing the report"),
    )


@dataclass(frozen=True)
class DriftRequest:
    """Feature COGs against the training table.

    Attributes:
        table: the FeatureTable the model was trained on.
        features_dir: a folder of feature COGs (every ``*.tif``).
        out: write every (tile, feature) row to this CSV, or None.
        threshold: PSI above which a feature is flagged as shifted.
        bundle: also compare the tiles' landscape histogram with this bundle's training
            landscapes (its OOD reference); folder or shipped name.
        landscapes_csv, landscapes_png: with ``bundle``: the (tile, cluster) shares and their plot.
    """

    table: Path
    features_dir: Path
    out: Path | None = None
    threshold: float = 0.25
    bundle: str | None = None
    landscapes_csv: Path | None = None
    landscapes_png: Path | None = None

    def __post_init__(self) -> None:
        if self.bundle is None and (self.landscapes_csv or self.landscapes_png):
            raise EulcError(
                "`landscapes_csv` and `landscapes_png` need `bundle`",
                "Name the bundle whose training landscapes to compare with",
            )


@dataclass
class DriftResult:
    """Per (tile, feature) PSI/KS rows; with a bundle, the landscape histograms and per-tile summary."""

    tiles: list[Path]
    rows: pd.DataFrame
    landscapes: pd.DataFrame | None = None
    landscape_summary: pd.DataFrame | None = None
    k: int | None = None


def drift(req: DriftRequest, on_event: Event = ignore) -> DriftResult:
    """PSI and KS of every feature of every COG against the table; with ``bundle`` also the
    landscape PSI and the share of pixels in rare or unseen landscapes.

    Raises:
        RasterError: no feature COG in ``features_dir``.
        EulcError: a bad table; a bundle without an OOD reference.
    """
    tiles = sorted(p for p in Path(req.features_dir).glob("*.tif") if not p.name.startswith("."))
    if not tiles:
        raise RasterError(
            "has no feature COG (*.tif)", "Point `features_dir` at the features stage's outputs", path=req.features_dir
        )
    train, _ = read_feature_table(Path(req.table))
    on_event("status", {"message": f"comparing {len(tiles)} tile(s) with {len(train):,} training rows"})
    df = drift_table(train, tiles, psi_threshold=req.threshold)
    if req.out:
        with out_lock(req.out, "eulc drift", is_file=True), atomic_path(Path(req.out)) as tmp:
            df.to_csv(tmp, index=False)
    res = DriftResult(tiles, df)
    if req.bundle is not None:
        ref = load_bundle_cached(resolve_bundle(req.bundle)).require_ood()
        on_event("status", {"message": f"assigning the tiles' pixels to {ref.k} training landscapes"})
        res.landscapes, res.landscape_summary = landscape_drift(ref, tiles)
        res.k = ref.k
        if req.landscapes_csv:
            with atomic_path(Path(req.landscapes_csv)) as tmp:
                res.landscapes.to_csv(tmp, index=False)
        if req.landscapes_png:
            with atomic_path(Path(req.landscapes_png)) as tmp:
                tmp.write_bytes(landscape_bars(res.landscapes))
    return res
