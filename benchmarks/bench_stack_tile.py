"""Benchmark: one 10 km EEA tile × 70 dates through the local engine's *manifest* path (issue #16).

The same 70 synthetic scenes as ``bench_stac_tile.py`` (UTM 33N, 10 m, uint16 ``B04``/``B08`` and
uint8 ``CLP`` per date, DEFLATE-tiled, covering 10kmE467N253 plus a margin) are listed in a stack
manifest (one ``bands`` item per file) and computed by :func:`tiles.engine.run.features_from_stack`
for the 10 NDVI features of ``elc10-ndvi-l1``, in 256-row blocks.

- **ours**: each block reads only its window (plus the texture halo) of every file: GDAL's warper
  reads the source blocks that window needs (``pipeline.core.warp.read_on_grid``).
- **peer**: the reader eulc had before: every file opened whole with rioxarray and reprojected
  onto the block (the whole file decoded once per block), run through the same engine.

Each side runs in its own process; peak RSS is that process's VmHWM; both must write the same
values. Run: ``python benchmarks/bench_stack_tile.py``. The last line is
``ours_s=<s> peer_s=<s> ours_peak_gb=<GB> peer_peak_gb=<GB>``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml
from bench_stac_tile import CELL, T, make_catalogue, print_comparison, run_child

CHILD = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import load_spec
from model.bundle import load_bundle
from pipeline.stages.pretrained import models_dir
import tiles.engine.stack as stack
from tiles.engine.run import features_from_stack

def whole_file_reader(path, window, nodata):  # the peer: the pre-issue-16 reader
    import rioxarray, xarray as xr
    from rasterio.enums import Resampling
    da = rioxarray.open_rasterio(path, masked=True)
    if nodata is not None:
        da = da.where(da != nodata).rio.write_nodata(np.nan, encoded=False)
    out = da.rio.reproject(window.grid.crs, transform=window.transform, shape=window.shape,
                           resampling=Resampling.nearest, nodata=np.nan)
    return np.asarray(out.values, dtype=np.float32)

def peak_gb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024 ** 2

man, dest, side = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if side == "peer":
    stack._read_on_grid = whole_file_reader
sp = load_spec("elc10")
sel = FeatureSelection.of(sp, load_bundle(models_dir() / "elc10-ndvi-l1").features, "bundle")
t = time.perf_counter()
features_from_stack(man, sp, sel, 2021, dest)
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_gb": peak_gb()}))
"""


def _manifest(root: Path) -> Path:
    """One ``bands`` item per scene file; times from the catalogue's item names."""
    items = []
    for p in sorted(root.glob("S2_*_*.tif")):
        day, band = p.stem.split("_")[1], p.stem.split("_")[2]
        when = f"{day[:4]}-{day[4:6]}-{day[6:]}T10:00:00"
        items.append(
            {
                "path": p.name,
                "kind": "bands",
                "time": when,
                "bands": [band],
                "to_physical": 1e-4 if band != "CLP" else 1.0,
                "nodata": 0,
            }
        )
    man = root / "stack.yaml"
    man.write_text(yaml.safe_dump({"name": "bench", "level": "L2A", "root": ".", "items": items}))
    return man


def main() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory(prefix="eulc_bench_stack_") as tmp:
        root = Path(tmp)
        make_catalogue(root)
        man = _manifest(root)
        size_mb = sum(f.stat().st_size for f in root.glob("*.tif")) / 1e6
        print(f"machine: {os.cpu_count()} CPU cores; {T} scenes × (B04, B08, CLP) over {CELL}, {size_mb:.0f} MB")
        ours = run_child(CHILD, [str(man), str(root / "ours.tif"), "ours"], env)
        print(f"ours (windowed reads): {ours['seconds']:.1f} s, peak RSS {ours['peak_rss_gb']:.2f} GB")
        peer = run_child(CHILD, [str(man), str(root / "peer.tif"), "peer"], env)
        print(f"peer (whole file per block): {peer['seconds']:.1f} s, peak RSS {peer['peak_rss_gb']:.2f} GB")
        print_comparison(ours, peer, root / "ours.tif", root / "peer.tif")


if __name__ == "__main__":
    main()
