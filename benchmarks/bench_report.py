"""Benchmark: a 100 km × 100 km map (10⁸ px) against a larger reference in another CRS and
resolution: the windowed comparison (ours) against a whole-array peer, time and peak memory.

Inputs (generated once into ``--out``, reused by later runs):

- **map**: 10,000 × 10,000 uint8 Level-1 class COG, EPSG:3035, 10 m, over 4.20–4.30 × 10⁶ E,
  2.95–3.05 × 10⁶ N (Hesse, Germany), written window by window;
- **reference**: CLC+ Backbone-like codes (uint8, 1–11, 254 outside area, nodata 255) on a
  7,500 × 7,500 grid of 20 m in EPSG:32632 (UTM 32N) covering 150 km × 150 km around the map.

Both come from one smooth synthetic land-cover field evaluated at each raster's own pixel
centres (the map through the CLC+ crosswalk, with 8 % of its pixels changed at random), so their
agreement is known to be high but not perfect, and no pixel lines up across the two grids.

Sides, each in a fresh process with its peak RSS (VmHWM):

- **ours**: ``pipeline.assess.agreement.agreement`` (windowed: the reference warped onto each
  2,048-px window of the map's grid in its own dtype, confusion accumulated), and then the whole
  ``eulc report`` (``write_report``: disagreement COG, blocks, quicklooks, HTML);
- **peer**: the whole-array path this replaced: the map read whole, the reference reprojected
  onto the whole map grid at once (``read_on_grid``, float64 with NaN as before), crosswalked
  through a table of its distinct codes and cross-tabulated with one ``bincount``.

The two confusion matrices are compared (they differ only where GDAL's approximate coordinate
transformer, which the peer's one-shot reprojection uses, picks another source pixel than the
exact transform the windowed path uses).

Run: ``python benchmarks/bench_report.py [--out /tmp/eulc-bench-report]``. The last line is
``ours_s=.. peer_s=.. peak_rss_gb=..`` (ours = the windowed agreement; peak = the larger of
ours and the full report).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from affine import Affine
from pyproj import Transformer

from pipeline.core.cog import cog_writer
from pipeline.core.legend import Crosswalk, level1_legend

MAP_ORIGIN = (4_200_000.0, 3_050_000.0)  # EPSG:3035, top-left
MAP_PX = 10_000
REF_CRS, REF_RES_M, REF_PX = "EPSG:32632", 20.0, 7_500
FLIP = 0.08


def _field_codes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CLC+ Backbone codes 1–11 (uint8) of the synthetic land-cover field at EPSG:3035 points (m)."""
    u, v = x / 1000.0, y / 1000.0
    f = (
        np.sin(u / 3.1)
        + np.sin(v / 2.3 + 0.5 * np.sin(u / 7.0))
        + 0.6 * np.sin((u + v) / 1.3)
        + 0.3 * np.sin(u / 0.37) * np.cos(v / 0.41)
    )
    return (np.clip((f + 2.9) / 5.8, 0, 0.9999) * 11).astype(np.uint8) + 1


def _make_inputs(out: Path) -> tuple[Path, Path]:
    leg = level1_legend()
    map_path, ref_path = out / "map_100km.tif", out / "reference_utm32_20m.tif"
    lut = np.full(256, 255, np.uint8)
    codes = np.arange(1, 12)
    ids, _ = Crosswalk.shipped("clcplus_backbone").apply(codes)
    lut[codes] = np.where(ids >= 0, ids, 255)
    rng = np.random.default_rng(0)
    if not map_path.is_file():
        t = Affine(10.0, 0, MAP_ORIGIN[0], 0, -10.0, MAP_ORIGIN[1])
        with cog_writer(
            map_path,
            (MAP_PX, MAP_PX),
            "uint8",
            t,
            "EPSG:3035",
            255,
            description="class",
            tags={"legend": leg.to_json()},
            colormap=leg.colormap(),
            resampling="mode",
        ) as ds:
            for r0 in range(0, MAP_PX, 1000):
                cols, rows = np.meshgrid(np.arange(MAP_PX) + 0.5, np.arange(r0, r0 + 1000) + 0.5)
                cls = lut[_field_codes(t.c + cols * 10.0, t.f - rows * 10.0)]
                flip = rng.random(cls.shape) < FLIP
                cls[flip] = rng.integers(0, 7, int(flip.sum()), dtype=np.uint8)
                ds.write(cls, 1, window=((r0, r0 + 1000), (0, MAP_PX)))
    if not ref_path.is_file():
        to_utm = Transformer.from_crs("EPSG:3035", REF_CRS, always_xy=True)
        cx, cy = to_utm.transform(MAP_ORIGIN[0] + 50_000, MAP_ORIGIN[1] - 50_000)
        half = REF_PX * REF_RES_M / 2
        t = Affine(REF_RES_M, 0, round(cx - half), 0, -REF_RES_M, round(cy + half))
        to_laea = Transformer.from_crs(REF_CRS, "EPSG:3035", always_xy=True)
        with cog_writer(
            ref_path, (REF_PX, REF_PX), "uint8", t, REF_CRS, 255, description="CLC+ Backbone-like", resampling="mode"
        ) as ds:
            for r0 in range(0, REF_PX, 500):
                cols, rows = np.meshgrid(np.arange(REF_PX) + 0.5, np.arange(r0, r0 + 500) + 0.5)
                x, y = to_laea.transform(t.c + cols * REF_RES_M, t.f - rows * REF_RES_M)
                code = _field_codes(np.asarray(x), np.asarray(y))
                code[:, :40] = 254  # an "outside area" strip (dropped by the crosswalk)
                ds.write(code, 1, window=((r0, r0 + 500), (0, REF_PX)))
    return map_path, ref_path


CHILD = r"""
import json, sys, time
from pathlib import Path
import numpy as np
side, map_path, ref_path, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
t = time.perf_counter()
if side == "ours":
    from pipeline.assess.agreement import agreement
    from pipeline.core.legend import Crosswalk, level1_legend
    res = agreement(map_path, ref_path, Crosswalk.shipped("clcplus_backbone"), level1_legend())
    cm = res["confusion"]["matrix"]
elif side == "report":
    from pipeline.assess.report import write_report
    res = write_report(map_path, ref_path, "clcplus_backbone", out / "report")
    cm = res["confusion"]["pixels"]
else:  # the whole-array peer
    import rasterio
    from rasterio.enums import Resampling
    from pipeline.core.legend import Crosswalk
    from pipeline.core.warp import read_on_grid
    with rasterio.open(map_path) as m:
        mp = m.read(1)
        grid = (m.transform, m.crs, (m.height, m.width))
    codes = read_on_grid(ref_path, *grid, resampling=Resampling.nearest, dtype=np.float64, fill=np.nan)
    finite = np.isfinite(codes)
    uniq, inv = np.unique(codes[finite].astype(np.int64), return_inverse=True)
    ids_u, _ = Crosswalk.shipped("clcplus_backbone").apply(uniq)
    ids = np.full(mp.shape, -1, np.int16)
    ids[finite] = ids_u[inv]
    valid = (mp != 255) & (ids >= 0)
    cm = np.bincount(mp[valid].astype(np.int64) * 7 + ids[valid], minlength=49).reshape(7, 7).tolist()
seconds = time.perf_counter() - t
hwm_kb = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "peak_rss_gb": hwm_kb / 1024 ** 2, "confusion": cm}))
"""


def _run(side: str, map_path: Path, ref_path: Path, out: Path) -> dict[str, object]:
    p = subprocess.run(
        [sys.executable, "-c", CHILD, side, str(map_path), str(ref_path), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(p.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/eulc-bench-report"))
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    map_path, ref_path = _make_inputs(out)
    print(
        f"inputs: {map_path.name} ({MAP_PX:,} × {MAP_PX:,} px, EPSG:3035, 10 m, "
        f"{map_path.stat().st_size / 1e6:.0f} MB), {ref_path.name} ({REF_PX:,} × {REF_PX:,} px, {REF_CRS}, "
        f"{REF_RES_M:g} m, {ref_path.stat().st_size / 1e6:.0f} MB); ready in {time.perf_counter() - t:.0f} s; "
        f"{os.cpu_count()} CPU cores"
    )
    ours = _run("ours", map_path, ref_path, out)
    print(f"ours, windowed agreement: {ours['seconds']:.1f} s, peak RSS {ours['peak_rss_gb']:.2f} GB")
    peer = _run("peer", map_path, ref_path, out)
    print(f"peer, whole-array confusion: {peer['seconds']:.1f} s, peak RSS {peer['peak_rss_gb']:.2f} GB")
    rep = _run("report", map_path, ref_path, out)
    print(
        f"ours, full eulc report (disagreement COG, blocks, figures, HTML): {rep['seconds']:.1f} s, "
        f"peak RSS {rep['peak_rss_gb']:.2f} GB"
    )
    a, b = np.asarray(ours["confusion"]), np.asarray(peer["confusion"])
    assert (np.asarray(rep["confusion"]) == a).all(), "the report's confusion differs from the agreement's"
    print(
        f"compared pixels: ours {a.sum():,}, peer {b.sum():,}; overall agreement ours {np.trace(a) / a.sum():.6f}, "
        f"peer {np.trace(b) / b.sum():.6f}; cells differing by {np.abs(a - b).sum():,} px in all "
        f"({np.abs(a - b).sum() / b.sum():.2e} of the compared pixels)"
    )
    print(
        f"ratios: time ours/peer {ours['seconds'] / peer['seconds']:.2f}, "  # type: ignore[operator]
        f"memory ours/peer {ours['peak_rss_gb'] / peer['peak_rss_gb']:.2f}"
    )  # type: ignore[operator]
    peak = max(ours["peak_rss_gb"], rep["peak_rss_gb"])  # type: ignore[type-var]
    print(f"ours_s={ours['seconds']:.1f} peer_s={peer['seconds']:.1f} peak_rss_gb={peak:.2f}")


if __name__ == "__main__":
    main()
