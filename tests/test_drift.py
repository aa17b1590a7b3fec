"""Drift check on real data: the ELC10 table against the real Slovenia feature COG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from pipeline.assess.drift import psi
from pipeline.core.cog import write_cog

from .test_cli import eulc


def test_psi_is_zero_for_the_same_sample_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 20_000)
    assert psi(a, a) == pytest.approx(0.0, abs=1e-12)
    assert psi(a, rng.normal(0, 1, 20_000)) < 0.01
    assert 0.1 < psi(a, a + 0.5) < psi(a, a + 1.0)


def test_drift_flags_a_shifted_tile(sample_table: Path, slovenia_features: Path, tmp_path: Path) -> None:
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    (tiles / "slo.tif").write_bytes(slovenia_features.read_bytes())
    with rasterio.open(slovenia_features) as s:
        data, t, desc = s.read(), s.transform, list(s.descriptions)
    shifted = data.copy()
    i = desc.index("ndvi_p50")
    shifted[i] = shifted[i] + 4000  # NDVI stored x 10,000: +0.4
    write_cog(tiles / "slo_shifted.tif", shifted, t, "EPSG:3035", np.nan, descriptions=desc)
    p = eulc("drift", "--table", str(sample_table), "--features-dir", str(tiles), "--out", str(tmp_path / "d.csv"),
             "--fail-on-shift")
    df = pd.read_csv(tmp_path / "d.csv")
    assert len(df) == 2 * len(desc) and set(df["tile"]) == {"slo", "slo_shifted"}
    row = df[(df.tile == "slo_shifted") & (df.feature == "ndvi_p50")].iloc[0]
    base = df[(df.tile == "slo") & (df.feature == "ndvi_p50")].iloc[0]
    assert row["flag"] == "shift" and row["psi"] > base["psi"] + 1
    assert row["median_tile"] == pytest.approx(base["median_tile"] + 4000, rel=1e-6)
    assert p.returncode == 1 and "shifted" in p.stdout  # --fail-on-shift
