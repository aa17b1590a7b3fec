"""The EEA reference grid: EPSG:3035 (ETRS89-LAEA), 10 m pixels, origin (0, 0).

Pixel edges fall on multiples of the resolution, so every raster eulc writes for an area
lines up with every other one and with the EEA 10 km / 100 km cells (odc-geo ``GeoBox``
style: the grid is explicit and frozen, never guessed from data; DESIGN.md §4).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from rasterio.errors import CRSError as RioCRSError
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

from pipeline.core.eea import cell_code
from pipeline.core.errors import RasterError


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid.

    Attributes:
        crs: the grid CRS (EEA: ``EPSG:3035``).
        res_m: pixel size in metres (10).
        origin_x_m, origin_y_m: a pixel corner of the grid, metres (EEA: 0, 0).
        tile_m: the tile (cell) size in metres: 10,000 for the 10 km tiles eulc maps by
            default, 100,000 for the 100 km cells.
    """

    crs: str = "EPSG:3035"
    res_m: float = 10.0
    origin_x_m: float = 0.0
    origin_y_m: float = 0.0
    tile_m: int = 10_000

    def tile_at(self, x_m: float, y_m: float) -> TileId:
        """The tile of this grid holding the point (x, y) in the grid CRS (metres)."""
        return TileId.containing(x_m, y_m, self.tile_m)


EEA_10M = Grid()
"""The EEA reference grid at 10 m with 10 km tiles."""
EEA_10M_100KM = Grid(tile_m=100_000)
"""The same pixels with 100 km tiles."""


@dataclass(frozen=True)
class GridWindow:
    """A rectangle of grid pixels: its transform, (height, width) and CRS."""

    grid: Grid
    transform: Affine
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return (self.height, self.width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in grid CRS metres."""
        left, top = self.transform.c, self.transform.f
        return (left, top - self.height * self.grid.res_m, left + self.width * self.grid.res_m, top)

    def pixel_centres_lonlat(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre lon and lat in degrees (EPSG:4326), each float64 (height, width)."""
        return pixel_centres_lonlat(self.transform, self.height, self.width, self.grid.crs)


def pixel_centres_lonlat(transform: Affine, height: int, width: int, crs: str) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre lon and lat in degrees (EPSG:4326, pyproj ``always_xy=True``) of a raster.

    Args:
        transform: the raster's affine transform in ``crs`` units.
        height, width: the raster shape in pixels.
        crs: the raster CRS (e.g. ``EPSG:3035``).

    Returns:
        ``(lon, lat)``, each float64 (height, width).
    """
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    xs = transform.c + transform.a * cols + transform.b * rows
    ys = transform.f + transform.d * cols + transform.e * rows
    lon, lat = _to_lonlat(str(crs)).transform(xs, ys)
    return np.asarray(lon), np.asarray(lat)


@functools.lru_cache(maxsize=16)
def _to_lonlat(crs: str) -> Transformer:
    """A cached ``crs`` → EPSG:4326 transformer (lon/lat order); building one costs ~70 ms."""
    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def window_for_bounds(
    bounds: tuple[float, float, float, float], src_crs: object, grid: Grid = EEA_10M, source: str = "input"
) -> GridWindow:
    """The smallest grid window covering ``bounds`` given in ``src_crs``.

    Args:
        bounds: (left, bottom, right, top) in ``src_crs`` units.
        src_crs: anything pyproj/rasterio accepts (``EPSG:32633``, a ``CRS``).
        grid: the target grid.
        source: the file the bounds come from, for error messages.

    Raises:
        RasterError: the CRS is missing or unknown, or the bounds do not transform into the
            grid CRS (e.g. outside the EPSG:3035 area of use).
    """
    if src_crs is None or str(src_crs) == "":
        raise RasterError("has no CRS", "Assign one (e.g. `rio edit-info --crs EPSG:32633`)", path=source)
    try:
        CRS.from_user_input(src_crs)
        left, bottom, right, top = transform_bounds(src_crs, grid.crs, *bounds, densify_pts=21)
    except (CRSError, RioCRSError, ValueError) as e:
        raise RasterError(
            f"its CRS {src_crs} cannot be transformed to the grid {grid.crs} ({e})",
            "Reproject it to a projected CRS over Europe",
            path=source,
        ) from None
    if not all(math.isfinite(v) for v in (left, bottom, right, top)):
        raise RasterError(
            f"its bounds do not fall within the grid {grid.crs}",
            "Use data inside the EPSG:3035 area (Europe)",
            path=source,
        )
    r = grid.res_m
    x0 = grid.origin_x_m + math.floor((left - grid.origin_x_m) / r) * r
    y1 = grid.origin_y_m + math.ceil((top - grid.origin_y_m) / r) * r
    x1 = grid.origin_x_m + math.ceil((right - grid.origin_x_m) / r) * r
    y0 = grid.origin_y_m + math.floor((bottom - grid.origin_y_m) / r) * r
    return GridWindow(grid, Affine(r, 0.0, x0, 0.0, -r, y1), int(round((y1 - y0) / r)), int(round((x1 - x0) / r)))


_TILE_RE = re.compile(r"(\d+)(km|m)[Ee](\d+)[Nn](\d+)")


@dataclass(frozen=True, order=True)
class TileId:
    """An EEA reference-grid cell such as ``10kmE432N321`` or ``100mE43215N32107`` (EPSG:3035).

    ``E``/``N`` are the lower-left corner divided by the cell size: ``10kmE432N321`` is the cell
    with x from 4,320,000 to 4,330,000 m and y from 3,210,000 to 3,220,000 m (EEA reference
    grid naming; sizes below 1 km are written in metres, e.g. ``250mE18698N10155``).

    Attributes:
        size_m: cell size in metres (a multiple of the 10 m pixel: 100 km, 10 km, 1 km, ...).
        e, n: the easting and northing indices.
    """

    size_m: int
    e: int
    n: int

    @classmethod
    def parse(cls, text: str) -> TileId:
        """Parse ``10kmE432N321`` / ``250mE18698N10155`` (case-insensitive E/N).

        Raises:
            RasterError: the text is not an EEA cell code.
        """
        m = _TILE_RE.fullmatch(text.strip())
        if not m or int(m.group(1)) == 0:
            raise RasterError(f"{text!r} is not an EEA grid cell code", "Use codes like 10kmE432N321 or 100kmE43N32")
        size = int(m.group(1)) * (1000 if m.group(2) == "km" else 1)
        return cls(size, int(m.group(3)), int(m.group(4)))

    @classmethod
    def containing(cls, x_m: float, y_m: float, size_m: int) -> TileId:
        """The cell of size ``size_m`` holding the EPSG:3035 point (x, y) (edges go east/north)."""
        return cls(size_m, math.floor(x_m / size_m), math.floor(y_m / size_m))

    def __str__(self) -> str:
        return cell_code(self.e, self.n, self.size_m)

    @property
    def size_km(self) -> float:
        """Cell size in km."""
        return self.size_m / 1000.0

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in EPSG:3035 metres."""
        s = float(self.size_m)
        return (self.e * s, self.n * s, (self.e + 1) * s, (self.n + 1) * s)

    def window(self, grid: Grid = EEA_10M) -> GridWindow:
        """The tile as a grid window (10 km → 1000 × 1000 pixels of 10 m).

        Raises:
            RasterError: the cell size is not a whole number of pixels.
        """
        left, bottom, right, top = self.bounds
        n = (right - left) / grid.res_m
        if abs(n - round(n)) > 1e-9:
            raise RasterError(
                f"the cell {self} is not a whole number of {grid.res_m:g} m pixels",
                "Use a cell size that is a multiple of the pixel size",
            )
        return GridWindow(grid, Affine(grid.res_m, 0.0, left, 0.0, -grid.res_m, top), int(round(n)), int(round(n)))

    def neighbours(self) -> list[TileId]:
        """The 8 cells around this one, same size (W, E, S, N and the diagonals)."""
        return [
            TileId(self.size_m, self.e + de, self.n + dn)
            for dn in (-1, 0, 1)
            for de in (-1, 0, 1)
            if (de, dn) != (0, 0)
        ]


def footprint_lonlat(window: GridWindow) -> tuple[dict[str, Any], list[float]]:
    """GeoJSON polygon and bbox of a grid window, in EPSG:4326 (lon then lat, degrees).

    The EPSG:3035 outline is densified every 50 pixels before reprojection, so the footprint
    follows the curved edges. Returns ``(geometry, [west, south, east, north])``.
    """
    poly = shapely.segmentize(box(*window.bounds), window.grid.res_m * 50)
    tr = Transformer.from_crs(window.grid.crs, "EPSG:4326", always_xy=True)
    ll = shapely.transform(poly, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    return mapping(ll), [round(v, 7) for v in ll.bounds]
