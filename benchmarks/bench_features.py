"""Benchmark: masked annual p5/p50/p98 + 12 monthly medians of a 1000 × 1000 × 70-date tile.

- **ours**: what the local engine does per row block (``tiles.engine.features``): each of the 15
  features reduced by :func:`tiles.engine.composite.nan_percentiles` (one sort per pixel and
  feature, numpy's linear ``nanpercentile`` exactly), block after block of 64 rows generated on
  the fly (seeded), one thread: the full cube never exists in memory, so the peak RSS is the
  figure a 10 km tile costs.
- **naive** (the peer): the same values as one in-memory ``xarray.DataArray``, then
  ``DataArray.quantile([.05, .5, .98], dim="time")`` and ``groupby("time.month").median()``.

Synthetic values, real layout: NDVI-like float32 in [−0.2, 0.9] with 35 % of the observations
masked (NaN, as clouds), 70 dates through one year (S2 A+B revisit after masking of bad scenes).
Each side runs in its own process; the peak RSS is that process's VmHWM.

Run: ``python benchmarks/bench_features.py``. The last line is
``ours_s=<seconds> naive_s=<seconds> peak_rss_gb=<GB of ours>``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

H = W = 1000
T = 70
CHUNK_ROWS = 64

CHILD = r"""
import json, sys, time
import numpy as np
H = W = 1000; T = 70; CHUNK = 64
times = np.datetime64("2021-01-03") + (np.arange(T) * 5.2).astype("timedelta64[D]")

def block(r0, rows):
    rng = np.random.default_rng(1000 + r0)
    v = rng.uniform(-0.2, 0.9, (T, rows, W)).astype(np.float32)
    v[rng.random(v.shape) < 0.35] = np.nan
    return v

def peak_gb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024 ** 2

mode = sys.argv[1]
t = time.perf_counter()
if mode == "ours":
    from tiles.engine.composite import nan_percentiles
    months = times.astype("datetime64[M]").astype(int) % 12 + 1
    out = []
    for r0 in range(0, H, CHUNK):
        v = block(r0, min(CHUNK, H - r0))
        feats = [nan_percentiles(v, (q,))[0] for q in (5.0, 50.0, 98.0)]  # one feature each, as the engine
        feats += [nan_percentiles(v[months == m], (50.0,))[0] for m in range(1, 13)]
        out.append(np.stack(feats))
    res = np.concatenate(out, axis=1)
    check = float(np.nanmean(res[1]))
else:
    import xarray as xr
    cube = np.concatenate([block(r0, min(CHUNK, H - r0)) for r0 in range(0, H, CHUNK)], axis=1)
    arr = xr.DataArray(cube, dims=("time", "y", "x"), coords={"time": times})
    q = arr.quantile([0.05, 0.5, 0.98], dim="time", skipna=True)
    m = arr.groupby("time.month").median(dim="time", skipna=True)
    res = np.concatenate([q.values, m.values])
    check = float(np.nanmean(res[1]))
dt = time.perf_counter() - t
np.save(sys.argv[2], res[:, :50, :50])
print(json.dumps({"seconds": dt, "peak_rss_gb": peak_gb(), "mean_p50": check, "bands": int(res.shape[0])}))
"""


def _run(mode: str, sample: str) -> dict[str, float]:
    p = subprocess.run([sys.executable, "-c", CHILD, mode, sample], capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    import numpy as np

    print(
        f"machine: {os.cpu_count()} CPU cores; tile {H} × {W} × {T} dates, 35 % masked; "
        "annual p5/p50/p98 + 12 monthly medians"
    )
    ours = _run("ours", "/tmp/eulc_bench_ours.npy")
    print(
        f"ours (nan_percentiles per feature, {CHUNK_ROWS}-row blocks, one thread): {ours['seconds']:.1f} s, "
        f"peak RSS {ours['peak_rss_gb']:.2f} GB"
    )
    naive = _run("naive", "/tmp/eulc_bench_naive.npy")
    print(
        f"naive (xarray quantile + groupby month median, in memory): {naive['seconds']:.1f} s, "
        f"peak RSS {naive['peak_rss_gb']:.2f} GB"
    )
    a, b = np.load("/tmp/eulc_bench_ours.npy"), np.load("/tmp/eulc_bench_naive.npy")
    same = np.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)
    print(
        f"same values on a 50 × 50 corner (15 bands): {same}; speed-up {naive['seconds'] / ours['seconds']:.2f}×, "
        f"memory {ours['peak_rss_gb'] / naive['peak_rss_gb']:.2f}× the peer's"
    )
    print(f"ours_s={ours['seconds']:.2f} naive_s={naive['seconds']:.2f} peak_rss_gb={ours['peak_rss_gb']:.2f}")


if __name__ == "__main__":
    main()
