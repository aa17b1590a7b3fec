"""Benchmark: one 10 km EEA tile × 70 dates through the whole STAC path (issue #7's memory bound).

A static STAC catalogue of 70 synthetic Sentinel-2 scenes in the real layout (UTM 33N, 10 m,
uint16 DN ``B04``/``B08`` and a uint8 s2cloudless ``CLP`` asset per date, DEFLATE-tiled GeoTIFF,
each scene covering the cell 10kmE467N253 near Ljubljana plus a margin) is read by
:func:`tiles.engine.run.features_from_stac` for the 10 NDVI features of the shipped
``elc10-ndvi-l1`` bundle (p5–p95, four seasonal medians, the 7 × 7 texture): odc-stac
reprojection onto EPSG:3035, CLP ≥ 40 masking, daily mosaic, composites, feature COG.

- **ours**: row blocks of 256 (the default): each block's stack is loaded and reduced in turn.
- **peer**: the same call with the whole tile as one block (``block_rows=1000``): the way a
  loader that materialises the tile's (time, y, x) cube would run.

Values: a seeded land-cover pattern (smooth fields) × a seasonal NDVI curve + noise; clouds
are seeded blobs with CLP 60–100 % (≈ 30 % of observations). Each side runs in its own process;
peak RSS is that process's VmHWM. Both sides must write the same feature values.

Run: ``python benchmarks/bench_stac_tile.py``. The last line is
``ours_s=<s> peer_s=<s> ours_peak_gb=<GB> peer_peak_gb=<GB>``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

T = 70
CELL = "10kmE467N253"
MARGIN_M = 300

CHILD = r"""
import json, sys, time
from pathlib import Path
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import load_spec
from model.bundle import load_bundle
from pipeline.stages.pretrained import models_dir
from pipeline.core.grid import TileId
from tiles.engine.run import features_from_stac

def peak_gb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024 ** 2

cat, dest, rows = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
sp = load_spec("elc10")
sel = FeatureSelection.of(sp, load_bundle(models_dir() / "elc10-ndvi-l1").features, "bundle")
t = time.perf_counter()
features_from_stac(cat, sp, sel, 2021, TileId.parse(sys.argv[4]).window(), dest, level="L2A", block_rows=rows)
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_gb": peak_gb(), "features": len(sel.names)}))
"""


def make_catalogue(root: Path) -> Path:
    """Write the 70 synthetic scenes and their static catalogue under ``root``; return catalog.json."""
    import pystac
    import rasterio
    from pyproj import Transformer
    from rasterio.transform import from_origin
    from scipy.ndimage import gaussian_filter

    from pipeline.core.grid import TileId

    left, bottom, right, top = TileId.parse(CELL).window().bounds
    to_utm = Transformer.from_crs(3035, 32633, always_xy=True)
    xs, ys = to_utm.transform([left, right, left, right], [bottom, bottom, top, top])
    x0, y1 = np.floor(min(xs) / 10) * 10 - MARGIN_M, np.ceil(max(ys) / 10) * 10 + MARGIN_M
    w = int((max(xs) + MARGIN_M - x0) // 10) + 1
    h = int((y1 - (min(ys) - MARGIN_M)) // 10) + 1
    transform = from_origin(x0, y1, 10, 10)
    lon, lat = Transformer.from_crs(32633, 4326, always_xy=True).transform([x0, x0 + 10 * w], [y1 - 10 * h, y1])
    geom = {
        "type": "Polygon",
        "coordinates": [[[lon[0], lat[0]], [lon[1], lat[0]], [lon[1], lat[1]], [lon[0], lat[1]], [lon[0], lat[0]]]],
    }
    rng = np.random.default_rng(7)
    cover = gaussian_filter(rng.normal(size=(h, w)), 6)
    cover = (cover - cover.min()) / np.ptp(cover)  # 0 bare … 1 dense vegetation, field-sized patches
    prof = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": 1,
        "crs": "EPSG:32633",
        "transform": transform,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
    }
    cat = pystac.Catalog("bench-s2", "synthetic S2 L2A scenes over 10kmE467N253")
    days = np.linspace(3, 360, T).astype(int)
    for day in days:
        when = dt.datetime(2021, 1, 1, 10, 0, tzinfo=dt.UTC) + dt.timedelta(days=int(day))
        season = 0.5 + 0.5 * np.sin((day - 100) / 365 * 2 * np.pi)
        ndvi = np.clip(0.1 + 0.7 * cover * season + rng.normal(0, 0.03, (h, w)), -0.2, 0.95)
        red = 0.03 + 0.08 * (1 - cover) + rng.normal(0, 0.005, (h, w))
        nir = red * (1 + ndvi) / (1 - ndvi)
        clouds = gaussian_filter(rng.normal(size=(h, w)), 25)
        clp = np.clip(
            np.where(clouds > np.quantile(clouds, 0.7), 60 + 400 * (clouds - np.quantile(clouds, 0.7)), 5), 0, 100
        )
        item = pystac.Item(
            f"S2_{when:%Y%m%d}",
            geom,
            [lon[0], lat[0], lon[1], lat[1]],
            when,
            {"s2:processing_baseline": "04.00", "eo:cloud_cover": float((clp >= 40).mean() * 100)},
        )
        for key, arr, dtype in (("B04", red, "uint16"), ("B08", nir, "uint16"), ("CLP", clp, "uint8")):
            path = root / f"{item.id}_{key}.tif"
            values = np.round(arr * 10_000 + 1000) if dtype == "uint16" else np.round(arr)
            with rasterio.open(path, "w", dtype=dtype, nodata=0, **prof) as dst:
                dst.write(values.astype(dtype), 1)
            item.add_asset(key, pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
        cat.add_item(item)
    cat.normalize_hrefs(str(root))  # the assets lie inside the catalogue's folder tree
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


def run_child(code: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run one side in a process of its own; its last stdout line is a JSON dict of figures."""
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def print_comparison(ours: dict[str, float], peer: dict[str, float], ours_tif: Path, peer_tif: Path) -> None:
    """Check that both sides wrote the same values, then print the ratios and the last line."""
    import rasterio

    with rasterio.open(ours_tif) as a, rasterio.open(peer_tif) as b:
        same = np.allclose(a.read(), b.read(), rtol=1e-6, atol=1e-6, equal_nan=True)
        nodata = [int(a.tags(i + 1)["nodata_pixels"]) for i in range(a.count)]
    print(f"same feature values: {same}; nodata pixels per feature {nodata}")
    print(
        f"ratio: time {ours['seconds'] / peer['seconds']:.2f}× the peer's, "
        f"memory {ours['peak_rss_gb'] / peer['peak_rss_gb']:.2f}× the peer's"
    )
    print(
        f"ours_s={ours['seconds']:.2f} peer_s={peer['seconds']:.2f} "
        f"ours_peak_gb={ours['peak_rss_gb']:.2f} peer_peak_gb={peer['peak_rss_gb']:.2f}"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="eulc_bench_stac_") as tmp:
        root = Path(tmp)
        cat = make_catalogue(root)
        size_mb = sum(f.stat().st_size for f in root.glob("*.tif")) / 1e6
        print(f"machine: {os.cpu_count()} CPU cores; {T} scenes × (B04, B08, CLP) over {CELL}, {size_mb:.0f} MB")
        ours = run_child(CHILD, [str(cat), str(root / "ours.tif"), "256", CELL])
        print(
            f"ours (256-row blocks): {ours['seconds']:.1f} s, peak RSS {ours['peak_rss_gb']:.2f} GB, "
            f"{ours['features']} features"
        )
        peer = run_child(CHILD, [str(cat), str(root / "peer.tif"), "1000", CELL])
        print(f"peer (whole tile as one block): {peer['seconds']:.1f} s, peak RSS {peer['peak_rss_gb']:.2f} GB")
        print_comparison(ours, peer, root / "ours.tif", root / "peer.tif")


if __name__ == "__main__":
    main()
