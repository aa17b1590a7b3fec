"""One call per stage for the CLI and the demo: FeatureTable + selection → ModelBundle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from model.augment import PhysicalAugmentation
from model.bundle import check_bundle_dest, save_bundle
from model.train import TrainConfig, train_bridge, training_arrays
from pipeline.core.contract import compare_features, embed, features_digest
from pipeline.core.hashing import file_sha256
from pipeline.core.legend import legend_for
from pipeline.core.selection import FeatureSelection
from pipeline.table import read_feature_table, table_spec


def train_from_table(table_path: Path, out_dir: Path, selection: FeatureSelection,
                     cfg: TrainConfig, on_epoch: Callable[[int, float], None] | None = None,
                     overwrite: bool = False) -> dict[str, Any]:
    """Train BRIDGE-LC on a FeatureTable file and write the bundle to ``out_dir``.

    Args:
        table_path: GeoParquet from ``eulc table``.
        out_dir: the bundle directory (replaced atomically).
        selection: the ordered features to train on.
        cfg: training settings (Level-1 or Level-2, epochs, ...).
        on_epoch: progress callback (epoch, mean loss).
        overwrite: replace an existing eulc bundle in ``out_dir`` (never other files).

    Returns:
        The metrics stored in the bundle.

    Raises:
        SchemaError: the table lacks a selected feature or base column, or has too few rows.
        BundleError: ``out_dir`` holds files eulc did not write, or a bundle without ``overwrite``.
        ContractError: the selection's features mean something else than the table's columns
            (another spec version, scale, orbit, mask, ...).
    """
    check_bundle_dest(out_dir, overwrite)  # before hours of training, not after
    table, meta = read_feature_table(table_path)
    tspec = table_spec(meta, f"table {table_path}")
    # the selection's features must mean what the table's columns hold (table -> train seam)
    compare_features(tspec, selection.feature_spec_obj(), selection.names, f"table {table_path}",
                     "the feature selection")
    data = training_arrays(table, selection.names, cfg.level)
    legend = legend_for(cfg.level)
    aug = PhysicalAugmentation.from_spec(tspec, selection.names) if cfg.augment == "physical" else None
    res = train_bridge(data, len(legend), cfg, on_epoch, aug)
    save_bundle(out_dir, res.model, res.normalizer, legend, selection.names,
                spec={"name": tspec.name, "hash": tspec.digest(), "table_spec_hash": str(meta.get("spec_hash", "")),
                      "features_digest": features_digest(tspec, selection.names),
                      "feature_spec": embed(tspec, selection.names)},
                train_config=cfg.model_dump(), train_config_hash=cfg.digest(),
                data_hash=file_sha256(table_path)[:16], metrics=res.metrics, overwrite=overwrite)
    return res.metrics
