"""Feature COGs: write the local engine's output, and read one back in a bundle's band order.

A feature COG is EPSG:3035 on the 10 m grid, in the spec's ``export_dtype``: ``int16`` (the GEE
export's layout: the stored value physical × scale, rounded, nodata −32768, with GDAL band
scale metadata 1/scale so GIS tools show physical values) or ``float32`` (NaN = nodata; specs
whose stored values do not fit 16 bits, such as ``elc10``'s reflectance × 10⁷). int16 files are
DEFLATE with predictor 2 as GEE writes them; float32 files are ZSTD (level 9): against DEFLATE
0.64× the bytes and 0.59× the decode time for the 35 ELC10 bands of real rows (the map step reads
every band of every tile; ``benchmarks/bench_featurecog.py``, ``benchmarks/RESULTS.md``). Band names are the
spec's feature names, stored in the band descriptions **and** in the ``features`` tag
(DESIGN.md §2), with the spec name/hash, the year, the processing level and the sources.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from pipeline.core.cog import write_cog
from pipeline.core.contract import embed, features_digest
from pipeline.core.errors import EulcError, RasterError
from pipeline.core.grid import EEA_10M, Grid, GridWindow
from pipeline.core.spec import FeatureSpec


def write_feature_cog(
    dest: Path,
    values: np.ndarray,
    spec: FeatureSpec,
    window: GridWindow,
    year: int,
    level: str,
    sources: list[str],
    extra_tags: dict[str, str] | None = None,
    *,
    requested: FeatureSpec | None = None,
    spec_hash: str = "",
) -> Path:
    """Write features (F, H, W) float32 in spec units as a feature COG (atomic), in the spec's
    ``export_dtype`` (module docstring; int16 values beyond ±32767 saturate and are counted in the
    band tag ``clipped_pixels``).

    Args:
        dest: the output path.
        values: float32 (F, H, W), stored units (physical × scale), NaN = nodata.
        spec: the features **as computed** (cloud masks adapted to the inputs, the inputs'
            processing level): embedded as the ``feature_spec`` tag with its ``features_digest``
            (:mod:`pipeline.core.contract`), which the map step compares with the bundle's.
        window: the grid window (EPSG:3035, 10 m).
        year: the map year.
        level: the inputs' processing level (``L1C``/``L2A``).
        sources: the files or items read.
        extra_tags: more dataset tags (``cloud_mask``: what was masked).
        requested: the features as asked for (default ``spec``), recorded as the tag
            ``request_digest`` (the resume log of ``eulc features`` keys on the same digest).
        spec_hash: the full spec's digest (the ``spec_hash`` of selections, tables and bundles).

    Each band carries the tags ``scale``, ``stat``, ``sensor`` and ``nodata_pixels`` (pixels
    without a valid observation for that feature: NaN, never a silent zero).
    """
    nodata = np.isnan(values).reshape(len(spec.features), -1).sum(1)
    band_extra: list[dict[str, object]] = [{} for _ in spec.features]
    data: np.ndarray = values.astype(np.float32, copy=False)  # no second copy of the tile
    fill: float = np.nan
    scales = None
    if spec.export_dtype == "int16":
        finite = np.isfinite(values)
        over = (np.abs(values) > INT16_MAX) & finite
        for i, n in enumerate(over.reshape(len(spec.features), -1).sum(1)):
            if n:
                band_extra[i]["clipped_pixels"] = int(n)  # saturated, as Earth Engine's toInt16
        data = np.where(finite, np.rint(np.clip(values, -INT16_MAX, INT16_MAX)), NODATA_INT16).astype(np.int16)
        fill = NODATA_INT16
        scales = [1.0 / f.scale for f in spec.features]
    return write_cog(
        dest,
        data,
        window.transform,
        window.grid.crs,
        fill,
        scales=scales,
        descriptions=spec.names,
        tags={
            "features": spec.names,
            "spec": spec.name,
            "spec_hash": spec_hash or spec.digest(),
            "features_digest": features_digest(spec),
            "feature_spec": json.dumps(embed(spec)),
            "request_digest": features_digest(requested or spec),
            "year": str(year),
            "processing_level": level,
            "sources": sources,
            "units": "physical value x scale (see band tag 'scale')",
            **(extra_tags or {}),
        },
        band_tags=[
            {"scale": f.scale, "stat": f.stat, "sensor": f.sensor, "nodata_pixels": int(n), **x}
            for f, n, x in zip(spec.features, nodata, band_extra, strict=True)
        ],
        resampling="average",
        compress="DEFLATE" if spec.export_dtype == "int16" else "ZSTD",
    )


NODATA_INT16 = -32768
"""Nodata of int16 feature rasters (the GEE export's)."""
INT16_MAX = 32767


def check_replaceable(dest: Path) -> None:
    """Refuse to replace a file at ``dest`` that is not a feature COG eulc wrote.

    Raises:
        EulcError: ``dest`` exists and is not a raster with eulc's feature tags (a folder, another
            program's file): eulc never overwrites what it did not write.
    """
    if not dest.exists() and not dest.is_symlink():
        return
    try:
        with rasterio.open(dest) as src:
            ours = "features" in src.tags() and "spec" in src.tags()
    except rasterio.errors.RasterioIOError:
        ours = False
    if not ours or dest.is_symlink() or not dest.is_file():
        raise EulcError(
            "exists and was not written by `eulc features`",
            "Move it away or choose another `out`; eulc never overwrites files it did not write",
            path=dest,
        )


def sidecar_record(
    spec: FeatureSpec, year: int, dtype: str | None = None, nodata: float | None = NODATA_INT16
) -> dict[str, Any]:
    """The band sidecar (``bands.json``) an export writes beside feature files that carry no band
    names (Earth Engine and openEO GeoTIFFs): band names, stored scales, dtype, nodata and the
    feature contract (:mod:`pipeline.core.contract`), which ``eulc map`` compares with the bundle's.

    Args:
        spec: the features as exported (a selection's sub-spec), in band order.
        year: the feature year.
        dtype: the files' dtype (default the spec's ``export_dtype``).
        nodata: the files' nodata value (None: NaN or the file's own).
    """
    return {
        "spec": spec.name,
        "spec_hash": spec.digest(),
        "year": year,
        "bands": spec.names,
        "features_digest": features_digest(spec),
        "feature_spec": embed(spec),
        "scale": [f.scale for f in spec.features],
        "dtype": dtype or spec.export_dtype,
        "nodata": nodata,
        "units": "physical value x scale (see the spec)",
    }


def sidecar(path: Path) -> tuple[Path, dict[str, Any]] | None:
    """The band sidecar of a feature file: ``<file>.bands.json`` or ``bands.json`` beside it
    (written by ``eulc gee export-tiles``; GEE GeoTIFF exports carry no band names), or None.

    Raises:
        RasterError: the sidecar is not JSON.
    """
    for side in (path.with_name(path.stem + ".bands.json"), path.with_name("bands.json")):
        if side.is_file():
            try:
                return side, dict(json.loads(side.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, TypeError, ValueError) as e:
                raise RasterError(
                    f"the sidecar {side.name} is not a JSON object ({e})",
                    "Use the bands.json written by `eulc gee export-tiles`",
                    path=path,
                ) from None
    return None


def _sidecar_names(path: Path, count: int) -> list[str] | None:
    found = sidecar(path)
    if found:
        side, meta = found
        names = meta.get("bands", [])
        if len(names) != count:
            raise RasterError(
                f"the sidecar {side.name} names {len(names)} bands but the file has {count}",
                "Use the bands.json written with this export",
                path=path,
            )
        return [str(n) for n in names]
    return None


def feature_contract(tags: dict[str, str], path: Path) -> dict[str, Any] | None:
    """The feature contract a feature file carries: its tags (``eulc features``), else its
    sidecar (``eulc gee export-tiles``); None for a file of an earlier eulc without one.
    """
    if tags.get("feature_spec"):
        return {"feature_spec": tags["feature_spec"], "features_digest": tags.get("features_digest", "")}
    found = sidecar(path)
    if found and found[1].get("feature_spec"):
        return {"feature_spec": found[1]["feature_spec"], "features_digest": found[1].get("features_digest", "")}
    return None


def band_names(src: rasterio.DatasetReader, path: Path) -> list[str]:
    """Feature names of an open feature COG's bands: band descriptions, else the ``features``
    tag, else a ``bands.json`` sidecar.

    Raises:
        RasterError: some band has no name (the message names the file).
    """
    desc = list(src.descriptions)
    tags = src.tags()
    if not all(desc) and "features" in tags:
        desc = json.loads(tags["features"])
    if not all(desc):
        desc = _sidecar_names(path, src.count) or desc
    if not all(desc):
        raise RasterError(
            "has bands without names",
            "Write band descriptions (feature names) as `eulc features` does, or put the export's bands.json beside it",
            path=path,
        )
    return [str(d) for d in desc]


def dataset_window(path: Path, grid: Grid = EEA_10M) -> GridWindow:
    """A raster on the grid as a :class:`~pipeline.core.grid.GridWindow` (its transform and shape)."""
    with rasterio.open(path) as src:
        return GridWindow(grid, src.transform, src.height, src.width)
