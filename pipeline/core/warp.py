"""Reading a raster onto another grid: the one place eulc reprojects (GDAL's warper via rasterio).

The source is read by GDAL as the warp needs it (``rasterio.band``), never whole into memory
first, and in its own dtype; the destination is the target grid's shape. Used for stacks onto
the EEA grid (nearest, paper §2.1.1), reference maps onto a class map (mode when finer, else
nearest) and earlier maps onto a later one (change).

:func:`read_on_grid` returns the whole target grid at once (a tile); :func:`open_on_grid` reads
it window by window (a continental reference against a map of any size, in bounded memory).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject
from rasterio.warp import transform as transform_points
from rasterio.windows import Window

from pipeline.core.errors import RasterError

EXACT_PX = 1e-6
"""Coordinate approximation error allowed to the warper in windowed reads (pixels): exact in
effect. rasterio's ``WarpedVRT`` fails with ``tolerance=0`` (no approximate transformer)."""


def _check_crs(src: rasterio.io.DatasetReader) -> None:
    """RasterError (naming the file) when ``src`` has no CRS."""
    if src.crs is None:
        raise RasterError("has no CRS", "Assign the raster's CRS (gdal_edit.py -a_srs)", path=src.name)


def read_on_grid(
    path: Path,
    transform: Affine,
    crs: object,
    shape: tuple[int, int],
    *,
    bands: list[int] | None = None,
    resampling: Resampling = Resampling.nearest,
    dtype: type | str = np.float32,
    fill: float | int = np.nan,
    src_nodata: float | None = None,
) -> np.ndarray:
    """Bands of ``path`` on the grid (``transform``, ``crs``, ``shape`` = (H, W)).

    Args:
        path: any raster GDAL reads.
        transform, crs, shape: the target grid (e.g. a :class:`~pipeline.core.grid.GridWindow`'s).
        bands: 1-based band indexes (default: band 1 only, returned as (H, W)); a list returns
            (len(bands), H, W).
        resampling: GDAL resampling (``nearest`` for stacks and coarser references, ``mode`` for
            finer class maps).
        dtype: output dtype (the source's values converted by GDAL).
        fill: value for nodata and for pixels outside the source.
        src_nodata: the source's nodata value when its metadata lacks or misstates it.

    Returns:
        ``dtype`` array (H, W) or (B, H, W).

    Raises:
        RasterError: unreadable, corrupt or truncated file, or a file without a CRS (named).
    """
    try:
        with rasterio.open(path) as src:
            _check_crs(src)
            idx = bands or [1]
            nod = src_nodata if src_nodata is not None else src.nodata
            out = np.full((len(idx), *shape), fill, dtype=dtype)
            reproject(
                rasterio.band(src, idx),
                out,
                src_nodata=nod,
                dst_transform=transform,
                dst_crs=crs,
                dst_nodata=fill,
                resampling=resampling,
            )
    except (RasterioIOError, OSError) as e:
        raise RasterError(
            f"cannot be read, it may be corrupt or truncated ({e})", "Re-download or re-export the file", path=path
        ) from None
    return out if bands else out[0]


@dataclass
class GridReader:
    """Band 1 of a raster warped onto a target grid, read window by window (:func:`open_on_grid`).

    Attributes:
        vrt: the GDAL warped VRT (target grid, the source's dtype).
        dtype: the source's dtype (values are returned in it, never converted).
        nodata: the source's nodata value, or None (then the VRT has an alpha band).
        path: the source file (for error messages).
    """

    vrt: WarpedVRT
    dtype: np.dtype
    nodata: float | None
    path: Path

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(values, valid)`` over ``window`` of the target grid: values (h, w) in the source's
        dtype and a bool (h, w) mask, False where the source is nodata or absent.

        Raises:
            RasterError: a source block that cannot be decoded (corrupt or truncated file).
        """
        try:
            if self.nodata is None:  # band 2 is the alpha band; read together, so one warp makes both
                values, alpha = self.vrt.read([1, 2], window=window)
                valid = alpha > 0
            else:
                values = self.vrt.read(1, window=window)
                valid = ~np.isnan(values) if np.isnan(self.nodata) else values != self.nodata
        except (RasterioIOError, OSError) as e:
            raise RasterError(
                f"cannot be read, it may be corrupt or truncated ({e})",
                "Re-download or re-export the file",
                path=self.path,
            ) from None
        return values, valid


@contextmanager
def open_on_grid(
    path: Path, transform: Affine, crs: object, shape: tuple[int, int], *, resampling: Resampling = Resampling.nearest
) -> Iterator[GridReader]:
    """Open band 1 of ``path`` warped onto the grid (``transform``, ``crs``, ``shape`` = (H, W)).

    GDAL reads only the source blocks a window needs, so memory follows the window, not the
    source or the target grid (a pan-European reference against a 10 km map reads ~10 km of
    it). Values keep the source's dtype; nodata and pixels outside the source come back as
    ``valid = False`` (through the source's nodata value, or an alpha band when it has none:
    rasterio's ``read_masks`` on such a VRT reports every pixel valid, so the alpha is read).
    Coordinates are transformed exactly (:data:`EXACT_PX`): GDAL's default approximation
    (0.125 px, interpolated along each chunk's scanlines, which :func:`read_on_grid` keeps)
    depends on the chunk, so windows would otherwise differ from a whole-grid read near
    source pixel edges (25-px windows: 2,808 of 2.2 million pixels on the real CORINE tile). With it, every
    window holds the same values as that part of a whole-grid read, and nearest-neighbour
    values are the source pixel under each target pixel's centre (PROJ, tested against pyproj).

    Args:
        path: any raster GDAL reads, in any CRS.
        transform, crs, shape: the target grid.
        resampling: ``nearest`` or ``mode`` (classes), as for :func:`read_on_grid`.

    Yields:
        A :class:`GridReader`.

    Raises:
        RasterError: unreadable file, or a file without a CRS (named).
    """
    try:
        src = rasterio.open(path)
    except (RasterioIOError, OSError) as e:
        raise RasterError(
            f"cannot be read, it may be corrupt or truncated ({e})", "Re-download or re-export the file", path=path
        ) from None
    with src:
        _check_crs(src)
        opts: dict[str, object] = {"add_alpha": True} if src.nodata is None else {}
        with WarpedVRT(
            src,
            crs=crs,
            transform=transform,
            width=shape[1],
            height=shape[0],
            resampling=resampling,
            tolerance=EXACT_PX,
            **opts,
        ) as vrt:
            yield GridReader(vrt, np.dtype(src.dtypes[0]), src.nodata, Path(path))


MAP_POINTS = 65_536
"""Target pixel centres transformed at a time by :meth:`NearestMap.of` (GDAL answers with Python
lists of floats, 32 bytes a coordinate: a 256-row block at once would hold 16 MB of them)."""


@dataclass(frozen=True)
class NearestMap:
    """Which source pixel lies under each target pixel's centre: GDAL's nearest-neighbour rule
    (``floor(x + 1e-10)`` of the source pixel coordinate, gdalwarpkernel.cpp ``GWKNearest``) on
    coordinates transformed exactly by GDAL's ``OGRCoordinateTransformation`` (PROJ), as its
    warper transforms them, but without its approximation (GDAL's default interpolates
    them to 0.125 px along each chunk's scanlines, so its choice near a source pixel edge
    depends on how the target is cut into blocks; this map does not).

    Attributes:
        roi: the source window to decode (every source pixel some target pixel needs).
        index: int64 (H·W,) flat index into the decoded window, 0 where ``inside`` is False.
        inside: bool (H·W,), False where the target pixel centre falls outside the source.
    """

    roi: Window
    index: np.ndarray
    inside: np.ndarray

    @classmethod
    def of(
        cls,
        crs: object,
        transform: Affine,
        shape: tuple[int, int],
        dst_transform: Affine,
        dst_crs: object,
        dst_shape: tuple[int, int],
    ) -> NearestMap | None:
        """The map of a source grid (``crs``, ``transform``, ``shape`` = (rows, cols)) onto the
        target grid (``dst_transform``, ``dst_crs``, ``dst_shape`` = (H, W)); None when no target
        pixel centre falls on the source.

        Target pixel centres are ``origin + (index + 0.5) · size``: on a grid whose origin is a
        whole multiple of its pixel size (the EEA grid) they are exact in float64, so a row
        block's centres are bit for bit those of the whole tile. Coordinates are x/y (easting,
        northing; lon/lat order for a geographic CRS), in each CRS's units.

        Raises:
            rasterio.errors.CRSError: a CRS GDAL cannot transform between.
        """
        h, w = dst_shape
        t = dst_transform
        inv = ~transform
        sc = np.empty(h * w)
        sr = np.empty(h * w)
        step = max(1, MAP_POINTS // max(1, w))  # rows at a time: GDAL returns Python lists
        for r0 in range(0, h, step):
            cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(r0, min(h, r0 + step)) + 0.5)
            x = t.c + cols * t.a + rows * t.b
            y = t.f + cols * t.d + rows * t.e
            xs, ys = transform_points(dst_crs, crs, x.ravel(), y.ravel())  # GDAL's OGR transform, as its warper's
            xa, ya = np.asarray(xs), np.asarray(ys)
            sc[r0 * w : r0 * w + xa.size] = inv.a * xa + inv.b * ya + inv.c
            sr[r0 * w : r0 * w + xa.size] = inv.d * xa + inv.e * ya + inv.f
        with np.errstate(invalid="ignore"):
            inside = (sc >= 0) & (sr >= 0) & (sc < shape[1]) & (sr < shape[0])
        if not inside.any():
            return None
        ci = np.floor(np.where(inside, sc, 0) + 1e-10).astype(np.int64)
        ri = np.floor(np.where(inside, sr, 0) + 1e-10).astype(np.int64)
        c0, c1 = int(ci[inside].min()), int(ci[inside].max()) + 1
        r0, r1 = int(ri[inside].min()), int(ri[inside].max()) + 1
        index = np.where(inside, (ri - r0) * (c1 - c0) + (ci - c0), 0)
        return cls(Window(c0, r0, c1 - c0, r1 - r0), index, inside)

    def gather(self, values: np.ndarray, nodata: float | None, out: np.ndarray) -> None:
        """Write the decoded ``values`` (the :attr:`roi`, source dtype) into ``out`` ((H, W)).

        ``out`` float: NaN outside the source and where the source is ``nodata``. ``out`` of the
        source's integer dtype: the values as stored, ``nodata`` outside the source (decoded
        later, :class:`tiles.engine.stack.Encoding`).

        Raises:
            ValueError: an integer ``out`` whose dtype is not the source's, not C-contiguous, or
                without ``nodata``.
        """
        if not np.issubdtype(out.dtype, np.floating):
            if out.dtype != values.dtype or nodata is None or not out.flags.c_contiguous:
                raise ValueError(
                    f"out: a {out.dtype} output takes a source of that dtype with a nodata value, "
                    f"C-contiguous (got {values.dtype}, nodata {nodata})"
                )
            flat = out.reshape(-1)  # a view: out is a C-contiguous slice of the block
            np.take(values.ravel(), self.index, out=flat)
            flat[~self.inside] = nodata
            return
        v = values.ravel().take(self.index)
        bad = ~self.inside
        if nodata is not None:
            bad |= np.isnan(v) if np.isnan(nodata) else v == nodata
        res = v.astype(np.float32)
        res[bad] = np.nan
        out[...] = res.reshape(out.shape)


def nearest_on_grid(
    src: rasterio.io.DatasetReader,
    transform: Affine,
    crs: object,
    shape: tuple[int, int],
    *,
    src_nodata: float | None = None,
) -> np.ndarray:
    """Every band of the open dataset ``src`` on the grid (``transform``, ``crs``, ``shape`` = (H, W))
    by exact nearest neighbour (:class:`NearestMap`): the stacks' reader, the same rule as the STAC
    reader (:mod:`tiles.engine.asset_reader`), so both engines put the same source pixel on each
    10 m pixel whatever the row blocks. Only the source window the grid needs is decoded.

    Args:
        src: any raster GDAL reads, in any CRS.
        transform, crs, shape: the target grid (e.g. a :class:`~pipeline.core.grid.GridWindow`'s).
        src_nodata: the source's nodata value when its metadata lacks or misstates it.

    Returns:
        float32 (B, H, W); NaN for nodata and outside the source.

    Raises:
        RasterError: a file without a CRS, or a source block that cannot be decoded (corrupt or
            truncated file), naming the file.
    """
    _check_crs(src)
    out = np.full((src.count, *shape), np.nan, np.float32)
    m = NearestMap.of(src.crs, src.transform, (src.height, src.width), transform, crs, shape)
    if m is None:
        return out
    try:
        values = src.read(window=m.roi)
    except (RasterioIOError, OSError) as e:
        raise RasterError(
            f"cannot be read, it may be corrupt or truncated ({e})", "Re-download or re-export the file", path=src.name
        ) from None
    nod = src_nodata if src_nodata is not None else src.nodata
    for b in range(len(out)):
        m.gather(values[b], nod, out[b])
    return out
