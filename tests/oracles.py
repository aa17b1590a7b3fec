"""Independent oracles shared by tests: GDAL's nearest-neighbour warp with exact coordinates.

:func:`reproject_exact` is :func:`rasterio.warp.reproject` for an in-memory source band, but with
GDAL's coordinate approximation switched off (a ``WarpedVRT`` with a 1e-9 px tolerance): each
target pixel gets the source pixel under its centre. eulc's readers follow that rule
(:class:`pipeline.core.warp.NearestMap`, pyproj); this oracle reaches it through GDAL and PROJ's
own warper, not through eulc's code. GDAL's default (0.125 px, interpolated along scanlines)
picks the neighbouring source pixel for about 0.02 % of the 10 m pixels of the Slovenia stack.
"""

from __future__ import annotations

import numpy as np
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.vrt import WarpedVRT


def reproject_exact(
    source: np.ndarray,
    destination: np.ndarray,
    *,
    src_transform: Affine,
    src_crs: object,
    dst_transform: Affine,
    dst_crs: object,
    src_nodata: float | None = None,
    dst_nodata: float = np.nan,
    resampling: Resampling = Resampling.nearest,
) -> np.ndarray:
    """Warp the 2-D ``source`` into ``destination`` (2-D, its dtype) in place and return it."""
    h, w = source.shape
    prof = {"driver": "GTiff", "width": w, "height": h, "count": 1, "dtype": source.dtype.name}
    with MemoryFile() as mem:
        with mem.open(**prof, crs=src_crs, transform=src_transform, nodata=src_nodata) as ds:
            ds.write(source, 1)
        with (
            mem.open() as ds,
            WarpedVRT(
                ds,
                crs=dst_crs,
                transform=dst_transform,
                width=destination.shape[1],
                height=destination.shape[0],
                resampling=resampling,
                tolerance=1e-9,
                nodata=dst_nodata,
                dtype=destination.dtype.name,
            ) as vrt,
        ):
            vrt.read(1, out=destination)
    return destination
