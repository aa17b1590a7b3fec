"""eulc's Python API: the pipeline's stages as functions, for notebooks and scripts.

Each function builds the typed request of a stage (:mod:`pipeline.stages`) and runs it, as the
matching ``eulc`` command does (the CLI adds progress bars and exit codes; both check the same
things, in the stage). ``docs/quickstart.ipynb`` runs them end to end on the demo data::

    import pipeline.api as eulc

    feats = eulc.compute_features("eolearn_slovenia", 2017, "out/features", features="elc10-ndvi-l1")
    maps = eulc.map_features([feats], "out/maps", bundle="elc10-ndvi-l1")
    metrics = eulc.report(maps[0], eulc.demo_inputs()["reference"], "eolearn_lulc", "out/report")

Many tiles, from a stack cut into cells, a static STAC catalogue or a STAC API, resumably and on
a dask scheduler: :func:`features_for_tiles` and :func:`map_tiles` (features computed on the
worker that maps each tile). Any stage's request can also be run directly with :func:`run`.

Conventions: rasters are on the EEA grid (EPSG:3035, 10 m) unless said otherwise; coordinates
are lon/lat (EPSG:4326) in that order; paths may be ``str`` or :class:`~pathlib.Path`. Errors are
:class:`pipeline.core.errors.EulcError` subclasses whose message names the file, band or column,
or the parameter in backticks (```tile_size```), and what to change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd

from pipeline.core.config import demo_data_dir
from pipeline.core.errors import EulcError
from pipeline.core.legend import Legend, level1_legend, level2_legend
from pipeline.core.spec import load_spec
from pipeline.stages import assess, demo, evaluate, mapping, ood, select, table
from pipeline.stages import features as features_stage
from pipeline.stages import train as train_stage
from pipeline.stages.assess import AgreementRequest, DriftRequest, ReportRequest
from pipeline.stages.demo import DemoRequest
from pipeline.stages.evaluate import EvaluateRequest
from pipeline.stages.events import Event, ignore
from pipeline.stages.features import FeaturesRequest
from pipeline.stages.mapping import MapRequest
from pipeline.stages.ood import OodRequest
from pipeline.stages.pretrained import resolve_bundle, shipped_bundles
from pipeline.stages.select import SelectRequest
from pipeline.stages.table import TableRequest
from pipeline.stages.train import TrainRequest
from pipeline.table import build_feature_table, read_feature_table
from tiles.engine.runner import FeaturesSummary
from tiles.mapping.runner import MapSummary

__all__ = [
    "AgreementRequest",
    "DemoRequest",
    "DriftRequest",
    "EvaluateRequest",
    "FeaturesRequest",
    "MapRequest",
    "OodRequest",
    "ReportRequest",
    "SelectRequest",
    "TableRequest",
    "TrainRequest",
    "bundle",
    "bundles",
    "build_table",
    "compute_features",
    "demo_inputs",
    "features_for_tiles",
    "legend",
    "load_spec",
    "map_features",
    "map_tiles",
    "read_table",
    "report",
    "run",
    "train",
]

PathLike = str | Path

_STAGES: dict[type, Callable[..., Any]] = {
    TableRequest: table.build_table,
    SelectRequest: select.select,
    TrainRequest: train_stage.train,
    EvaluateRequest: evaluate.evaluate,
    FeaturesRequest: features_stage.features,
    MapRequest: mapping.map_tiles,
    AgreementRequest: assess.agreement,
    ReportRequest: assess.report,
    DriftRequest: assess.drift,
    OodRequest: ood.add_ood,
    DemoRequest: demo.run_demo,
}


def run(request: Any, on_event: Event = ignore) -> Any:
    """Run the stage a request is for (``TableRequest`` → the table stage, ``MapRequest`` → the
    map stage, ...) and return its typed result; ``on_event(kind, info)`` receives its progress
    (:mod:`pipeline.stages.events`).

    Raises:
        EulcError: not a stage request, and whatever the stage raises.
    """
    stage = _STAGES.get(type(request))
    if stage is None:
        raise EulcError(
            f"{type(request).__name__} is not a stage request", f"Give one of {', '.join(t.__name__ for t in _STAGES)}"
        )
    return stage(request, on_event)


def bundle(name: PathLike) -> Path:
    """A model bundle's folder: a path as given, or a shipped bundle by name (``elc10-l1``,
    ``elc10-s2-l1``, ``elc10-ndvi-l1``, ``elc10-l2``; see :func:`bundles`).
    """
    return resolve_bundle(name)


def bundles() -> dict[str, list[str]]:
    """The shipped bundles: name → the ordered feature names each model reads."""
    return shipped_bundles()


def legend(level: str = "level1") -> Legend:
    """The class legend: ``level1`` (7 land-cover classes, ids 0–6) or ``level2`` (19 crop
    types), each class with its id, name and ``#rrggbb`` colour (paper Tables 1 and 2).

    Raises:
        EulcError: another level.
    """
    if level == "level1":
        return level1_legend()
    if level == "level2":
        return level2_legend()
    raise EulcError(f"level {level!r} is not a legend", "Use level1 or level2")


def demo_inputs() -> dict[str, Any]:
    """The demo's shipped inputs: ``stack`` (the Slovenia Sentinel-2 stack manifest name for
    :func:`compute_features`, 1 km² near Ljubljana, EPSG:3035 10 m output), its ``year`` (int,
    2017), ``reference`` (its eo-learn LULC reference raster, a Path) and that reference's
    ``crosswalk`` (``eolearn_lulc``). Sources: ``pipeline/demo_data/SOURCES.md``.
    """
    return {
        "stack": "eolearn_slovenia_demo",
        "year": 2017,
        "crosswalk": "eolearn_lulc",
        "reference": demo_data_dir() / "eolearn_slovenia" / "lulc_reference.tif",
    }


def build_table(
    exports: PathLike | Sequence[PathLike],
    out: PathLike | None = None,
    spec: str = "elc10",
    lucas: PathLike | None = None,
    year: int | None = None,
) -> gpd.GeoDataFrame:
    """A FeatureTable from GEE ``sampleRegions`` CSV exports (or ``eulc sample`` output): one
    row per LUCAS point with its features in physical units, LC1/LU1, Level-1/Level-2 labels and
    EEA bioregion, as ``eulc table`` (DESIGN.md, FeatureTable contract).

    Args:
        exports: one CSV (``.csv`` or ``.csv.gz``) or several shards.
        out: write the table here too (GeoParquet, atomic; a rerun on the same exports reads it
            back instead of building it again); None to only return it.
        spec: the feature spec the exports were made with (name or YAML path).
        lucas: a LUCAS point CSV with LC1/LU1 when the exports lack them.
        year: the survey year (default: the spec's).

    Returns:
        The table (EPSG:4326 points, lon/lat), its provenance in ``table.attrs['eulc']``.

    Raises:
        SchemaError: a missing column or feature, no labelled row, a CSV cut mid-row.
    """
    paths = [Path(exports)] if isinstance(exports, (str, Path)) else [Path(p) for p in exports]
    if out is None:
        gdf, _ = build_feature_table(paths, load_spec(spec), Path(lucas) if lucas else None, year)
        return gdf
    return table.build_table(TableRequest(tuple(paths), Path(out), spec, Path(lucas) if lucas else None, year)).read()


def read_table(path: PathLike) -> gpd.GeoDataFrame:
    """Read a FeatureTable written by :func:`build_table` or ``eulc table`` (metadata in
    ``table.attrs['eulc']``). Raises SchemaError when the file is not one.
    """
    table, meta = read_feature_table(Path(path))
    table.attrs["eulc"] = meta
    return table


def train(
    table: PathLike,
    out: PathLike,
    features: str | None = None,
    preset: str = "eulc",
    epochs: int = 500,
    lr: float = 1e-4,
    level: str = "level1",
    device: str = "auto",
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
    overwrite: bool = False,
    landscapes: int = 16,
) -> dict[str, Any]:
    """Train a model on a FeatureTable file and write its bundle (safetensors + JSON), as
    ``eulc train``.

    Args:
        table: the FeatureTable (GeoParquet).
        out: the bundle folder (new, empty, or an eulc bundle with ``overwrite``).
        features: a selection JSON, a bundle (its features) or comma-separated names; None = all.
        preset: ``eulc`` (default), ``bridge-lc`` (the paper's), ``mlp``, ... (``model/presets.py``).
        epochs, lr: the schedule (paper: 500 epochs, 1e-4).
        level: ``level1`` or ``level2`` labels.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        seed: the random seed (same seed and threads: identical weights).
        on_epoch: called with (epoch, mean training loss) after each epoch.
        overwrite: replace an existing bundle in ``out``.
        landscapes: K of the OOD reference stored with the bundle (0: none; ``map_features(ood=True)``).

    Returns:
        The bundle's metrics: ``test_accuracy``, ``test_weighted_f1``, ``test_ece`` on the
        untouched EEA 100 km cells when there are any, hold-out figures otherwise.

    Raises:
        EulcError: an unknown preset, level or feature; a bad table; training that diverges.
    """
    return train_stage.train(
        TrainRequest(
            Path(table),
            Path(out),
            features,
            None,
            level,
            epochs,
            lr,
            seed=seed,
            preset=preset,
            overwrite=overwrite,
            device=device,
            landscapes=landscapes,
        ),
        _epochs(on_epoch),
    ).metrics


def _epochs(on_epoch: Callable[[int, float], None] | None) -> Event:
    """The train stage's ``progress`` events as ``on_epoch(epoch, loss)`` calls."""
    if on_epoch is None:
        return ignore

    def emit(kind: str, info: dict[str, Any]) -> None:
        if kind == "progress" and info.get("stage") == "train":
            on_epoch(int(info["done"]), float(info["loss"]))

    return emit


def compute_features(
    stack: PathLike,
    year: int,
    out_dir: PathLike,
    features: str | None = None,
    spec: str | None = None,
    on_feature: Callable[[str], None] | None = None,
) -> Path:
    """Compute features from a local Sentinel stack and write one feature COG, as
    ``eulc features --files``.

    Args:
        stack: a stack manifest (YAML) or a shipped name (``eolearn_slovenia``, the demo's).
        year: the year whose observations are composited.
        out_dir: the folder; the file is ``<stack name>_<year>.tif``.
        features: a bundle (its features and spec: the usual choice), a selection JSON or
            comma-separated names; None = every feature of ``spec``.
        spec: the feature spec when ``features`` does not carry one (default ``elc10``).
        on_feature: called with each feature's name when it is done.

    Returns:
        The feature COG: float32 or int16 (the spec's stored scale), one band per feature named
        after it, EPSG:3035, 10 m, nodata NaN / -32768, the feature contract in its tags.

    Raises:
        EulcError: a feature the stack cannot compute (e.g. Sentinel-1 from an S2-only stack),
            an unreadable stack, a manifest name that cannot name a file inside ``out_dir``.

    Like ``eulc features``, a rerun finds the COG current (``out_dir/.eulc-features.json``) and
    does not compute it again.
    """
    on_event = (
        ignore
        if on_feature is None
        else (lambda kind, info: on_feature(str(info["name"])) if kind == "feature" else None)
    )
    res = features_stage.features(
        FeaturesRequest(Path(out_dir), year, files=str(stack), spec=spec, features=features, scheduler="sync"), on_event
    )
    return res.outputs[0]


def features_for_tiles(
    out_dir: PathLike,
    year: int,
    tiles: str,
    *,
    files: str | None = None,
    catalog: PathLike | None = None,
    stac: str | None = None,
    tile_size: str = "10km",
    features: str | None = None,
    spec: str | None = None,
    cloud_mask: str = "auto",
    processing_level: str = "L2A",
    collection: str = "sentinel-2-l2a",
    s1_collection: str | None = None,
    dem_collection: str | None = None,
    scheduler: str = "sync",
    workers: int | None = None,
    on_event: Event = ignore,
) -> FeaturesSummary:
    """Feature COGs for many EEA cells, as ``eulc features --tiles``: one ``<cell>_<year>.tif`` per
    cell, resumably (cells current in ``out_dir/.eulc-features.json`` are skipped), a failed cell
    recorded with its reason while the others go on.

    Args:
        out_dir: the output folder.
        year: the year composited.
        tiles: EEA cells: codes (``1kmE4674N2539,...``), ``bbox:W,S,E,N`` (lon/lat degrees), a
            ``.txt`` list or a vector file.
        files, catalog, stac: the source, exactly one: a stack manifest (cut into the cells), a
            static STAC catalogue, or a STAC API URL (with ``collection``, ``s1_collection``,
            ``dem_collection``).
        tile_size: cell size for a bbox or vector ``tiles`` (``10km``, ``1km``, ``250m``).
        features, spec: which features (a bundle, a selection JSON or names) and their spec.
        cloud_mask: ``auto`` or ``none``; processing_level: ``L2A`` or ``L1C`` (STAC items).
        scheduler: ``sync`` (this process, default here), ``threads``, ``local`` or a scheduler
            address; workers: their number.
        on_event: progress callback (``plan``, ``tile``, ...).

    Returns:
        The summary: ``outputs`` (COG paths), ``done``, ``skipped``, ``failures`` (name → reason).

    Raises:
        EulcError: bad parameters (named in backticks), an unreadable source, another run on
            ``out_dir``; a single cell's own error when it fails.
    """
    return features_stage.features(
        FeaturesRequest(
            Path(out_dir),
            year,
            files=files,
            catalog=Path(catalog) if catalog else None,
            stac=stac,
            collection=collection,
            s1_collection=s1_collection,
            dem_collection=dem_collection,
            cloud_mask=cloud_mask,
            tiles=tiles,
            tile_size=tile_size,
            processing_level=processing_level,
            spec=spec,
            features=features,
            scheduler=scheduler,
            workers=workers,
        ),
        on_event,
    )


def map_features(
    feature_cogs: Sequence[PathLike],
    out: PathLike,
    bundle: PathLike = "elc10-l1",
    device: str = "auto",
    precision: str = "auto",
    probabilities: bool = False,
    level2: PathLike | None = None,
    ood: bool = False,
) -> list[Path]:
    """Map feature COGs with a model bundle, as ``eulc map FILE...`` (in this process; use the
    CLI for many tiles on a dask cluster).

    Args:
        feature_cogs: feature COGs with the bundle's features (band names checked).
        out: the run folder (COGs, STAC items, ``manifest.sqlite``); a rerun skips done files.
        bundle: a bundle folder or shipped name (default ``elc10-l1``, all 35 ELC10 features).
        device: ``auto``, ``cpu`` or ``cuda``; precision: ``auto``, ``fp32`` or ``bf16``.
        probabilities: also write ``<name>_proba.tif``.
        level2: a Level-2 crop bundle for crop types inside Cropland.
        ood: also write ``<name>_ood.tif`` (0 in distribution, 1 rare landscape, 2 far in
            feature space, 3 both; nodata 255) from the bundle's OOD reference.

    Returns:
        The class COGs (uint8 Level-1 ids, nodata 255, legend colormap); beside each,
        ``<name>_confidence.tif`` (0–100 %).

    Raises:
        EulcError: any file failed (the message lists each file and why); ``ood`` with a
            bundle without an OOD reference.
    """
    summary = mapping.map_tiles(
        MapRequest(
            Path(out),
            tuple(Path(f) for f in feature_cogs),
            str(bundle),
            scheduler="sync",
            device=device,
            precision=precision,
            probabilities=probabilities,
            level2=str(level2) if level2 else None,
            ood=ood,
        )
    )
    if summary.failures:
        raise EulcError("; ".join(f"{k}: {v}" for k, v in summary.failures.items()))
    return [Path(out) / f"{Path(f).stem}_class.tif" for f in feature_cogs]


def map_tiles(
    out: PathLike,
    tiles: str,
    *,
    bundle: PathLike = "elc10-l1",
    features_dir: PathLike | None = None,
    mosaic: PathLike | None = None,
    stac: str | None = None,
    catalog: PathLike | None = None,
    year: int | None = None,
    tile_size: str = "10km",
    level2: PathLike | None = None,
    cloud_mask: str = "auto",
    processing_level: str = "L2A",
    collection: str = "sentinel-2-l2a",
    device: str = "auto",
    precision: str = "auto",
    ood: bool = False,
    scheduler: str = "sync",
    workers: int | None = None,
    overwrite: bool = False,
    accept: Sequence[str] = (),
    on_event: Event = ignore,
) -> MapSummary:
    """Map EEA cells, as ``eulc map --tiles``: from per-tile feature COGs (``features_dir``), one
    mosaic, or a STAC API / static catalogue whose features (the bundle's own) are computed on the
    worker that then maps each tile, into ``out/features``.

    Args:
        out: the run folder (COGs, STAC items, ``manifest.sqlite``; a rerun skips current tiles).
        tiles: EEA cells (codes, ``bbox:W,S,E,N`` lon/lat degrees, a ``.txt`` list, a vector file).
        bundle: a bundle folder or shipped name.
        features_dir, mosaic, stac, catalog: the feature source, exactly one; ``stac`` and
            ``catalog`` need ``year``.
        tile_size: cell size for a bbox or vector ``tiles``.
        level2: a Level-2 crop bundle; cloud_mask, processing_level, collection: for a STAC source.
        device, precision, ood: as :func:`map_features`.
        scheduler: ``sync`` (default here), ``threads``, ``local`` or a scheduler address.
        workers: their number; overwrite: write beside files eulc did not write (never over them).
        accept: feature-contract differences to tolerate (``cloud_mask``, ``level``; a STAC source
            accepts both itself).
        on_event: progress callback.

    Returns:
        The summary: ``done``, ``skipped``, ``failures`` (tile → reason), pixel counts.

    Raises:
        EulcError: bad parameters (named), bundles that do not load, sources that do not fit.
    """
    return mapping.map_tiles(
        MapRequest(
            Path(out),
            bundle=str(bundle),
            tiles=tiles,
            tile_size=tile_size,
            features_dir=Path(features_dir) if features_dir else None,
            mosaic=Path(mosaic) if mosaic else None,
            level2=str(level2) if level2 else None,
            scheduler=scheduler,
            workers=workers,
            device=device,
            precision=precision,
            ood=ood,
            stac=stac,
            catalog=Path(catalog) if catalog else None,
            collection=collection,
            cloud_mask=cloud_mask,
            year=year,
            processing_level=processing_level,
            overwrite=overwrite,
            accept=tuple(accept),
        ),
        on_event,
    )


def report(
    class_map: PathLike,
    reference: PathLike,
    crosswalk: str,
    out: PathLike,
    points: PathLike | None = None,
    bundle: PathLike | None = None,
    title: str | None = None,
    ood: PathLike | None = None,
    drift: PathLike | None = None,
) -> dict[str, Any]:
    """Compare a class map with a reference map and write ``report.html``, ``metrics.json``,
    CSVs and ``disagreement.tif`` into ``out``, as ``eulc report``.

    Args:
        class_map: a class COG or VRT mosaic from :func:`map_features` (Level-1).
        reference: a reference raster in any CRS (CLC+ Backbone, CORINE, ...), read window by
            window and warped onto the map grid.
        crosswalk: its legend to Level-1 (``clcplus_backbone``, ``corine_l3``, ``eolearn_lulc``, ...).
        out: the report folder.
        points: reference points for accuracy and area estimates with 95 % CI (Olofsson et al. 2014).
        bundle: the model bundle whose card goes into the report.
        title: the report title.
        ood: the map's OOD layer (default: the ``_ood.tif`` beside ``class_map``, if any).
        drift: the CSV of ``eulc drift --out`` for the map's features, shown beside the OOD share.

    Returns:
        ``metrics.json`` as a dict: ``overall_agreement`` (0–1), ``per_class`` (user's and
        producer's accuracy, F1), ``confusion`` (hectares), ``area_compared_ha``, ...

    Raises:
        EulcError: unknown reference codes, no overlap, an unknown crosswalk.
    """
    return assess.report(
        ReportRequest(
            Path(class_map),
            Path(reference),
            crosswalk,
            Path(out),
            points=Path(points) if points else None,
            bundle=str(bundle) if bundle else None,
            title=title,
            ood_layer=Path(ood) if ood else None,
            drift=Path(drift) if drift else None,
        )
    )
