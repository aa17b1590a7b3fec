"""Benchmark (issue #28): where a 10 km × 70-date feature tile spends its time, and the I/O floor
measured in the same run, for the shipped ``elc10-ndvi-l1`` bundle (10 NDVI features) or
``elc10-l1`` (35 features: S2 bands, indices, texture, Sentinel-1 σ⁰ by orbit pass).

The catalogue: for ``elc10-ndvi-l1`` :mod:`bench_stac_tile`'s (70 synthetic Sentinel-2 L2A scenes
in the real layout: UTM 33N, uint16 ``B04``/``B08``, uint8 ``CLP``, DEFLATE-tiled, over
10kmE467N253); for ``elc10-l1`` :func:`make_full_catalogue` (every band the 35 features read, 10 m
and 20 m as Sentinel-2 stores them, and 60 Sentinel-1 RTC dates). Read by
:func:`tiles.engine.run.features_from_stac` with its default blocks (:func:`tiles.engine.run.block_rows_for`).

- **ours**: the call in its own process, importing the feature engine only (the ``eulc features``
  command also imports the model-bundle code, torch and geopandas: about 0.3 GB more resident
  memory, not counted here).
- **profile**: the same call under :mod:`cProfile`; the cumulative seconds of the engine's own
  functions give the parts (:data:`PARTS`); profiling adds overhead, so the parts are read as
  shares of the profiled total.
- **floor**: every asset's window only decoded and warped (nearest) onto the tile's 10 m
  EPSG:3035 grid into a preallocated array (one per thread) through a rasterio ``WarpedVRT``, on as
  many threads as eulc computes with (GDAL releases the GIL). No mask, no mosaic, no reduction, no
  write: the lower bound of an engine that reads these files with GDAL's warper.

Run: ``python benchmarks/bench_feature_profile.py [--bundle elc10-l1]``. The last line is
``ours_s=<s> floor_s=<s> ratio=<ours/floor> ours_peak_gb=<GB>``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stac_tile import CELL, T, make_catalogue, run_child  # noqa: E402

PROFILED = r"""
import cProfile, json, pstats, sys, time
from pathlib import Path
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import load_spec
from model.bundle import load_bundle
from pipeline.stages.pretrained import models_dir
from pipeline.core.grid import TileId
from tiles.engine.run import features_from_stac

cat, dest = Path(sys.argv[1]), Path(sys.argv[2])
sp = load_spec("elc10")
sel = FeatureSelection.of(sp, load_bundle(models_dir() / sys.argv[5]).features, "bundle")
prof = cProfile.Profile()
t = time.perf_counter()
prof.runcall(features_from_stac, cat, sp, sel, 2021, TileId.parse(sys.argv[3]).window(), dest, level="L2A")
total = time.perf_counter() - t
stats = pstats.Stats(prof).stats
parts = {}
for (file, _, name), (_, _, _, cum, _) in stats.items():
    if name in sys.argv[4].split(",") and ("eulc" in file or "tiles" in file or "pipeline" in file):
        parts[name] = max(parts.get(name, 0.0), cum)
print(json.dumps({"seconds": total, "parts": parts}))
"""

FLOOR = r"""
import json, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import pystac, rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from pipeline.core.config import cpu_threads
from pipeline.core.grid import TileId

win = TileId.parse(sys.argv[2]).window()
h, w = win.shape
cat = pystac.Catalog.from_file(sys.argv[1])
hrefs = [a.get_absolute_href() for it in cat.get_items(recursive=True) for a in it.assets.values()]
local = threading.local()
sums = []

def read(i):
    if not hasattr(local, "buf"):  # one preallocated array per thread, reused for every asset
        local.buf = np.empty((h, w), np.float32)
    with rasterio.open(hrefs[i]) as src, WarpedVRT(src, crs="EPSG:3035", transform=win.transform, width=w, height=h,
                                                   resampling=Resampling.nearest, dtype="float32") as vrt:
        vrt.read(1, out=local.buf)
    sums.append(float(local.buf.mean()))

t = time.perf_counter()
with ThreadPoolExecutor(cpu_threads()) as pool:
    list(pool.map(read, range(len(hrefs))))
print(json.dumps({"seconds": time.perf_counter() - t, "assets": len(hrefs), "threads": cpu_threads(),
                  "mean": float(np.mean(sums))}))
"""

OURS = r"""
import json, sys, time
from pathlib import Path
from pipeline.core.grid import TileId
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import load_spec
from pipeline.stages.pretrained import models_dir
from tiles.engine.run import features_from_stac

def peak_gb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024 ** 2

cat, dest, cell, bundle = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
sp = load_spec("elc10")
names = json.loads((models_dir() / bundle / "bundle.json").read_text())["features"]  # no torch in this process
t = time.perf_counter()
features_from_stac(cat, sp, FeatureSelection.of(sp, names, "bundle"), 2021, TileId.parse(cell).window(), dest,
                   level="L2A")
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_gb": peak_gb(), "features": len(names)}))
"""

S2_BANDS_10M = ("B02", "B03", "B04", "B08")
S2_BANDS_20M = ("B05", "B06", "B07", "B11", "B12")
S1_DATES = 60


def make_full_catalogue(root: Path) -> Path:
    """The inputs of the shipped ``elc10-l1`` bundle's 35 features over the tile, in their real
    layout: per Sentinel-2 date (:data:`bench_stac_tile.T`) the 10 m bands ``B02 B03 B04 B08``
    and the 20 m bands ``B05 B06 B07 B11 B12`` (uint16 DN + 1000, L2A baseline 04.00) and the
    10 m s2cloudless ``CLP`` (uint8 %), UTM 33N, 512-px DEFLATE tiles; and :data:`S1_DATES`
    Sentinel-1 RTC items, half ascending and half descending (``sat:orbit_state``), ``vv``/``vh``
    linear γ⁰ float32 (0 = nodata) at 10 m in UTM 33N as Planetary Computer's
    ``sentinel-1-rtc`` holds them. Values: a seeded cover pattern × a season, gamma speckle."""
    import datetime as dt

    import numpy as np
    import pystac
    import rasterio
    from pyproj import Transformer
    from rasterio.transform import from_origin
    from scipy.ndimage import gaussian_filter

    from pipeline.core.grid import TileId

    left, bottom, right, top = TileId.parse(CELL).window().bounds
    to_utm = Transformer.from_crs(3035, 32633, always_xy=True)
    xs, ys = to_utm.transform([left, right, left, right], [bottom, bottom, top, top])
    x0 = np.floor((min(xs) - 300) / 20) * 20
    y1 = np.ceil((max(ys) + 300) / 20) * 20
    w20 = int(np.ceil((max(xs) + 300 - x0) / 20))
    h20 = int(np.ceil((y1 - (min(ys) - 300)) / 20))
    w10, h10 = 2 * w20, 2 * h20
    lon, lat = Transformer.from_crs(32633, 4326, always_xy=True).transform([x0, x0 + 20 * w20], [y1 - 20 * h20, y1])
    geom = {
        "type": "Polygon",
        "coordinates": [[[lon[0], lat[0]], [lon[1], lat[0]], [lon[1], lat[1]], [lon[0], lat[1]], [lon[0], lat[0]]]],
    }
    bbox = [lon[0], lat[0], lon[1], lat[1]]
    rng = np.random.default_rng(28)
    cover = gaussian_filter(rng.normal(size=(h10, w10)), 6)
    cover = ((cover - cover.min()) / np.ptp(cover)).astype(np.float32)

    def write(path: Path, arr: np.ndarray, res: int, dtype: str) -> None:
        h, w = arr.shape
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=w,
            height=h,
            count=1,
            dtype=dtype,
            crs="EPSG:32633",
            transform=from_origin(x0, y1, res, res),
            nodata=0,
            tiled=True,
            blockxsize=512,
            blockysize=512,
            compress="deflate",
        ) as dst:
            dst.write(arr.astype(dtype), 1)

    cat = pystac.Catalog("bench-s2-s1", "synthetic S2 L2A (all bands) and S1 RTC scenes over 10kmE467N253")
    for day in np.linspace(3, 360, T).astype(int):
        when = dt.datetime(2021, 1, 1, 10, 0, tzinfo=dt.UTC) + dt.timedelta(days=int(day))
        season = 0.5 + 0.5 * np.sin((day - 100) / 365 * 2 * np.pi)
        clouds = gaussian_filter(rng.normal(size=(h20, w20)), 12).repeat(2, 0).repeat(2, 1)
        thr = np.quantile(clouds, 0.7)
        clp = np.clip(np.where(clouds > thr, 60 + 400 * (clouds - thr), 5), 0, 100)
        item = pystac.Item(f"S2_{when:%Y%m%d}", geom, bbox, when, {"s2:processing_baseline": "04.00"})
        veg = cover * season
        for k, band in enumerate(S2_BANDS_10M + S2_BANDS_20M):
            refl = 0.03 + 0.05 * k / 9 + (0.35 if band in ("B08", "B07") else 0.05) * veg
            fine = refl + rng.normal(0, 0.004, veg.shape).astype(np.float32)
            arr = fine if band in S2_BANDS_10M else fine[::2, ::2]
            path = root / f"{item.id}_{band}.tif"
            write(
                path, np.round(np.clip(arr, 0.001, 1.5) * 10_000 + 1000), 10 if band in S2_BANDS_10M else 20, "uint16"
            )
            item.add_asset(band, pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
        path = root / f"{item.id}_CLP.tif"
        write(path, np.round(clp), 10, "uint8")
        item.add_asset("CLP", pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
        cat.add_item(item)
    for d in range(S1_DATES):
        when = dt.datetime(2021, 1, 2, 5 if d % 2 else 17, 0, tzinfo=dt.UTC) + dt.timedelta(days=6 * (d // 2))
        orbit = "descending" if d % 2 else "ascending"
        item = pystac.Item(f"S1_{when:%Y%m%dT%H}", geom, bbox, when, {"sat:orbit_state": orbit})
        for pol, mean in (("vv", 0.08), ("vh", 0.02)):
            arr = rng.gamma(4.0, mean / 4.0, (h10, w10)).astype(np.float32) * (1 + 0.5 * cover)
            path = root / f"{item.id}_{pol}.tif"
            write(path, arr, 10, "float32")
            item.add_asset(pol, pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
        cat.add_item(item)
    cat.normalize_hrefs(str(root))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


PARTS = [
    ("catalogue set-up", "items_from_catalog", 0),
    ("load: decode + warp (AssetReader, threads)", "load_stac_stack", 0),
    ("masked series + reduction (compute_features, threads)", "compute_features", 0),
    ("feature COG write", "write_feature_cog", 0),
]
"""The parts cProfile can time: since issue #28 the masked series and their reductions run on
worker threads (one series per thread, its windows on threads too), which cProfile does not
follow, so they are timed as one part from the calling thread."""


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default="elc10-ndvi-l1", choices=["elc10-ndvi-l1", "elc10-l1"])
    bundle = ap.parse_args().bundle
    with tempfile.TemporaryDirectory(prefix="eulc_bench_profile_") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        cat = make_catalogue(root) if bundle == "elc10-ndvi-l1" else make_full_catalogue(root)
        size_mb = sum(f.stat().st_size for f in root.glob("*.tif")) / 1e6
        what = "(B04, B08, CLP)" if bundle == "elc10-ndvi-l1" else f"(9 bands, CLP) + {S1_DATES} S1 dates × (vv, vh)"
        print(
            f"machine: {os.cpu_count()} CPU cores; bundle {bundle}; {T} S2 scenes × {what} over {CELL}, "
            f"{size_mb:.0f} MB (written in {time.perf_counter() - t0:.0f} s)"
        )
        ours = run_child(OURS, [str(cat), str(root / "ours.tif"), CELL, bundle])
        floor = run_child(FLOOR, [str(cat), CELL])
        names = ",".join(n for _, n, _ in PARTS)
        prof = run_child(PROFILED, [str(cat), str(root / "prof.tif"), CELL, names, bundle])
        print(f"ours (unprofiled): {ours['seconds']:.1f} s, peak RSS {ours['peak_rss_gb']:.2f} GB")
        print(f"profiled: {prof['seconds']:.1f} s; parts (cumulative, share of the profiled total):")
        top = 0.0
        for label, name, depth in PARTS:
            s = float(prof["parts"].get(name, 0.0))
            top += s if depth == 0 else 0.0
            print(f"  {'  ' * depth}{label:<48} {s:7.2f} s  {100 * s / prof['seconds']:5.1f} %")
        print(f"  {'other (blocks, tags, checks)':<48} {prof['seconds'] - top:7.2f} s")
        print(
            f"floor (decode + warp of the {floor['assets']:.0f} assets into an array, {floor['threads']:.0f} threads): "
            f"{floor['seconds']:.1f} s"
        )
        ratio = ours["seconds"] / floor["seconds"]
        print(
            f"ours_s={ours['seconds']:.2f} floor_s={floor['seconds']:.2f} ratio={ratio:.2f} "
            f"ours_peak_gb={ours['peak_rss_gb']:.2f}"
        )


if __name__ == "__main__":
    main()
