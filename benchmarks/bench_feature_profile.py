"""Benchmark (issue #28, first part): where a 10 km × 70-date feature tile spends its time, and
the I/O floor measured in the same run.

The tile and catalogue are :mod:`bench_stac_tile`'s: 70 synthetic Sentinel-2 L2A scenes in the
real layout (UTM 33N, uint16 ``B04``/``B08``, uint8 ``CLP``, DEFLATE-tiled) over 10kmE467N253,
read by :func:`tiles.engine.run.features_from_stac` for the 10 NDVI features of the shipped
``elc10-ndvi-l1`` bundle, in 256-row blocks (the default).

- **profile**: the same call under :mod:`cProfile`; the cumulative seconds of the engine's own
  functions give the parts: catalogue set-up (``items_from_catalog``), load = decode + warp
  (``load_stac_stack``: odc-stac until issue #28's second part, eulc's asset reader since),
  masked series (``_masked_series``: expression, cloud mask, daily mosaic, of which
  ``_daily_mosaic`` apart), reduction (``_reduce_with_siblings``: the
  percentiles and medians of one series and window in one sort, other statistics in
  ``_reduce``, of which the texture filter ``_texture_sd``) and the COG write
  (``write_feature_cog``). Parts nest as indented; profiling adds overhead, so the parts are
  read as shares of the profiled total, and the unprofiled total is measured in its own process.
- **floor**: every source window only decoded and warped (nearest) onto the tile's 10 m
  EPSG:3035 grid into a preallocated array: each of the 210 assets through a rasterio
  ``WarpedVRT``, on as many threads as eulc computes with (GDAL releases the GIL). No mask, no
  mosaic, no reduction, no write: the lower bound of any engine that reads these files.

Run: ``python benchmarks/bench_feature_profile.py``. The last line is
``ours_s=<s> floor_s=<s> ratio=<ours/floor> ours_peak_gb=<GB>``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stac_tile import CELL, CHILD, T, make_catalogue, run_child  # noqa: E402

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
sel = FeatureSelection.of(sp, load_bundle(models_dir() / "elc10-ndvi-l1").features, "bundle")
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
import json, sys, time
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
out = np.empty((len(hrefs), h, w), np.uint16)

def read(i):
    with rasterio.open(hrefs[i]) as src, WarpedVRT(src, crs="EPSG:3035", transform=win.transform, width=w, height=h,
                                                   resampling=Resampling.nearest) as vrt:
        vrt.read(1, out=out[i])

t = time.perf_counter()
with ThreadPoolExecutor(cpu_threads()) as pool:
    list(pool.map(read, range(len(hrefs))))
print(json.dumps({"seconds": time.perf_counter() - t, "assets": len(hrefs), "threads": cpu_threads(),
                  "mean": float(out.mean())}))
"""

PARTS = [
    ("catalogue set-up", "items_from_catalog", 0),
    ("load: decode + warp (AssetReader)", "load_stac_stack", 0),
    ("masked series: expression, cloud mask, mosaic", "_masked_series", 0),
    ("daily mosaic", "_daily_mosaic", 1),
    ("reduction (percentiles, medians, texture)", "_reduce_with_siblings", 0),
    ("other statistics (the texture's median)", "_reduce", 1),
    ("texture filter (7 × 7 std. dev. of the median)", "_texture_sd", 2),
    ("feature COG write", "write_feature_cog", 0),
]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="eulc_bench_profile_") as tmp:
        root = Path(tmp)
        cat = make_catalogue(root)
        size_mb = sum(f.stat().st_size for f in root.glob("*.tif")) / 1e6
        print(f"machine: {os.cpu_count()} CPU cores; {T} scenes × (B04, B08, CLP) over {CELL}, {size_mb:.0f} MB")
        ours = run_child(CHILD, [str(cat), str(root / "ours.tif"), "256", CELL])
        floor = run_child(FLOOR, [str(cat), CELL])
        prof = run_child(PROFILED, [str(cat), str(root / "prof.tif"), CELL, ",".join(n for _, n, _ in PARTS)])
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
