"""The one table from request fields to the CLI's flags.

Below the front-ends, errors name what was wrong by the request field in backticks
(```tile_size` '10x' is not a size``); the Python API shows that as it is. The CLI prints
every error through :func:`to_flags`, which spells each field as the flag (or argument) a
user of ``eulc`` typed. ``tests/test_flags.py`` checks that every field named in a library
error is in this table and that every flag here is one of the CLI's.
"""

from __future__ import annotations

import re

FLAGS: dict[str, str] = {
    "accept": "--accept",
    "adapt_priors": "--adapt-priors",
    "allow_root": "--allow-root",
    "asset_root": "--asset-root",
    "bucket": "--bucket",
    "batch_size": "--batch-size",
    "bundle": "--bundle",
    "catalog": "--catalog",
    "class_map": "CLASS_MAP",
    "cloud_mask": "--cloud-mask",
    "collection": "--collection",
    "compress": "--compress",
    "crosswalk": "--crosswalk",
    "curve": "--curve",
    "dashboard": "--dashboard",
    "dem_collection": "--dem-collection",
    "ema": "--no-ema",
    "device": "--device",
    "epochs": "--epochs",
    "exports": "EXPORTS",
    "feature_files": "FEATURE_COGS",
    "features": "--features",
    "features_dir": "--features-dir",
    "files": "--files",
    "inner": "--inner",
    "k": "--k",
    "landscapes": "--landscapes",
    "landscapes_csv": "--landscapes-csv",
    "landscapes_png": "--landscapes-png",
    "level": "--level",
    "level2": "--level2",
    "lr": "--lr",
    "lucas": "--lucas",
    "map": "--map",
    "max_rows": "--max-rows",
    "method": "--method",
    "model": "--model",
    "mosaic": "--mosaic",
    "ood": "--ood",
    "ood_layer": "--ood-layer",
    "out": "--out",
    "overwrite": "--overwrite",
    "points": "--points",
    "precision": "--precision",
    "preset": "--preset",
    "previous": "--previous",
    "processing_level": "--processing-level",
    "project": "--project",
    "reference": "--reference",
    "s1_collection": "--s1-collection",
    "scenario": "--scenario",
    "scheduler": "--scheduler",
    "seeds": "--seeds",
    "shard_size": "--shard-size",
    "spec": "--spec",
    "stac": "--stac",
    "start": "--start",
    "table": "--table",
    "threads": "--threads",
    "tile_id": "--tile-id",
    "tile_size": "--tile-size",
    "test_fraction": "--test-fraction",
    "tiles": "--tiles",
    "train": "--train",
    "workers": "--workers",
    "xgboost_setting": "--xgboost-setting",
    "year": "--year",
    "zones": "--zones",
}
"""Request field → the CLI's flag (or argument metavar)."""

FIELD = re.compile(r"`([a-z][a-z0-9_]*)`")


def to_flags(message: str) -> str:
    """``message`` with every backticked request field spelt as the CLI's flag."""
    return FIELD.sub(lambda m: FLAGS.get(m.group(1), m.group(0)), message)
