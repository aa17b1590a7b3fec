"""Benchmark (issue #28): the 10 NDVI features of ``elc10-ndvi-l1`` for one 10 km × 70-date tile,
eulc against odc-stac + xarray, and the I/O floor, each in a process of its own.

The tile and catalogue are :mod:`bench_stac_tile`'s (70 synthetic Sentinel-2 L2A scenes in the
real layout: UTM 33N, uint16 ``B04``/``B08``, uint8 ``CLP``, DEFLATE-tiled, over 10kmE467N253).

- **ours**: :func:`tiles.engine.run.features_from_stac` with its default row blocks
  (:func:`tiles.engine.run.block_rows_for`: 256 rows here), the feature COG written. The process
  imports the feature engine only, as the peer's imports only its libraries; the ``eulc features``
  command also imports the model-bundle code (torch, geopandas: about 0.3 GB more resident
  memory before the tile starts), which this figure leaves out on both sides.
- **odc-stac + xarray**: what an experienced user of those libraries writes from their
  documentation: ``odc.stac.load`` onto the tile's ``GeoBox`` (EPSG:3035, 10 m, nearest,
  ``groupby="solar_day"`` for the daily mosaic, dask chunks of 256 × 256 px with all dates in one
  chunk as ``quantile`` needs), DN → reflectance with the L2A offset, NDVI, ``where(CLP < 40)``,
  ``quantile([.05, .25, .5, .75, .95], "time")``, the seasonal medians by ``time.dt.month``, and the
  texture as ``rolling(x=7, y=7, center=True).std()`` of the annual median; computed with dask's
  threaded scheduler on as many threads as eulc uses; the arrays kept in memory (no COG written).
- **stackstac + xarray** (when stackstac is installed, a dev dependency): the same computation on
  ``stackstac.stack`` (EPSG:3035, 10 m, the tile's bounds, nearest, float32, 256 px chunks, the
  dates rechunked into one chunk for ``quantile``).
- **floor**: every source window only decoded and warped onto the tile's grid
  (:mod:`bench_feature_profile`'s floor).

Values: both sides must agree within 0.5 stored units (NDVI × 1,000) on ≥ 98 % of the valid
pixels of every feature. They are not identical everywhere: odc-stac warps with GDAL's
approximate coordinate transformer (0.125 px), which picks the neighbouring source pixel for
about 1 % of the 10 m pixels of this tile; eulc picks the source pixel under each pixel centre
exactly (:class:`pipeline.core.warp.NearestMap`). The shares are printed.

Run: ``python benchmarks/bench_composite_peers.py``. The last line is
``ours_s=<s> odc_s=<s> floor_s=<s> ours_peak_gb=<GB> odc_peak_gb=<GB>``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_feature_profile import FLOOR  # noqa: E402
from bench_stac_tile import CELL, T, make_catalogue, run_child  # noqa: E402

OURS = r"""
import json, sys, time
from pathlib import Path
from pipeline.core.grid import TileId
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import load_spec
from tiles.engine.run import features_from_stac

def peak_gb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024 ** 2

sp = load_spec("elc10")
names = ["ndvi_p5", "ndvi_p25", "ndvi_p50", "ndvi_p75", "ndvi_p95", "ndvi_summer", "ndvi_winter", "ndvi_spring",
         "ndvi_fall", "ndvi_texture_sd"]  # the shipped elc10-ndvi-l1 bundle's features, in its order
t = time.perf_counter()
features_from_stac(Path(sys.argv[1]), sp, FeatureSelection.of(sp, names, "names"), 2021,
                   TileId.parse(sys.argv[3]).window(), Path(sys.argv[2]), level="L2A")
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_gb": peak_gb(), "torch": "torch" in sys.modules}))
"""

PEER_START = r"""
import json, sys, time
import numpy as np

def peak_gb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024 ** 2

import dask
import pystac
import xarray as xr
from pipeline.core.config import cpu_threads
from pipeline.core.grid import TileId

cat_path, out_path = sys.argv[1], sys.argv[2]
win = TileId.parse(sys.argv[3]).window()
t = time.perf_counter()
items = list(pystac.Catalog.from_file(cat_path).get_items(recursive=True))
"""
"""What both peers do first: the catalogue's items and the tile; each then loads ``ds``."""

PEER_FEATURES = r"""
# L2A processing baseline 04.00: reflectance = (DN - 1000) / 10,000; DN 0 = nodata
red = ((ds.B04.where(ds.B04 != 0) - 1000) / 10_000).astype("float32")
nir = ((ds.B08.where(ds.B08 != 0) - 1000) / 10_000).astype("float32")
red, nir = red.where(red > 0), nir.where(nir > 0)
ndvi = ((nir - red) / (nir + red)).where(ds.CLP < 40)
month = ndvi.time.dt.month
q = ndvi.quantile([0.05, 0.25, 0.5, 0.75, 0.95], dim="time", skipna=True)
seasons = [ndvi.where(month.isin(m)).median("time", skipna=True)
           for m in ([6, 7, 8], [12, 1, 2], [9, 10, 11], [3, 4, 5])]
annual = ndvi.median("time", skipna=True)
texture = annual.rolling(x=7, y=7, center=True, min_periods=1).std().where(annual.notnull())
stacked = xr.concat([*(q.sel(quantile=v).drop_vars("quantile") for v in q["quantile"].values), *seasons, texture],
                    dim="feature")
with dask.config.set(scheduler="threads", num_workers=cpu_threads()):
    values = stacked.compute().values * 1000.0
seconds = time.perf_counter() - t
np.save(out_path, values.astype("float32"))
print(json.dumps({"seconds": seconds, "peak_rss_gb": peak_gb()}))
"""
"""The 10 features from ``ds`` (variables ``B04``, ``B08``, ``CLP`` over ``time, y, x``), as a user of
xarray writes them, the same for both peers."""

ODC = (
    PEER_START
    + r"""
import odc.stac
from odc.geo.geobox import GeoBox

gbox = GeoBox((win.height, win.width), win.transform, "EPSG:3035")
ds = odc.stac.load(items, bands=["B04", "B08", "CLP"], geobox=gbox, resampling="nearest",
                   groupby="solar_day", chunks={"time": -1, "x": 256, "y": 256})
"""
    + PEER_FEATURES
)

STACKSTAC = (
    PEER_START
    + r"""
import stackstac
from rasterio.enums import Resampling

stack = stackstac.stack(items, assets=["B04", "B08", "CLP"], epsg=3035, resolution=10, bounds=win.bounds,
                        snap_bounds=False, resampling=Resampling.nearest, dtype="float32",
                        fill_value=np.float32(np.nan), rescale=False, chunksize=256)
ds = stack.chunk({"time": -1}).to_dataset("band")
"""
    + PEER_FEATURES
)


def compare(ours_tif: Path, odc_npy: Path) -> list[tuple[str, float, float]]:
    """Per feature: (name, share of pixels valid on both sides within 0.5 stored units, share
    valid on one side only)."""
    import numpy as np
    import rasterio

    with rasterio.open(ours_tif) as src:
        ours = src.read().astype(np.float64)
        names = list(src.descriptions)
        nod = src.nodata
    if nod is not None and not np.isnan(nod):
        ours[ours == nod] = np.nan
    peer = np.load(odc_npy).astype(np.float64)
    out = []
    for i, name in enumerate(names):
        a, b = ours[i], peer[i]
        both = np.isfinite(a) & np.isfinite(b)
        one = np.isfinite(a) ^ np.isfinite(b)
        out.append((str(name), float((np.abs(a - b)[both] <= 0.5).mean()), float(one.mean())))
    return out


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="eulc_bench_peers_") as tmp:
        root = Path(tmp)
        cat = make_catalogue(root)
        size_mb = sum(f.stat().st_size for f in root.glob("*.tif")) / 1e6
        print(f"machine: {os.cpu_count()} CPU cores; {T} scenes × (B04, B08, CLP) over {CELL}, {size_mb:.0f} MB")
        ours = run_child(OURS, [str(cat), str(root / "ours.tif"), CELL])
        odc = run_child(ODC, [str(cat), str(root / "odc.npy"), CELL])
        try:
            import stackstac  # noqa: F401

            ss = run_child(STACKSTAC, [str(cat), str(root / "stackstac.npy"), CELL])
        except ImportError:
            ss = None
        floor = run_child(FLOOR, [str(cat), CELL])
        for peer in ("odc", "stackstac") if ss is not None else ("odc",):
            print(f"feature            within 0.5 of {peer:<10} valid on one side only")
            for name, within, one in compare(root / "ours.tif", root / f"{peer}.npy"):
                print(f"  {name:<16} {100 * within:8.2f} %        {100 * one:6.3f} %")
        print(f"ours (eulc):            {ours['seconds']:6.1f} s, peak RSS {ours['peak_rss_gb']:.2f} GB")
        print(f"odc-stac + xarray:      {odc['seconds']:6.1f} s, peak RSS {odc['peak_rss_gb']:.2f} GB")
        if ss is not None:
            print(f"stackstac + xarray:     {ss['seconds']:6.1f} s, peak RSS {ss['peak_rss_gb']:.2f} GB")
        print(f"floor (decode + warp):  {floor['seconds']:6.1f} s")
        print(
            f"ours/floor {ours['seconds'] / floor['seconds']:.2f}; odc/ours {odc['seconds'] / ours['seconds']:.2f}; "
            f"ours/odc memory {ours['peak_rss_gb'] / odc['peak_rss_gb']:.2f}"
        )
        print(
            f"ours_s={ours['seconds']:.2f} odc_s={odc['seconds']:.2f} floor_s={floor['seconds']:.2f} "
            f"ours_peak_gb={ours['peak_rss_gb']:.2f} odc_peak_gb={odc['peak_rss_gb']:.2f}"
        )


if __name__ == "__main__":
    main()
