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
    from pipeline.errors import RasterError
    from tiles.stac_load import items_from_api, items_from_catalog, load_stac_stack

    sub = spec.subset(selection.names)
    needed: dict[str, set[str]] = {}  # sensor kind → bands
    for f in sub.features:
        kind = spec.sensors[f.sensor].kind
        if kind not in ("s2", "s1"):
            raise RasterError(f"feature {f.name!r} needs {kind.upper()} data, which the STAC path does not load yet",
                              "Select S2/S1 features, or use a local stack manifest for LST and DEM")
        needed.setdefault(kind, set()).update(spec.inputs(f))
        if spec.sensors[f.sensor].scl_mask:  # the spec masks by Sen2Cor SCL: load it too
            needed[kind].add("SCL")
    if isinstance(catalog, tuple):
        if "s1" in needed:
            raise RasterError("Sentinel-1 from a STAC API search is not supported yet",
                              "Put the S1 items in a static catalogue (--catalog), or select S2 features")
        s2 = spec.sensors.get("s2")
        cloud = float(s2.scene_cloud_max_pct) if s2 is not None and s2.scene_cloud_max_pct is not None else 60.0
        items = items_from_api(catalog[0], catalog[1], window, year, cloud)
    else:
        items = items_from_catalog(catalog)
    from tiles.stack import Stack, canonical_band

    def has(it: object, bands: set[str]) -> bool:
        keys = {canonical_band(k) for k in getattr(it, "assets", {})}
        return bands <= keys

    per_kind = {k: ([it for it in items if has(it, {canonical_band(b) for b in v})] or items, sorted(v))
                for k, v in needed.items()}

    def load(w: GridWindow) -> Stack:
        stacks = [load_stac_stack(its, w, bands, year=year, level=level if k == "s2" else "GRD", kind=k)
                  for k, (its, bands) in per_kind.items()]
        merged = {name: val for st in stacks for name, val in st.variables.items()}
        return Stack(w, merged, stacks[0].level, [src for st in stacks for src in st.sources])

    values, stack = compute_features_blocked(sub, load,
                                             window, year, on_block=_progress(on_feature, sub))
    return write_feature_cog(dest, values, sub, window, year, stack.level, stack.sources)
