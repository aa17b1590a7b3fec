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
from rasterio.windows import Window

from pipeline.core.errors import RasterError

EXACT_PX = 1e-6
"""Coordinate approximation error allowed to the warper in windowed reads (pixels): exact in
effect. rasterio's ``WarpedVRT`` fails with ``tolerance=0`` (no approximate transformer)."""


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
            if src.crs is None:
                raise RasterError("has no CRS", "Assign the raster's CRS (gdal_edit.py -a_srs)", path=path)
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
        if src.crs is None:
            raise RasterError("has no CRS", "Assign the raster's CRS (gdal_edit.py -a_srs)", path=path)
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
