"""The pretrained Level-1 bundles shipped in the repository's ``models/`` folder.

Each sub-folder is a ModelBundle (``weights.safetensors`` + ``bundle.json``) with a
``MODEL_CARD.md``; ``scripts/train_pretrained.py`` rebuilds them from the real ELC10 LUCAS 2018
table. The folder is found beside the installed package (editable install, as the README's) or
through ``EULC_MODELS``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pipeline.core.errors import BundleError

ENV_VAR = "EULC_MODELS"


def models_dir() -> Path:
    """``$EULC_MODELS`` or ``<repo>/models``."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "models"


def shipped_bundles(root: Path | None = None) -> dict[str, list[str]]:
    """Name → ordered feature names of every bundle under ``root`` (default :func:`models_dir`)."""
    root = root or models_dir()
    out: dict[str, list[str]] = {}
    for meta in sorted(root.glob("*/bundle.json")):
        try:
            out[meta.parent.name] = list(json.loads(meta.read_text(encoding="utf-8"))["features"])
        except (OSError, json.JSONDecodeError, KeyError) as e:
            raise BundleError(f"is not a readable bundle ({e})", "Restore models/ from git",
                              path=meta) from None
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
