"""Reading a raster onto another grid: the one place eulc reprojects (GDAL's warper via rasterio).

The source is read by GDAL as the warp needs it (``rasterio.band``), never whole into memory
first, and in its own dtype; the destination is the target grid's shape. Used for stacks onto
the EEA grid (nearest, paper §2.1.1), reference maps onto a class map (mode when finer, else
nearest) and earlier maps onto a later one (change).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.warp import reproject

from pipeline.core.errors import RasterError


def read_on_grid(path: Path, transform: Affine, crs: object, shape: tuple[int, int], *,
                 bands: list[int] | None = None, resampling: Resampling = Resampling.nearest,
                 dtype: type | str = np.float32, fill: float | int = np.nan, src_nodata: float | None = None
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
            reproject(rasterio.band(src, idx), out, src_nodata=nod, dst_transform=transform, dst_crs=crs,
                      dst_nodata=fill, resampling=resampling)
    except (RasterioIOError, OSError) as e:
        raise RasterError(f"cannot be read, it may be corrupt or truncated ({e})",
                          "Re-download or re-export the file", path=path) from None
    return out if bands else out[0]
