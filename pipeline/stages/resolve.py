"""What a ``--bundle`` or ``--features`` value names, for the CLI and the Python API alike:
a bundle folder or shipped bundle name, a selection JSON, or comma-separated feature names.
"""

from __future__ import annotations

from pathlib import Path

from model.bundle import load_bundle_cached
from pipeline.core.selection import FeatureSelection, parse_selection, resolve_selection
from pipeline.core.spec import FeatureSpec, load_spec
from pipeline.stages.pretrained import resolve_bundle


def bundle_features(value: str | None) -> Path | None:
    """The bundle folder a ``--features`` value names (a folder or a shipped name), else None."""
    if not value or "," in value or value.endswith(".json"):
        return None
    path = resolve_bundle(value)
    return path if path.is_dir() else None


def spec_and_selection(
    spec: str | None, features: str | None, default_spec: str = "elc10"
) -> tuple[FeatureSpec, FeatureSelection]:
    """``--spec``/``--features`` → (spec, selection); a selection JSON or a bundle brings its own spec.

    Raises:
        SpecError: an unknown spec or feature name, an unreadable selection.
        BundleError: a bundle that does not load.
        ContractError: ``spec`` computes a selected feature differently from the selection or bundle.
    """
    folder = bundle_features(features)
    if folder is not None:
        b = load_bundle_cached(folder)
        sp = b.feature_spec()
        sel = FeatureSelection.of(sp, b.features, "bundle")
        if spec:
            sel.check_against(load_spec(spec), f"bundle {features}")
        return sp, sel
    return resolve_selection(spec, features, default_spec)


def table_selection(spec: FeatureSpec, features: str | None) -> FeatureSelection:
    """``--features`` of the commands that read a FeatureTable: a selection JSON, a bundle's
    features (checked against the table's spec) or names of ``spec``.
    """
    folder = bundle_features(features)
    if folder is None:
        return parse_selection(spec, features)
    b = load_bundle_cached(folder)
    sel = FeatureSelection.of(b.feature_spec(), b.features, "bundle")
    sel.check_against(spec, f"bundle {features}")
    return sel
