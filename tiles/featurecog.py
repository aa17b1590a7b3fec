"""Feature COGs: write the local engine's output, and read one back in a bundle's band order.

A feature COG is float32, EPSG:3035 on the 10 m grid, NaN = nodata. Band names are the
spec's feature names, stored in the band descriptions **and** in the ``features`` tag
(DESIGN.md §2), with the spec name/hash, the year, the processing level and the sources.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from pipeline.errors import RasterError
from pipeline.spec import FeatureSpec
from tiles.cog import write_cog
from tiles.grid import EEA_10M, Grid, GridWindow


def write_feature_cog(dest: Path, values: np.ndarray, spec: FeatureSpec, window: GridWindow,
                      year: int, level: str, sources: list[str],
                      extra_tags: dict[str, str] | None = None) -> Path:
    """Write features (F, H, W) float32 in spec units as a feature COG (atomic).

    Each band carries the tags ``scale``, ``stat``, ``sensor`` and ``nodata_pixels`` (pixels
    without a valid observation for that feature: NaN, never a silent zero). ``extra_tags``
    (e.g. ``cloud_mask``: what the local engine masked) are added to the dataset tags.
    """
    nodata = np.isnan(values).reshape(len(spec.features), -1).sum(1)
    return write_cog(
        dest, values.astype(np.float32), window.transform, window.grid.crs, np.nan,
        descriptions=spec.names,
        tags={"features": spec.names, "spec": spec.name, "spec_hash": spec.digest(),
              "year": str(year), "processing_level": level, "sources": sources,
              "units": "physical value x scale (see band tag 'scale')", **(extra_tags or {})},
        band_tags=[{"scale": f.scale, "stat": f.stat, "sensor": f.sensor, "nodata_pixels": int(n)}
                   for f, n in zip(spec.features, nodata, strict=True)],
        resampling="average",
    )


def is_up_to_date(path: Path, spec: FeatureSpec, year: int, cloud_mask: str | None = None) -> bool:
    """Whether ``path`` is a feature COG written for exactly these features, spec and year (a
    rerun skips it): its tags ``features``, ``spec_hash`` and ``year`` match, and, when
    ``cloud_mask`` is ``none``/``auto``, whether it was computed without/with a cloud mask.
    An unreadable file is not up to date (it is recomputed and replaced atomically).
    """
    try:
        with rasterio.open(path) as src:
            tags = src.tags()
    except rasterio.errors.RasterioIOError:
        return False
    same = (tags.get("features") == json.dumps(spec.names) and tags.get("spec_hash") == spec.digest()
            and tags.get("year") == str(year))
    if same and cloud_mask is not None:
        same = ("--cloud-mask none" in tags.get("cloud_mask", "")) == (cloud_mask == "none")
    return same


def _sidecar_names(path: Path, count: int) -> list[str] | None:
    """Band names from a sidecar: ``<file>.bands.json`` or ``bands.json`` beside the file
    (written by ``eulc gee export-tiles``; GEE GeoTIFF exports carry no band names).
    """
    for side in (path.with_name(path.stem + ".bands.json"), path.with_name("bands.json")):
        if side.is_file():
            names = json.loads(side.read_text(encoding="utf-8")).get("bands", [])
            if len(names) != count:
                raise RasterError(f"the sidecar {side.name} names {len(names)} bands but the file has {count}",
                                  "Use the bands.json written with this export", path=path)
            return [str(n) for n in names]
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
        raise RasterError("has bands without names", "Write band descriptions (feature names) as "
                          "`eulc features` does, or put the export's bands.json beside it", path=path)
    return [str(d) for d in desc]


def read_feature_cog(path: Path, names: list[str]
                     ) -> tuple[np.ndarray, Affine, str, dict[str, str]]:
    """Read the bands ``names`` of a feature COG, in that order (the whole file).

    Args:
        path: the feature COG (EPSG:3035, 10 m grid).
        names: the feature names the model needs (its order is the output's).

    Returns:
        ``(values float32 (len(names), H, W) with NaN = nodata, transform, crs, tags)``.

    Raises:
        RasterError: unreadable/corrupt/truncated file, off-grid pixels, no band names, or a
            needed band missing (see :class:`tiles.reader.FeatureReader`).
    """
    from tiles.reader import FeatureReader

    with FeatureReader(path, names) as r:
        return r.read(), r.window.transform, r.window.grid.crs, r.tags


def dataset_window(path: Path, grid: Grid = EEA_10M) -> GridWindow:
    """A raster on the grid as a :class:`~tiles.grid.GridWindow` (its transform and shape)."""
    with rasterio.open(path) as src:
        return GridWindow(grid, src.transform, src.height, src.width)
