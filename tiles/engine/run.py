"""One call per stage for the CLI and the demo: a local stack or STAC items → a feature COG."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core.atomic import remove_leftovers
from pipeline.core.cloud_mask import CloudMaskChoice, resolve_cloud_mask
from pipeline.core.errors import NoSceneError, RasterError
from pipeline.core.featurecog import check_replaceable, write_feature_cog
from pipeline.core.grid import GridWindow
from pipeline.core.names import safe_name
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import FeatureSpec
from tiles.engine.asset_reader import AssetReader
from tiles.engine.composite import OrderStats
from tiles.engine.features import compute_features_blocked, feature_inputs
from tiles.engine.stac_load import (
    DEM_ASSETS,
    DEM_VARIABLE,
    held_bytes,
    item_year,
    items_from_catalog,
    load_stac_stack,
)
from tiles.engine.stac_search import StacApi, search_items
from tiles.engine.stack import Stack, canonical_band, load_manifest, load_stack, manifest_variables, manifest_window

log = logging.getLogger(__name__)


def features_from_stack(
    manifest: str | Path,
    spec: FeatureSpec,
    selection: FeatureSelection,
    year: int,
    dest: Path,
    on_feature: Callable[[str], None] | None = None,
    cloud_mask: CloudMaskChoice = "auto",
    window: GridWindow | None = None,
    order_stats: OrderStats | None = None,
) -> Path:
    """Compute the selected features of ``spec`` from a stack manifest and write a feature COG.

    Args:
        manifest: a shipped manifest name (``eolearn_slovenia``) or a YAML path.
        spec: the full spec; ``selection`` picks and orders its features.
        selection: the features to compute (a model's features).
        year: the map year.
        dest: the output COG path (EPSG:3035, 10 m, float32, band names = feature names).
        on_feature: progress callback per finished feature.
        cloud_mask: ``auto`` (the spec's mask where the stack carries its layers, the rules of
            :mod:`pipeline.core.cloud_mask`) or ``none``; recorded in the COG.
        window: compute this grid window (an EEA cell; outside the stack's files = nodata);
            default: the window covering the stack's files.
        order_stats: how percentiles and medians are computed (default numpy; a torch one on a
            GPU gives the same values: :func:`tiles.engine.features.compute_features`).

    Raises:
        RasterError: unreadable stack files, missing bands, no acquisitions in the window, a
            spec masking by a layer the stack lacks (and no fallback).
        SpecError: bad manifest or selection.
    """
    sub = spec.subset(selection.names)
    check_replaceable(dest)
    remove_leftovers(dest.parent)  # temporaries of a killed earlier run
    man, root = load_manifest(manifest)
    compute_spec, mask_said = resolve_cloud_mask(sub, manifest_variables(man, root), cloud_mask)
    needed: set[str] = set()
    for f in sub.features:
        needed |= feature_inputs(sub, f, {*sub.indices})
        needed |= spec.inputs(f)
    window = window or manifest_window(man, root)
    values, stack = compute_features_blocked(
        compute_spec,
        lambda w: load_stack(man, root, variables=needed, window=w),
        window,
        year,
        on_block=_progress(on_feature, sub),
        order_stats=order_stats,
    )
    return write_feature_cog(
        dest,
        values,
        as_computed(compute_spec, stack.level),
        window,
        year,
        stack.level,
        stack.sources,
        {"cloud_mask": mask_said} if mask_said else None,
        requested=sub,
        spec_hash=spec.digest(),
    )


def stack_features_path(out_dir: Path, manifest_name: str, year: int, tile_id: str | None = None) -> Path:
    """Where the feature COG of a stack goes: ``out_dir/<name>_<year>.tif``, the name being
    ``tile_id`` or the manifest's own name, checked to stay inside ``out_dir``.

    Raises:
        EulcError: a name with ``/``, ``..`` or a reserved word (:func:`pipeline.core.names.safe_name`).
    """
    name = safe_name(tile_id, "`tile_id`") if tile_id else safe_name(manifest_name, "manifest name")
    return out_dir / f"{name}_{year}.tif"


def as_computed(spec: FeatureSpec, level: str) -> FeatureSpec:
    """``spec`` with its Sentinel-2 sensors' processing level set to the inputs' (``L1C``/``L2A``):
    the features as they were computed, for the feature COG's contract.
    """
    sensors = {k: (s.model_copy(update={"level": level}) if s.kind == "s2" else s) for k, s in spec.sensors.items()}
    return FeatureSpec.model_validate({**spec.model_dump(), "sensors": {k: s.model_dump() for k, s in sensors.items()}})


def _progress(on_feature: Callable[[str], None] | None, sub: FeatureSpec) -> Callable[[int, int], None] | None:
    """Report every feature once, when the last block is done (the CLI's bar counts features)."""
    if on_feature is None:
        return None

    def on_block(done: int, total: int) -> None:
        if done == total:
            for f in sub.features:
                on_feature(f.name)

    return on_block


def features_from_stac(
    source: Path | StacApi,
    spec: FeatureSpec,
    selection: FeatureSelection,
    year: int,
    window: GridWindow,
    dest: Path,
    level: str = "L2A",
    cloud_mask: CloudMaskChoice = "auto",
    on_feature: Callable[[str], None] | None = None,
    block_rows: int | None = None,
    allow_roots: tuple[Path, ...] = (),
    order_stats: OrderStats | None = None,
) -> Path:
    """Compute the selected features from STAC on one grid window and write a feature COG (the
    same file :func:`features_from_stack` and the GEE tile export produce).

    Args:
        source: a static catalogue file (each sensor's features read the items that carry its
            assets), or a :class:`~tiles.engine.stac_search.StacApi` (one search per sensor kind). An
            asset named as a spec index (``ndvi``, unitless, as stored) replaces its bands, and
            a ``CLP`` asset (s2cloudless probability, percent) is the spec's probability mask.
        spec: the full spec; ``selection`` picks and orders its features.
        selection: the features to compute.
        year: the map year.
        window: the tile (EPSG:3035, 10 m).
        dest: the output COG path.
        level: S2 processing level, ``L2A`` (harmonization offset) or ``L1C``.
        cloud_mask: ``auto`` or ``none`` (see :mod:`pipeline.core.cloud_mask`); what was applied goes
            into the COG's ``cloud_mask`` tag.
        on_feature: progress callback per finished feature.
        block_rows: rows computed at a time; default :func:`block_rows_for` the tile's source
            slices (a block's stack ≈ slices × (rows + 2·halo) × width × 4 bytes; ``window.height``
            = the whole tile at once).
        allow_roots: folders besides a static catalogue's own tree its assets may lie in.
        order_stats: as for :func:`features_from_stack`.

    Raises:
        RasterError: missing catalogue, no scene in the window/year, a band missing from the
            items, no cloud mask in the items, an S1 GRD collection, LST features (no public STAC
            collection carries MOD21C3).
        SpecError: bad selection.
    """
    sub = spec.subset(selection.names)
    check_replaceable(dest)
    remove_leftovers(dest.parent)  # temporaries of a killed earlier run
    kinds: dict[str, list[Any]] = {}  # sensor kind → its features
    for f in sub.features:
        kind = spec.sensors[f.sensor].kind
        if kind == "lst":
            raise RasterError(
                f"feature {f.name!r} needs MODIS MOD21C3 LST, which no public STAC collection carries",
                "Give LST rasters in a stack manifest (`files`), or select features without LST",
            )
        kinds.setdefault(kind, []).append(f)

    def assets(items: list[Any]) -> set[str]:
        return {canonical_band(k) for it in items for k in it.assets}

    def inputs(k: str, have: set[str]) -> set[str]:  # a precomputed index asset (ndvi) replaces its bands
        return {DEM_VARIABLE} if k == "dem" else set().union(*(feature_inputs(sub, f, have) for f in kinds[k]))

    per_kind: dict[str, list[Any]] = {}
    if isinstance(source, StacApi):
        s2 = next((s for s in sub.sensors.values() if s.kind == "s2"), None)
        for k in kinds:
            cloud = s2.scene_cloud_max_pct if k == "s2" and s2 is not None else None
            per_kind[k] = search_items(source, k, window, year, cloud)
            log.info("%s: %d %s item(s) from %s", dest.name, len(per_kind[k]), k, source.url)
            if not per_kind[k]:
                raise NoSceneError(
                    f"no scene in the window {tuple(round(v) for v in window.bounds)} (EPSG:3035)"
                    f"{'' if k == 'dem' else f' in {year}'} in the collection "
                    f"{source.collections[k]!r} of {source.url}"
                    + (f" with less than {cloud:g} % cloud cover" if cloud is not None else ""),
                    "Check the tile, the year and the collection",
                )
    else:
        items = items_from_catalog(source, allow_roots)
        have = assets(items)
        for k in kinds:
            want = inputs(k, have)
            per_kind[k] = [it for it in items if _carries(it, want, k)] or items
    needed = {k: inputs(k, assets(per_kind[k])) for k in kinds}
    s2_assets = assets(per_kind.get("s2", []))
    compute_spec, mask_said = resolve_cloud_mask(sub, s2_assets, cloud_mask)
    if "s2" in needed:  # the mask layers the (adapted) spec uses
        s2s = [s for s in compute_spec.sensors.values() if s.kind == "s2"]
        needed["s2"] |= {
            m
            for m, used in (("SCL", any(s.scl_mask for s in s2s)), ("CLP", any(s.cloud_probability for s in s2s)))
            if used
        }

    reader = AssetReader()  # the tile's datasets stay open across its blocks

    def load(w: GridWindow) -> Stack:
        stacks = {
            k: load_stac_stack(
                per_kind[k],
                w,
                sorted(bands),
                year=None if k == "dem" else year,
                level={"s2": level, "s1": "GRD", "dem": "DEM"}[k],
                kind=k,
                as_stored=set(sub.indices),
                reader=reader,
                encoded=True,  # uint16 DN and uint8 masks held as stored: the block's memory halves
            )
            for k, bands in needed.items()
        }
        merged = {name: val for st in stacks.values() for name, val in st.variables.items()}
        first = stacks.get("s2") or next(iter(stacks.values()))
        return Stack(
            w,
            merged,
            first.level,
            [src for st in stacks.values() for src in st.sources],
            {name: o for st in stacks.values() for name, o in st.orbits.items()},
            {name: e for st in stacks.values() for name, e in st.encodings.items()},
        )

    with reader:
        if block_rows is None:  # the bytes a pixel of a block holds: dates × bands, as held
            px_bytes = sum(
                held_bytes(per_kind[k], sorted(needed[k]), k, reader)
                * (len(per_kind[k]) if k == "dem" else sum(item_year(it) == year for it in per_kind[k]))
                for k in needed
            )
            block_rows = block_rows_for(px_bytes, window.width)
        values, stack = compute_features_blocked(
            compute_spec,
            load,
            window,
            year,
            block_rows=block_rows,
            on_block=_progress(on_feature, sub),
            order_stats=order_stats,
        )
    return write_feature_cog(
        dest,
        values,
        as_computed(compute_spec, stack.level),
        window,
        year,
        stack.level,
        stack.sources,
        extra_tags={"cloud_mask": mask_said} if mask_said else None,
        requested=sub,
        spec_hash=spec.digest(),
    )


def _carries(item: Any, bands: set[str], kind: str) -> bool:
    """Whether a STAC item has an asset for every band (DEM: any of the DEM asset keys)."""
    keys = {canonical_band(k) for k in getattr(item, "assets", {})}
    if kind == "dem":
        return bool(keys & set(DEM_ASSETS))
    return bands <= keys


BLOCK_STACK_BYTES = 512 * 2**20
"""What one row block's stack of source slices may hold: with the series chunks, the sorts and the
feature arrays, a 10 km tile stays under 2 GB of RSS (``benchmarks/RESULTS.md``)."""
MAX_BLOCK_ROWS = 256
MIN_BLOCK_ROWS = 16


def block_rows_for(px_bytes: int, width: int) -> int:
    """Rows per block when a pixel's source slices (dates × bands) take ``px_bytes`` bytes
    (:func:`tiles.engine.stac_load.held_bytes`: 2 for a uint16 band, 4 for float32) over
    ``width`` pixels: as many as :data:`BLOCK_STACK_BYTES` holds, between :data:`MIN_BLOCK_ROWS`
    and :data:`MAX_BLOCK_ROWS` (a 10 km tile: 256 for the 10 NDVI features of 70 dates and for
    the 35 of ``elc10-l1`` with 60 Sentinel-1 dates, 1,810 bytes a pixel).
    """
    rows = BLOCK_STACK_BYTES // max(1, px_bytes * width)
    return int(min(MAX_BLOCK_ROWS, max(MIN_BLOCK_ROWS, rows)))
