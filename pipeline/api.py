"""eulc's Python API: the pipeline's stages as functions, for notebooks and scripts.

Each function does what one ``eulc`` command does, with the same checks and outputs (the CLI
adds progress bars and exit codes); ``docs/quickstart.ipynb`` runs them end to end on the
demo data::

    import pipeline.api as eulc

    feats = eulc.compute_features("eolearn_slovenia", 2017, "out/features", features="elc10-ndvi-l1")
    maps = eulc.map_features([feats], "out/maps", bundle="elc10-ndvi-l1")
    metrics = eulc.report(maps[0], eulc.demo_inputs()["reference"], "eolearn_lulc", "out/report")

Conventions: rasters are on the EEA grid (EPSG:3035, 10 m) unless said otherwise; coordinates
are lon/lat (EPSG:4326) in that order; paths may be ``str`` or :class:`~pathlib.Path`. Errors are
:class:`pipeline.core.errors.EulcError` subclasses whose message names the file, band or column
and what to change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd

from model.api import train_from_table
from model.infer import resolve_device
from model.presets import PRESETS, preset_config
from pipeline.app.pretrained import resolve_bundle, shipped_bundles
from pipeline.app.resolve import spec_and_selection, table_selection
from pipeline.assess.report import ood_beside, write_report
from pipeline.core.config import demo_data_dir
from pipeline.core.errors import EulcError
from pipeline.core.legend import Legend, level1_legend, level2_legend
from pipeline.core.spec import load_spec
from pipeline.table import build_feature_table, read_feature_table, table_metadata, table_spec, write_feature_table
from tiles.engine.run import features_from_stack, stack_features_path
from tiles.engine.stack import load_manifest
from tiles.mapping.runner import MapSummary, run_map

__all__ = ["bundle", "bundles", "build_table", "compute_features", "demo_inputs", "legend", "load_spec",
           "map_features", "read_table", "report", "train"]

PathLike = str | Path


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
    return {"stack": "eolearn_slovenia_demo", "year": 2017, "crosswalk": "eolearn_lulc",
            "reference": demo_data_dir() / "eolearn_slovenia" / "lulc_reference.tif"}


def build_table(exports: PathLike | Sequence[PathLike], out: PathLike | None = None, spec: str = "elc10",
                lucas: PathLike | None = None, year: int | None = None) -> gpd.GeoDataFrame:
    """A FeatureTable from GEE ``sampleRegions`` CSV exports (or ``eulc sample`` output): one
    row per LUCAS point with its features in physical units, LC1/LU1, Level-1/Level-2 labels and
    EEA bioregion, as ``eulc table`` (DESIGN.md, FeatureTable contract).

    Args:
        exports: one CSV (``.csv`` or ``.csv.gz``) or several shards.
        out: write the table here too (GeoParquet, atomic); None to only return it.
        spec: the feature spec the exports were made with (name or YAML path).
        lucas: a LUCAS point CSV with LC1/LU1 when the exports lack them.
        year: the survey year (default: the spec's).

    Returns:
        The table (EPSG:4326 points, lon/lat), its provenance in ``table.attrs['eulc']``.

    Raises:
        SchemaError: a missing column or feature, no labelled row, a CSV cut mid-row.
    """
    paths = [Path(exports)] if isinstance(exports, (str, Path)) else [Path(p) for p in exports]
    table, _ = build_feature_table(paths, load_spec(spec), Path(lucas) if lucas else None, year)
    if out is not None:
        write_feature_table(table, Path(out))
    return table


def read_table(path: PathLike) -> gpd.GeoDataFrame:
    """Read a FeatureTable written by :func:`build_table` or ``eulc table`` (metadata in
    ``table.attrs['eulc']``). Raises SchemaError when the file is not one.
    """
    table, meta = read_feature_table(Path(path))
    table.attrs["eulc"] = meta
    return table


def train(table: PathLike, out: PathLike, features: str | None = None, preset: str = "eulc", epochs: int = 500,
          lr: float = 1e-4, level: str = "level1", device: str = "auto", seed: int = 0,
          on_epoch: Callable[[int, float], None] | None = None, overwrite: bool = False,
          landscapes: int = 16) -> dict[str, Any]:
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
    if preset not in PRESETS:
        raise EulcError(f"unknown preset {preset!r}", f"Use one of {list(PRESETS)}")
    if level not in ("level1", "level2"):
        raise EulcError(f"level {level!r} is not a legend", "Use level1 or level2")
    table_path = Path(table)
    sel = table_selection(table_spec(table_metadata(table_path), f"table {table_path}"), features)
    cfg = preset_config(preset, None, level=level, epochs=epochs, lr=lr, seed=seed,
                        device=str(resolve_device(device)))
    if landscapes < 0:
        raise EulcError(f"landscapes = {landscapes}", "Use 0 (no OOD reference) or more (default 16)")
    return train_from_table(table_path, Path(out), sel, cfg, on_epoch, overwrite=overwrite, landscapes=landscapes)


def compute_features(stack: PathLike, year: int, out_dir: PathLike, features: str | None = None,
                     spec: str | None = None, on_feature: Callable[[str], None] | None = None) -> Path:
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

    Unlike ``eulc features``, this always computes (no resume log).
    """
    sp, sel = spec_and_selection(spec, features)
    man, _ = load_manifest(stack)
    return features_from_stack(stack, sp, sel, year, stack_features_path(Path(out_dir), man.name, year), on_feature)


def map_features(feature_cogs: Sequence[PathLike], out: PathLike, bundle: PathLike = "elc10-l1",
                 device: str = "auto", precision: str = "auto", probabilities: bool = False,
                 level2: PathLike | None = None, ood: bool = False) -> list[Path]:
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
    summary: MapSummary = run_map(None, resolve_bundle(bundle), Path(out),
                                  features_files=[Path(f) for f in feature_cogs], scheduler="sync",
                                  device=device, precision=precision, probabilities=probabilities,
                                  level2_dir=resolve_bundle(level2) if level2 else None, ood=ood)
    if summary.failures:
        raise EulcError("; ".join(f"{k}: {v}" for k, v in summary.failures.items()))
    return [Path(out) / f"{Path(f).stem}_class.tif" for f in feature_cogs]


def report(class_map: PathLike, reference: PathLike, crosswalk: str, out: PathLike,
           points: PathLike | None = None, bundle: PathLike | None = None, title: str | None = None,
           ood: PathLike | None = None) -> dict[str, Any]:
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

    Returns:
        ``metrics.json`` as a dict: ``overall_agreement`` (0–1), ``per_class`` (user's and
        producer's accuracy, F1), ``confusion`` (hectares), ``area_compared_ha``, ...

    Raises:
        EulcError: unknown reference codes, no overlap, an unknown crosswalk.
    """
    return write_report(Path(class_map), Path(reference), crosswalk, Path(out),
                        points=Path(points) if points else None,
                        bundle=resolve_bundle(bundle) if bundle else None, title=title,
                        ood=Path(ood) if ood else ood_beside(Path(class_map)))
