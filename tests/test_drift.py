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


def _patch_and_shifted(features: Path, tmp_path: Path, shift: float) -> tuple[Path, list[str]]:
    """A folder with the real Slovenia feature COG (``slo``) and a copy whose ``ndvi_p50`` is
    raised by ``shift`` stored units (``slo_shifted``); and the band names."""
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    (tiles / "slo.tif").write_bytes(features.read_bytes())
    with rasterio.open(features) as s:
        data, t, desc = s.read(), s.transform, list(s.descriptions)
    data[desc.index("ndvi_p50")] += shift
    write_cog(tiles / "slo_shifted.tif", data, t, "EPSG:3035", np.nan, descriptions=desc)
    return tiles, desc


def test_drift_flags_a_shifted_tile(sample_table: Path, slovenia_features: Path, tmp_path: Path) -> None:
    tiles, desc = _patch_and_shifted(slovenia_features, tmp_path, 4000)  # NDVI stored x 1,000: +4
    p = eulc(
        "drift",
        "--table",
        str(sample_table),
        "--features-dir",
        str(tiles),
        "--out",
        str(tmp_path / "d.csv"),
        "--fail-on-shift",
    )
    df = pd.read_csv(tmp_path / "d.csv")
    assert len(df) == 2 * len(desc) and set(df["tile"]) == {"slo", "slo_shifted"}
    row = df[(df.tile == "slo_shifted") & (df.feature == "ndvi_p50")].iloc[0]
    base = df[(df.tile == "slo") & (df.feature == "ndvi_p50")].iloc[0]
    assert row["flag"] == "shift" and row["psi"] > base["psi"] + 1
    assert row["median_tile"] == pytest.approx(base["median_tile"] + 4000, rel=1e-6)
    assert p.returncode == 1 and "shifted" in p.stdout  # --fail-on-shift
    assert df["expected_p90"].isna().all() and "too few" in p.stdout  # 1,640 rows: no yardstick


def test_drift_says_what_one_training_landscape_shows(
    full_table: Path, slovenia_features: Path, tmp_path: Path
) -> None:
    """Issue #27: against the whole table the real Slovenia patch "shifts" (PSI > 0.25), yet no
    more than the table's own single landscapes do; the same patch with NDVI p50 raised by 0.2
    is beyond them, and the output says which."""
    tiles, _ = _patch_and_shifted(slovenia_features, tmp_path, 200)  # NDVI stored x 1,000: +0.2
    p = eulc("drift", "--table", str(full_table), "--features-dir", str(tiles), "--out", str(tmp_path / "d.csv"))
    df = pd.read_csv(tmp_path / "d.csv")
    base = df[(df.tile == "slo") & (df.feature == "ndvi_p50")].iloc[0]
    row = df[(df.tile == "slo_shifted") & (df.feature == "ndvi_p50")].iloc[0]
    assert base["flag"] == "shift" and not base["beyond_expected"] and base["expected_p90"] > base["psi"]
    assert row["beyond_expected"] and row["expected_p90"] == base["expected_p90"]
    said = " ".join(p.stdout.split())
    assert "beyond what one training landscape shows" in said and "slo_shifted ndvi_p50" in said


def test_expected_psi_is_the_psi_of_each_landscape_group(elc10_frame: pd.DataFrame) -> None:
    """:func:`expected_psi` equals :func:`psi` of each (100 km cell, Level-1 class) group of at
    least 50 rows against the whole table, grouped here by pandas (an independent path)."""
    from pipeline.assess.drift import expected_psi

    t = elc10_frame.assign(level1=elc10_frame["LC"]).sample(20_000, random_state=1)
    f = "ndvi_p50"
    ref = t[f].to_numpy(float)
    want = sorted(
        psi(ref, g[f].to_numpy(float)) for _, g in t.groupby(["eea_cell_100km", "level1"]) if g[f].notna().sum() >= 50
    )
    got = sorted(expected_psi(t, [f])[f])
    assert len(got) == len(want) > 20 and np.allclose(got, want, rtol=1e-12)
    assert expected_psi(t.drop(columns=["level1"]), [f])[f].size == 0  # no groups: no yardstick
