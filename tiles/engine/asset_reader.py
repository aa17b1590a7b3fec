"""Reading STAC assets onto a grid window: each asset opened once per tile, its source window
decoded and put on the grid by exact nearest neighbour straight into the block's preallocated
array, on threads (issue #28).

A feature tile is computed in row blocks (:func:`tiles.engine.features.compute_features_blocked`);
every block reads every asset of the tile. :class:`AssetReader` keeps the datasets open from one
block to the next, so nothing about a file is parsed twice (header, IFDs, the HTTP range requests
of a remote COG); GDAL's block cache is kept small (:data:`GDAL_OPTIONS`, 16 MB): a source tile
that straddles two blocks is decoded by each (about 3× the decoding of reading each file once,
which one tile row of every asset in memory would avoid at 250 MB and more).
Each asset's window is decoded in its own dtype (``DatasetReader.read``) and gathered through a
:class:`pipeline.core.warp.NearestMap`: the source pixel under each target pixel centre,
coordinates transformed exactly by GDAL/PROJ, computed once per source grid and block and shared
by every asset on that grid (all dates and bands of an MGRS tile), so no per-asset warp is set
up. Into a float32 array: NaN where the source is nodata (the file's, or ``raster:bands``
nodata) or absent; into an array of the sources' integer dtype: the values as stored, the nodata
value where absent (:class:`tiles.engine.stack.Encoding` decodes them later).

Until issue #28 odc-stac's ``load`` read the assets (one GDAL warp per asset and block, GDAL's
approximate transformer): the values differ only where that approximation picked the neighbouring
source pixel (about 1 % of a 10 km tile; ``benchmarks/RESULTS.md``).

Threads: GDAL releases the GIL while it decodes, so assets are read on
:func:`pipeline.core.config.cpu_threads` threads; a dataset is read by one thread at a time (a
lock per dataset).

Open files: at most :attr:`AssetReader.max_open` datasets stay open (the process's open-file
limit less :data:`FD_MARGIN`); further assets are opened and closed per read.
"""

from __future__ import annotations

import resource
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError

from pipeline.core.config import cpu_threads
from pipeline.core.errors import RasterError
from pipeline.core.grid import GridWindow
from pipeline.core.warp import NearestMap

T = TypeVar("T")

FD_MARGIN = 256
"""Open files left to the rest of the process (COG writer, ledger, sockets)."""

GDAL_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # a remote COG: no directory listing per open
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    # bytes (rasterio sets GDAL's block cache). A block's reads share little: each asset's window
    # is decoded once per block, and one tile row of every asset (210 assets × 1.5 MB for the NDVI
    # tile) would not fit any reasonable cache, so a small one bounds the RSS at no cost in time
    "GDAL_CACHEMAX": 16 * 2**20,
}


@dataclass(frozen=True)
class AssetRead:
    """One asset to read: band 1 of ``href`` into time slice ``index`` of output array ``array``.

    Attributes:
        href: a local path or an http(s) URL (checked earlier by
            :func:`tiles.engine.stac_load.items_from_catalog`).
        index: the output's slice (0-based).
        nodata: the source's nodata value from the item's metadata (``raster:bands``), or None
            to use the file's own.
        what: ``item/asset``, for messages.
    """

    href: str
    index: int
    nodata: float | None = None
    what: str = ""
    array: int = 0


@dataclass(frozen=True)
class AssetInfo:
    """What an asset's band 1 holds: its numpy ``dtype`` and the nodata value its reads use
    (:attr:`AssetRead.nodata` when the metadata give one, else the file's; None when neither).
    """

    dtype: np.dtype
    nodata: float | None


def _unreadable(r: AssetRead, e: Exception) -> RasterError:
    return RasterError(
        f"asset {r.what or r.href} cannot be read ({' '.join(str(e).split())[:200]})",
        "Check that the file exists and is a valid GeoTIFF/COG (re-download it), or drop the item",
        path=r.href,
    )


def _max_open() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = soft if soft != resource.RLIM_INFINITY else 65_536
    return max(0, limit - FD_MARGIN)


class AssetReader:
    """Datasets of one tile's assets, open across its row blocks, read on a thread pool.

    Use as a context manager (closes every dataset and the pool)::

        with AssetReader() as reader:
            reader.read(reads, window, out)

    Args:
        threads: parallel reads (default: :func:`pipeline.core.config.cpu_threads`).
        max_open: datasets kept open at most (default: the open-file limit less
            :data:`FD_MARGIN`).
    """

    def __init__(self, threads: int | None = None, max_open: int | None = None) -> None:
        self.threads = threads or cpu_threads()
        self.max_open = _max_open() if max_open is None else max_open
        self._open: dict[str, tuple[rasterio.io.DatasetReader, threading.Lock]] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._maps: dict[tuple[object, ...], NearestMap | None] = {}
        self._maps_for: tuple[object, ...] | None = None
        self._map_lock = threading.Lock()

    def __enter__(self) -> AssetReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every open dataset and the thread pool."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            for src, _ in self._open.values():
                src.close()
            self._open.clear()

    def read(self, reads: list[AssetRead], window: GridWindow, out: np.ndarray | Sequence[np.ndarray]) -> None:
        """Warp every asset of ``reads`` onto ``window`` into ``out[read.array][read.index]``.

        Args:
            reads: the assets.
            window: the target grid window (EPSG:3035, 10 m).
            out: one array or a sequence of arrays (N, window.height, window.width), prefilled by
                the caller: float32 (NaN where the source is nodata or absent), or the sources'
                own integer dtype (the source's nodata value where it is nodata or absent; every
                asset read into it must have that dtype and nodata, :meth:`info`).

        Raises:
            RasterError: an asset that cannot be opened or decoded (names the item, asset and href).
        """
        arrays = [out] if isinstance(out, np.ndarray) else list(out)
        self._map(lambda r: self._read_one(r, window, arrays[r.array]), reads)

    def info(self, reads: list[AssetRead]) -> list[AssetInfo]:
        """The dtype and effective nodata of each asset of ``reads`` (the datasets are opened,
        and stay open for the reads).

        Raises:
            RasterError: an asset that cannot be opened (names the item, asset and href).
        """
        return self._map(self._info_one, reads)

    def _map(self, fn: Callable[[AssetRead], T], reads: list[AssetRead]) -> list[T]:
        """``fn`` of every read, on the thread pool; the first failure once every call has ended."""
        if self.threads <= 1 or len(reads) <= 1:
            return [fn(r) for r in reads]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="eulc-read")
        return [f.result() for f in [self._pool.submit(fn, r) for r in reads]]

    def _info_one(self, r: AssetRead) -> AssetInfo:
        try:
            with rasterio.Env(**GDAL_OPTIONS):
                src, _, close = self._dataset(r.href)
                try:
                    return AssetInfo(np.dtype(src.dtypes[0]), r.nodata if r.nodata is not None else src.nodata)
                finally:
                    if close:
                        src.close()
        except (RasterioIOError, OSError) as e:
            raise _unreadable(r, e) from None

    def _dataset(self, href: str) -> tuple[rasterio.io.DatasetReader, threading.Lock, bool]:
        """The open dataset of ``href``, the lock its reads hold (a GDAL dataset is read by one
        thread at a time) and whether the caller must close it.
        """
        with self._lock:
            held = self._open.get(href)
        if held is not None:
            return held[0], held[1], False
        src = rasterio.open(href)
        with self._lock:
            if href in self._open:  # opened by another thread meanwhile
                src.close()
                return self._open[href][0], self._open[href][1], False
            if len(self._open) < self.max_open:
                self._open[href] = (src, threading.Lock())
                return src, self._open[href][1], False
        return src, threading.Lock(), True

    def _read_one(self, r: AssetRead, window: GridWindow, out: np.ndarray) -> None:
        try:
            with rasterio.Env(**GDAL_OPTIONS):
                src, lock, close = self._dataset(r.href)
                try:
                    if src.crs is None:
                        raise RasterError(
                            f"asset {r.what or r.href} cannot be read: it has no CRS (truncated or not georeferenced)",
                            "Re-download the file, or drop the item",
                            path=r.href,
                        )
                    grid = self._grid(src, window)
                    if grid is None:  # the asset does not reach this window
                        return
                    with lock:
                        values = src.read(1, window=grid.roi)
                    nodata = r.nodata if r.nodata is not None else src.nodata
                finally:
                    if close:
                        src.close()
        except (RasterioIOError, OSError) as e:
            raise _unreadable(r, e) from None
        grid.gather(values, nodata, out[r.index])

    def _grid(self, src: rasterio.io.DatasetReader, window: GridWindow) -> NearestMap | None:
        """The nearest-neighbour map of ``src``'s grid onto ``window``, computed once per
        (source grid, window) and shared by every asset on that grid (all dates and bands of an
        MGRS tile). Computed under a lock: the threads reading a block's first assets wait for the
        one map instead of each transforming the same pixel centres.
        """
        key = (src.crs.to_wkt(), tuple(src.transform), src.width, src.height)
        with self._map_lock:
            if self._maps_for != (window.transform, window.shape):  # a new block: new maps
                self._maps.clear()
                self._maps_for = (window.transform, window.shape)
            if key not in self._maps:
                self._maps[key] = NearestMap.of(
                    src.crs, src.transform, (src.height, src.width), window.transform, window.grid.crs, window.shape
                )
            return self._maps[key]
