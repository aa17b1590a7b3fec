"""The pretrained bundles shipped as package data in ``pipeline/bundles/`` (the repository's
``models/`` is a link to it, so ``--bundle models/elc10-l1`` works in a clone).

Each sub-folder is a ModelBundle (``weights.safetensors`` + ``bundle.json``) with a
``MODEL_CARD.md``; ``scripts/train_pretrained.py`` rebuilds them from the real ELC10 LUCAS 2018
table. ``EULC_MODELS`` names another folder.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from pipeline.core.errors import BundleError

ENV_VAR = "EULC_MODELS"


def models_dir() -> Path:
    """``$EULC_MODELS``, or the bundles installed with the package (``pipeline/bundles``)."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path(str(resources.files("pipeline") / "bundles"))


def resolve_bundle(value: Path | str) -> Path:
    """A ``--bundle`` value → its folder: an existing path as given, else the shipped (or
    ``$EULC_MODELS``) bundle of that name, so ``--bundle elc10-l1`` works from any folder.

    A value that is neither is returned unchanged, for the bundle loader to name in its error.
    """
    path = Path(value)
    if path.exists() or len(path.parts) != 1:
        return path
    shipped = models_dir() / path.name
    return shipped if (shipped / "bundle.json").is_file() else path


def shipped_bundles(root: Path | None = None) -> dict[str, list[str]]:
    """Name → ordered feature names of every bundle under ``root`` (default :func:`models_dir`)."""
    root = root or models_dir()
    out: dict[str, list[str]] = {}
    for meta in sorted(root.glob("*/bundle.json")):
        try:
            out[meta.parent.name] = list(json.loads(meta.read_text(encoding="utf-8"))["features"])
        except (OSError, json.JSONDecodeError, KeyError) as e:
            raise BundleError(f"is not a readable bundle ({e})", "Restore models/ from git", path=meta) from None
    return out


def pick_bundle(available: list[str], level: str = "level1", root: Path | None = None) -> Path | None:
    """The shipped bundle that uses the most features, all of them in ``available`` (e.g. the
    features a local stack can compute); None when no bundle fits.

    Args:
        available: feature names that can be computed.
        level: ``level1`` or ``level2`` (the bundle's legend).
        root: bundles folder (default :func:`models_dir`).
    """
    root = root or models_dir()
    have = set(available)
    best: tuple[int, str] | None = None
    for name, feats in shipped_bundles(root).items():
        meta = json.loads((root / name / "bundle.json").read_text(encoding="utf-8"))
        if meta["legend"]["level"] != level or not set(feats) <= have:
            continue
        if best is None or len(feats) > best[0]:
            best = (len(feats), name)
    return root / best[1] if best else None
