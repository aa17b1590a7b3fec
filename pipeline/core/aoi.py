"""Tiles of the EEA reference grid for an area of interest (AOI).

An AOI is a vector file (GeoJSON, GeoPackage, Shapefile; any CRS), a lon/lat bounding box
(EPSG:4326, ``west,south,east,north``) or a list of cell codes. Cells are those of
:class:`pipeline.core.grid.TileId` whose square *intersects the interior* of the AOI in EPSG:3035, so
a bbox that ends exactly on a cell edge does not pull in the next row of cells.
"""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import shapely
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from pipeline.core.errors import EulcError, RasterError
from pipeline.core.grid import TileId

VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb", ".parquet")


def tiles_for_bounds_3035(bounds_m: tuple[float, float, float, float], size_m: int) -> list[TileId]:
    """Every cell of ``size_m`` whose square overlaps the EPSG:3035 rectangle (area > 0).

    Args:
        bounds_m: (left, bottom, right, top) in EPSG:3035 metres.
        size_m: cell size in metres (10,000 for the 10 km grid).

    Returns:
        Cells sorted by northing then easting (south-west first).

    Raises:
        RasterError: an empty or inverted rectangle.
    """
    left, bottom, right, top = bounds_m
    if not (right > left and top > bottom):
        raise RasterError(
            f"the area {bounds_m} is empty or inverted",
            "Give (left, bottom, right, top) with right > left and top > bottom",
        )
    e0, e1 = math.floor(left / size_m), math.ceil(right / size_m)
    n0, n1 = math.floor(bottom / size_m), math.ceil(top / size_m)
    return [TileId(size_m, e, n) for n in range(n0, n1) for e in range(e0, e1)]


MAX_CELLS = 1_000_000
"""Most cells one ``tiles`` value may span (its bounding box), checked before they are listed:
Europe's EEA extent at 10 km is about 4 × 10⁵; at 100 m it would be 2 × 10⁹."""


def tiles_for_geometry(geom_3035: BaseGeometry, size_m: int) -> list[TileId]:
    """Cells of ``size_m`` whose square intersects the geometry's interior (EPSG:3035 metres).

    Points and lines select the cells they touch. Sorted south-west first.

    Raises:
        RasterError: an empty geometry.
    """
    if geom_3035.is_empty:
        raise RasterError("the area of interest is empty", "Give a non-empty polygon, bbox or cell list")
    left, bottom, right, top = _padded(geom_3035.bounds)
    n = (math.floor(right / size_m) - math.floor(left / size_m) + 1) * (
        math.floor(top / size_m) - math.floor(bottom / size_m) + 1
    )
    if n > MAX_CELLS:
        raise RasterError(
            f"`tiles` spans about {n:,} cells of {size_m:,} m, more than {MAX_CELLS:,} in one run",
            "Use a larger `tile_size` (e.g. 10km) or split the area into several runs",
        )
    candidates = tiles_for_bounds_3035((left, bottom, right, top), size_m)
    boxes = [box(*t.bounds) for t in candidates]
    if geom_3035.area > 0:
        keep = [b.intersection(geom_3035).area > 0 for b in boxes]
    else:
        keep = [bool(shapely.intersects(b, geom_3035)) for b in boxes]
    return [t for t, k in zip(candidates, keep, strict=True) if k]


def _padded(b: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    left, bottom, right, top = b
    return (left, bottom, max(right, left + 1e-6), max(top, bottom + 1e-6))


def read_aoi(path: Path) -> BaseGeometry:
    """The union of a vector file's geometries, reprojected to EPSG:3035.

    Raises:
        RasterError: unreadable file, no features, or no CRS (the message names the file).
    """
    try:
        gdf = gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path)
    except Exception as e:  # noqa: BLE001 - pyogrio/fiona raise many types
        raise RasterError(
            f"cannot be read as a vector file ({e})", "Give a GeoJSON, GeoPackage or Shapefile", path=path
        ) from None
    if gdf.empty:
        raise RasterError("has no features", "Give a file with at least one polygon", path=path)
    if gdf.crs is None:
        raise RasterError("has no CRS", "Set one (GeoJSON is EPSG:4326 by definition)", path=path)
    return shapely.union_all(gdf.to_crs("EPSG:3035").geometry.values)


def bbox_lonlat_to_3035(bbox: tuple[float, float, float, float]) -> BaseGeometry:
    """A lon/lat bbox (EPSG:4326: west, south, east, north, degrees) as an EPSG:3035 polygon
    (edges densified, so the curved outline is followed).

    Raises:
        RasterError: out-of-range or inverted coordinates.
    """
    w, s, e, n = bbox
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise RasterError(
            f"the bbox {bbox} is not west,south,east,north in degrees",
            "Write it as lon/lat, e.g. `tiles` bbox:14.5,46.0,14.6,46.1",
        )
    poly = shapely.segmentize(box(w, s, e, n), 0.01)
    return gpd.GeoSeries([poly], crs="EPSG:4326").to_crs("EPSG:3035").iloc[0]


def parse_tiles(text: str, size_m: int = 10_000) -> list[TileId]:
    """Tiles from the CLI's ``--tiles`` value.

    Accepted forms:
        - a vector file path (``.geojson``, ``.gpkg``, ...): the cells of ``size_m`` over it;
        - ``bbox:W,S,E,N`` in EPSG:4326 degrees (lon first);
        - a text file with one cell code per line (``#`` comments);
        - cell codes separated by commas (their own sizes; ``size_m`` is ignored).

    Returns:
        Unique cells in a stable order (the order given, or south-west first).

    Raises:
        RasterError: a bad code, bbox or file (the message says which and how to fix it).
    """
    text = text.strip()
    path = Path(text)
    if text.lower().startswith("bbox:"):
        try:
            vals = tuple(float(v) for v in text[5:].split(","))
        except ValueError:
            vals = ()
        if len(vals) != 4:
            raise RasterError(
                f"`tiles` {text!r}: a bbox needs four numbers",
                "Write bbox:W,S,E,N in degrees, e.g. bbox:14.5,46.0,14.6,46.1",
            )
        return tiles_for_geometry(bbox_lonlat_to_3035(vals), size_m)
    if path.suffix.lower() in VECTOR_SUFFIXES:
        if not path.is_file():
            raise RasterError("does not exist", "Check the `tiles` path", path=path)
        return tiles_for_geometry(read_aoi(path), size_m)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise RasterError("does not exist", "Check the `tiles` path", path=path)
        codes = [ln.split("#")[0].strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    else:
        codes = [c.strip() for c in text.split(",")]
    try:
        out = [TileId.parse(c) for c in codes if c]
    except EulcError as e:  # the code's own message, with the parameter it came from
        raise RasterError(f"`tiles`: {e.what}", e.fix, path=e.path) from None
    if not out:
        raise RasterError(f"`tiles` {text!r} names no cells", "Give cell codes, a bbox or a vector file")
    return list(dict.fromkeys(out))


def parse_tile_size(text: str) -> int:
    """A cell size such as ``10km`` or ``250m`` → metres (a whole number of 10 m pixels, ≥ 100 m).

    Raises:
        EulcError: naming ``tile_size``: not a size, or not an EEA grid cell size.
    """
    t = text.strip().lower()
    try:
        size = int(float(t[:-2]) * 1000) if t.endswith("km") else int(t.removesuffix("m"))
    except ValueError:
        raise EulcError(f"`tile_size` {text!r} is not a size", "Write the cell size like 10km or 250m") from None
    if size < 100 or size % 10:
        raise EulcError(
            f"`tile_size` {text!r} is not an EEA grid cell size",
            "Use a whole number of 10 m pixels from 100m up, e.g. 100km, 10km, 1km or 250m",
        )
    return size
