"""One call per stage for the CLI and the demo: FeatureTable + selection → ModelBundle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from model.augment import PhysicalAugmentation
from model.bundle import check_bundle_dest, load_bundle, save_bundle, save_tree_bundle
from model.fused import FusedClassifier
from model.mlm import write_bundle_item
from model.ood import DEFAULT_K, OODReference, fit_ood, save_ood
from model.train import TrainConfig, TrainingData, split_rows, train_bridge, training_arrays
from model.trees import SPLIT_FIELDS, train_trees
from pipeline.core.bioregion import REGIONS
from pipeline.core.contract import compare_features, embed, features_digest
from pipeline.core.errors import BundleError, SchemaError
from pipeline.core.hashing import file_sha256
from pipeline.core.legend import Legend, legend_for
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import FeatureSpec
from pipeline.table import read_feature_table, table_spec


def train_from_table(
    table_path: Path,
    out_dir: Path,
    selection: FeatureSelection,
    cfg: TrainConfig,
    on_epoch: Callable[[int, float], None] | None = None,
    overwrite: bool = False,
    landscapes: int = DEFAULT_K,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train BRIDGE-LC on a FeatureTable file and write the bundle to ``out_dir``.

    Args:
        table_path: GeoParquet from ``eulc table``.
        out_dir: the bundle directory (replaced atomically).
        selection: the ordered features to train on.
        cfg: training settings (Level-1 or Level-2, epochs, ...).
        on_epoch: progress callback (epoch, mean loss).
        overwrite: replace an existing eulc bundle in ``out_dir`` (never other files).
        landscapes: K of the OOD reference fitted on the training rows and stored in the
            bundle (:mod:`model.ood`); 0 stores none.
        on_event: the schedule's cost, the teacher's and epochs' progress
            (:func:`model.train.train_bridge`) and the phases after training (``status``).

    Returns:
        The metrics stored in the bundle.

    Raises:
        SchemaError: the table lacks a selected feature or base column, or has too few rows.
        BundleError: ``out_dir`` holds files eulc did not write, or a bundle without ``overwrite``.
        ContractError: the selection's features mean something else than the table's columns
            (another spec version, scale, orbit, mask, ...).
    """
    data, legend, tspec, meta = _prepare(table_path, out_dir, selection, cfg.level, overwrite)
    aug = PhysicalAugmentation.from_spec(tspec, selection.names) if cfg.augment == "physical" else None
    res = train_bridge(data, len(legend), cfg, on_epoch, aug, on_event)
    if on_event is not None and landscapes > 0:
        on_event(
            "status",
            {
                "message": f"fitting the OOD reference (K-Means, K = {landscapes}) on "
                f"{len(res.train_rows):,} training rows"
            },
        )
    ood = (
        _fit_reference(
            res.model,
            res.normalizer,
            selection.names,
            tspec.subset(selection.names),
            data.take(res.train_rows),
            landscapes,
            cfg.seed,
        )
        if landscapes > 0
        else None
    )
    save_bundle(
        out_dir,
        res.model,
        res.normalizer,
        legend,
        selection.names,
        spec=_spec_record(tspec, meta, selection.names),
        train_config=cfg.model_dump(),
        train_config_hash=cfg.digest(),
        data_hash=file_sha256(table_path)[:16],
        metrics=res.metrics,
        overwrite=overwrite,
        ood=ood,
        describe=write_bundle_item,
    )
    return res.metrics


def _prepare(
    table_path: Path, out_dir: Path, selection: FeatureSelection, level: str, overwrite: bool
) -> tuple[TrainingData, Legend, FeatureSpec, dict[str, Any]]:
    """The checks and arrays every training shares: the destination (before any fit), the
    table's contract against the selection's, the rows, and at least two classes.
    """
    check_bundle_dest(out_dir, overwrite)  # before hours of training, not after
    table, meta = read_feature_table(table_path)
    tspec = table_spec(meta, f"table {table_path}")
    # the selection's features must mean what the table's columns hold (table -> train seam)
    compare_features(
        tspec, selection.feature_spec_obj(), selection.names, f"table {table_path}", "the feature selection"
    )
    data = training_arrays(table, selection.names, level)
    legend = legend_for(level)
    present = np.unique(data.y)
    if len(present) < 2:
        only = legend.names[int(present[0])] if len(present) else "none"
        raise SchemaError(
            f"its labelled rows hold {len(present)} {level} class ({only}): a classifier needs at least two",
            "Give a table with rows of several land-cover classes",
            path=table_path,
        )
    return data, legend, tspec, meta


def _spec_record(tspec: FeatureSpec, meta: dict[str, Any], names: list[str]) -> dict[str, Any]:
    return {
        "name": tspec.name,
        "hash": tspec.digest(),
        "table_spec_hash": str(meta.get("spec_hash", "")),
        "features_digest": features_digest(tspec, names),
        "feature_spec": embed(tspec, names),
    }


def train_trees_from_table(
    table_path: Path,
    out_dir: Path,
    selection: FeatureSelection,
    cfg: TrainConfig,
    setting: str = "paper",
    overwrite: bool = False,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train the XGBoost bundle (:mod:`model.trees`) on a FeatureTable file and write it to
    ``out_dir``, with the same checks, contract and records as :func:`train_from_table`.

    Args:
        table_path: GeoParquet from ``eulc table``.
        out_dir: the bundle directory (replaced atomically).
        selection: the ordered features.
        cfg: the split settings (the network's with the same seed: the same hold-out and
            untouched cells) and ``calibrate``.
        setting: a :data:`model.trees.SETTINGS` name.
        overwrite: replace an existing eulc bundle in ``out_dir``.
        on_event: ``status`` messages before each fit.

    Returns:
        The metrics stored in the bundle (:func:`model.trees.train_trees`).

    Raises:
        SchemaError, BundleError, ContractError: as :func:`train_from_table`; an unknown setting.
    """
    data, legend, tspec, meta = _prepare(table_path, out_dir, selection, cfg.level, overwrite)

    def status(message: str) -> None:
        if on_event is not None:
            on_event("status", {"message": message})

    res = train_trees(data, len(legend), cfg, setting, status)
    record = {k: v for k, v in cfg.model_dump().items() if k in SPLIT_FIELDS}
    save_tree_bundle(
        out_dir,
        res.trees,
        res.setting,
        res.params,
        legend,
        selection.names,
        spec=_spec_record(tspec, meta, selection.names),
        train_config=record,
        train_config_hash=TrainConfig(**record).digest(),
        data_hash=file_sha256(table_path)[:16],
        metrics=res.metrics,
        overwrite=overwrite,
        describe=write_bundle_item,
    )
    return res.metrics


def _fit_reference(
    net: Any, normalizer: Any, names: list[str], spec: Any, rows: TrainingData, k: int, seed: int
) -> OODReference:
    return fit_ood(
        FusedClassifier(net, normalizer),
        names,
        spec,
        rows.x,
        rows.lonlat,
        rows.y,
        rows.region,
        list(REGIONS),
        k=k,
        seed=seed,
    )


def fit_ood_for_bundle(bundle_dir: Path, table_path: Path, landscapes: int = DEFAULT_K) -> OODReference:
    """Add an OOD reference to an existing bundle (one trained without it), fitted on the very
    rows it was trained on: the table must be the one it was trained on (its hash is checked)
    and the training rows are re-drawn by :func:`model.train.split_rows` with the bundle's
    stored training settings. Writes ``ood.safetensors`` and ``ood.json`` into ``bundle_dir``
    (each atomically; the weights and ``bundle.json`` are not touched).

    Raises:
        BundleError: not a bundle, or the table is not its training table.
        SchemaError: the table lacks a feature of the bundle.
    """
    bundle = load_bundle(bundle_dir)
    recorded, actual = bundle.meta.get("data_hash", ""), file_sha256(table_path)[:16]
    if recorded != actual:
        raise BundleError(
            f"was trained on a table with hash {recorded!r}, and {table_path} has {actual!r}",
            "Give `table` the very table file `eulc train` read for this bundle",
            path=bundle_dir,
        )
    cfg = TrainConfig(**bundle.meta["train_config"])
    table, _ = read_feature_table(table_path)
    data = training_arrays(table, bundle.features, cfg.level)
    tr, _, _ = split_rows(data, cfg)
    net, norm = bundle.network()
    ref = _fit_reference(net, norm, bundle.features, bundle.feature_spec(), data.take(tr), landscapes, cfg.seed)
    ref.info["fitted_on"] = "the bundle's training rows, re-drawn from its table (eulc ood)"
    save_ood(Path(bundle_dir), ref, bundle.digest)
    write_bundle_item(Path(bundle_dir))  # the item lists the new OOD assets
    return ref
