"""One call per stage for the CLI and the demo: a local stack → a feature COG."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.selection import FeatureSelection
from pipeline.spec import FeatureSpec
from tiles.featurecog import write_feature_cog
from tiles.features import compute_features_blocked, feature_inputs
from tiles.grid import GridWindow
from tiles.stack import load_manifest, load_stack, manifest_window


def features_from_stack(manifest: str | Path, spec: FeatureSpec, selection: FeatureSelection,
                        year: int, dest: Path,
                        on_feature: Callable[[str], None] | None = None) -> Path:
    """Compute the selected features of ``spec`` from a stack manifest and write a feature COG.

    Args:
        manifest: a shipped manifest name (``eolearn_slovenia``) or a YAML path.
        spec: the full spec; ``selection`` picks and orders its features.
        selection: the features to compute (a model's features).
        year: the map year.
        dest: the output COG path (EPSG:3035, 10 m, float32, band names = feature names).
        on_feature: progress callback per finished feature.

    Raises:
        RasterError: unreadable stack files, missing bands, no acquisitions in the window.
        SpecError: bad manifest or selection.
    """
    sub = spec.subset(selection.names)
    man, root = load_manifest(manifest)
    needed: set[str] = set()
    for f in sub.features:
        needed |= feature_inputs(sub, f, {*sub.indices})
        needed |= spec.inputs(f)
    window = manifest_window(man, root)
    values, stack = compute_features_blocked(sub, lambda w: load_stack(man, root, variables=needed, window=w),
                                             window, year, on_block=_progress(on_feature, sub))
    return write_feature_cog(dest, values, sub, window, year, stack.level, stack.sources)


def _progress(on_feature: Callable[[str], None] | None, sub: FeatureSpec) -> Callable[[int, int], None] | None:
    """Report every feature once, when the last block is done (the CLI's bar counts features)."""
    if on_feature is None:
        return None

    def on_block(done: int, total: int) -> None:
        if done == total:
            for f in sub.features:
                on_feature(f.name)

    return on_block


def features_from_stac(catalog: Path | tuple[str, str], spec: FeatureSpec, selection: FeatureSelection, year: int,
                       window: GridWindow, dest: Path, level: str = "L2A",
                       on_feature: Callable[[str], None] | None = None) -> Path:
    """Compute the selected features from STAC on one grid window and write a feature COG (the
    same file :func:`features_from_stack` and the GEE tile export produce).

    ``catalog`` is a static catalogue file, or ``(api_url, collection)`` for a STAC API search.

    Raises:
        RasterError: missing catalogue, no scene in the window/year, a band missing from the items.
        SpecError: bad selection.
    """
    from tiles.stac_load import items_from_api, items_from_catalog, load_stac_stack

    sub = spec.subset(selection.names)
    needed: set[str] = set()
    for f in sub.features:
        needed |= spec.inputs(f)
        if spec.sensors[f.sensor].scl_mask:  # the spec masks by Sen2Cor SCL: load it too
            needed.add("SCL")
    bands = sorted(needed)
    if isinstance(catalog, tuple):
        s2 = spec.sensors.get("s2")
        cloud = float(s2.scene_cloud_max_pct) if s2 is not None and s2.scene_cloud_max_pct is not None else 60.0
        items = items_from_api(catalog[0], catalog[1], window, year, cloud)
    else:
        items = items_from_catalog(catalog)
    values, stack = compute_features_blocked(sub, lambda w: load_stac_stack(items, w, bands, year=year, level=level),
                                             window, year, on_block=_progress(on_feature, sub))
    return write_feature_cog(dest, values, sub, window, year, stack.level, stack.sources)
