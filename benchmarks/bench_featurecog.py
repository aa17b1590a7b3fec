"""Benchmark: bytes and decode time of a 10 km feature COG, int16 (ours) against float32 (the peer).

The tile holds the 10 NDVI features of ``elc10`` (NDVI × 1000, which fits 16 bits) for 1000 × 1000
pixels whose values are real ELC10 LUCAS rows drawn with replacement (a map of real feature
vectors; neighbouring pixels are unrelated, so both compress worse than a real scene would).
Both are written by ``write_feature_cog`` (int16: DEFLATE with predictor 2 and GDAL scale, as GEE
exports; float32: ZSTD since issue #16) and read back whole through ``FeatureReader`` (stored
units, float32), best of 3; the float32 DEFLATE file the engine wrote before is a third row. Two cases: (a) the
rows as ELC10 exported them from GEE (whole stored units), (b) with the sub-unit fractions the
local engine's float output carries (stored value + U(-0.5, 0.5)), the case float32 COGs had.

Run: ``python benchmarks/bench_featurecog.py``. The last line is
``int16_mb=.. float32_mb=.. size_ratio=.. int16_read_s=.. float32_read_s=.. read_ratio=..
float32_deflate_mb=.. float32_deflate_read_s=..``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.cog import write_cog
from pipeline.core.config import data_dir
from pipeline.core.featurecog import write_feature_cog
from pipeline.core.grid import TileId
from pipeline.core.reader import FeatureReader
from pipeline.core.spec import FeatureSpec, load_spec

NAMES = [
    "ndvi_p5",
    "ndvi_p25",
    "ndvi_p50",
    "ndvi_p75",
    "ndvi_p95",
    "ndvi_summer",
    "ndvi_winter",
    "ndvi_spring",
    "ndvi_fall",
    "ndvi_texture_sd",
]


def _read_seconds(path: Path) -> float:
    """Best of 3 whole reads through FeatureReader (stored units, float32)."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        with FeatureReader(path, NAMES) as r:
            r.read()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    base = load_spec("elc10").subset(NAMES)
    specs = {
        d: FeatureSpec.model_validate({**base.model_dump(mode="json"), "export_dtype": d}) for d in ("int16", "float32")
    }
    df = pd.read_csv(data_dir() / "elc10_lucas2018" / "lucas2018_elc10_s2_s1_features.csv.gz", usecols=NAMES).dropna()
    w = TileId.parse("10kmE467N253").window()
    vals = df[NAMES].to_numpy(np.float32)[np.random.default_rng(0).integers(0, len(df), w.height * w.width)]
    vals = vals.T.reshape(len(NAMES), *w.shape)
    frac = vals + np.random.default_rng(1).uniform(-0.5, 0.5, vals.shape).astype(np.float32)
    for case, v in (("(a) whole stored units", vals), ("(b) local-engine fractions", frac)):
        res: dict[str, tuple[float, float]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for d, spec in specs.items():
                path = write_feature_cog(Path(tmp) / f"{d}.tif", v, spec, w, 2018, "L1C", [])
                best = _read_seconds(path)
                res[d] = (path.stat().st_size / 1e6, best)
                print(f"{case} {d} ({'DEFLATE' if d == 'int16' else 'ZSTD'}): {res[d][0]:.1f} MB, read {best:.2f} s")
            # the float32 layout before issue #16: DEFLATE (what GDAL tools write by default)
            path = write_cog(
                Path(tmp) / "float32_deflate.tif",
                v,
                w.transform,
                w.grid.crs,
                np.nan,
                descriptions=NAMES,
                tags={"spec": "elc10", "year": "2018"},
            )
            best = _read_seconds(path)
            res["float32_deflate"] = (path.stat().st_size / 1e6, best)
            print(f"{case} float32 (DEFLATE, before): {res['float32_deflate'][0]:.1f} MB, read {best:.2f} s")
    (mb16, s16), (mb32, s32), (mbd, sd) = res["int16"], res["float32"], res["float32_deflate"]
    print(f"float32 ZSTD / DEFLATE: size {mb32 / mbd:.2f}, read time {s32 / sd:.2f}")
    print(
        f"int16_mb={mb16:.1f} float32_mb={mb32:.1f} size_ratio={mb16 / mb32:.2f} "
        f"int16_read_s={s16:.2f} float32_read_s={s32:.2f} read_ratio={s16 / s32:.2f} "
        f"float32_deflate_mb={mbd:.1f} float32_deflate_read_s={sd:.2f}"
    )


if __name__ == "__main__":
    main()
