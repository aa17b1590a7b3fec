"""Issue #4: model variants, calibration, presets, feature selection and short-schedule
versions of every evaluation scenario, on the real LUCAS 2018 / ELC10 tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from model.bridge import BridgeConfig, BridgeLC
from model.calibration import expected_calibration_error, fit_temperature
from model.encoding import multiscale_encoding, sinusoidal_encoding
from model.evaluate import run_scenario
from model.importance import default_k
from model.presets import ABLATION, preset_config
from model.train import TrainConfig
from pipeline.core.selection import FeatureSelection
from pipeline.table import read_feature_table

from .conftest import NDVI_FEATURES, build_elc10_table
from .test_cli import eulc

L2 = Path("derived") / "lucas2018_elc10_features_with_lc1_lu1.csv.gz"


def test_multiscale_encoding_resolves_10_km_where_the_papers_does_not() -> None:
    # two points 0.09° (≈ 10 km) apart in longitude at 46° N
    a = torch.tensor([[14.50, 46.0], [14.59, 46.0]])
    paper, ms = sinusoidal_encoding(a), multiscale_encoding(a)
    assert ms.shape == paper.shape == (2, 128)
    assert (paper[0] - paper[1]).abs().max() < 0.1  # finest paper wavelength is 2π degrees
    assert (ms[0] - ms[1]).abs().max() > 0.9  # finest multi-scale wavelength is 0.1°
    assert torch.allclose(ms[:, 64:], ms[:, 64:].flip(0))  # same latitude → same latitude block


@pytest.mark.parametrize("variant", list(ABLATION))
def test_ablation_variants_build_the_table_12_networks(variant: str) -> None:
    cfg = preset_config(variant)
    net = BridgeLC(
        BridgeConfig(n_features=10, n_classes=7, location=cfg.location, region_branch=cfg.region_branch)
    ).eval()
    c, r, zi, zs = net(torch.rand(4, 10), torch.tensor([[14.5, 45.9]]).repeat(4, 1))
    assert c.shape == (4, 7) and zi.shape == (4, 256)
    assert (r is None) == (not cfg.region_branch) == (zs is None)
    first = net.invariant[0]
    assert first.in_features == 10 + (0 if cfg.location == "none" else 128)
    assert (net.location is None) == (cfg.location != "learnt")


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4.0, size=(20_000, 7))
    p = np.exp(logits / 2.5)
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(7, p=row) for row in p])  # labels drawn from softmax(z / 2.5)
    t = fit_temperature(logits, y)
    assert abs(t - 2.5) < 0.1
    raw = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert expected_calibration_error(p, y) < 0.02 < expected_calibration_error(raw, y)


def test_ece_by_hand() -> None:
    prob = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, 0, 1])
    # bins: 0.9 (2 rows, acc 0.5) → |0.5−0.9|·2/4 = 0.2; 0.6 (acc 1) → 0.4/4; 0.7 (acc 1) → 0.3/4
    assert np.isclose(expected_calibration_error(prob, y), 0.2 + 0.1 + 0.075)


def test_eulc_preset_selects_on_blocked_holdout_and_calibrates(sample_table: Path, tmp_path: Path) -> None:
    from model.api import train_from_table
    from model.bundle import load_bundle
    from pipeline.core.spec import load_spec

    sel = FeatureSelection.of(load_spec("elc10"), NDVI_FEATURES, "names")
    cfg = preset_config("eulc", TrainConfig(epochs=6, lr=1e-3, batch_size=64))
    m = train_from_table(sample_table, tmp_path / "b", sel, cfg)
    assert m["holdout"] == "blocked" and 1 <= m["selected_epoch"] <= 6
    assert m["temperature"] > 0 and m["temperature"] != 1.0  # fitted, not the default
    b = load_bundle(tmp_path / "b")
    assert b.model.cfg.temperature == pytest.approx(m["temperature"])
    # the temperature is applied at inference: the bundle's probabilities are softmax(logits / T)
    # of its uncalibrated logits (mutation: predict_proba ignoring cfg.temperature fails here)
    from dataclasses import replace

    from model.infer import predict_logits_np, predict_proba
    from model.train import training_arrays
    from pipeline.table import read_feature_table

    d = training_arrays(read_feature_table(sample_table)[0], NDVI_FEATURES)
    xn = b.normalizer.transform(d.x[:500])
    prob = predict_proba(b.model, xn, d.lonlat[:500])
    b.model.cfg = replace(b.model.cfg, temperature=1.0)
    raw = predict_logits_np(b.model, xn, d.lonlat[:500]) / m["temperature"]
    want = np.exp(raw - raw.max(1, keepdims=True))
    np.testing.assert_allclose(prob, want / want.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    # calibration did not make the hold-out ECE worse than the raw network's (beyond noise)
    assert m["val_ece_calibrated"] <= m["val_ece"] + 0.01
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert meta["train_config"]["select_best"]
    assert meta["architecture"]["temperature"] == pytest.approx(m["temperature"])


@pytest.fixture(scope="module")
def l2_table(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_elc10_table(data / L2, tmp_path_factory.mktemp("l2") / "l2.parquet")


def test_short_ablation_on_real_loro(full_table: Path, tmp_path: Path) -> None:
    df = run_scenario(
        full_table,
        NDVI_FEATURES,
        "ablation",
        tmp_path,
        seeds=(0,),
        cfg=TrainConfig(epochs=1, lr=1e-3),
        regions=["Pannonian", "Steppic"],
        max_rows=3000,
    )
    assert set(df["model"]) == set(ABLATION) and len(df) == 12
    assert (df["n_test"] < 200).all() and df["flags"].str.contains("only").all()
    summary = pd.read_csv(tmp_path / "ablation_summary.csv")
    assert (summary["split"] == "mean").sum() == 6
    per_class = pd.read_csv(tmp_path / "ablation_per_class.csv")
    assert len(per_class) == 6 * 7
    assert len(list(tmp_path.glob("ablation_confusion_*.png"))) == 6


def test_short_level2_scenarios_on_real_crops(l2_table: Path, tmp_path: Path) -> None:
    table, _ = read_feature_table(l2_table)
    n_crop = int(table["level2"].notna().sum())
    cfg = TrainConfig(level="level2", epochs=2, lr=1e-3)
    df = run_scenario(
        l2_table, NDVI_FEATURES, "extrap-blocked", tmp_path, models=("eulc", "mlp", "rf"), seeds=(0,), cfg=cfg
    )
    assert (df["n_train"] + df["n_test"] <= n_crop).all() and (df["n_train"] + df["n_test"] > 0.95 * n_crop).all()
    assert df["ece"].notna().all()  # RF has class probabilities too (only the SVM has none)
    per_class = pd.read_csv(tmp_path / "extrap-blocked_per_class.csv")
    assert len(per_class) == 3 * 19 and "Common wheat" in set(per_class["class"])
    wheat_rf = per_class[(per_class["model"] == "rf") & (per_class["class"] == "Common wheat")]
    assert float(wheat_rf["f1"].iloc[0]) > 0.3  # the largest crop is learnt from NDVI alone
    lo = run_scenario(
        l2_table, NDVI_FEATURES, "loro", tmp_path, models=("mlp",), seeds=(0,), cfg=cfg, regions=["Boreal"]
    )
    assert lo["split"].tolist() == ["loro-Boreal"]


def test_interrupted_scenario_resumes_without_redoing_runs(
    full_table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model.evaluate as ev

    cfg = TrainConfig(epochs=1, lr=1e-3)
    first = run_scenario(
        full_table, NDVI_FEATURES, "extrap", tmp_path, models=("mlp", "rf"), seeds=(0,), cfg=cfg, max_rows=3000
    )
    calls: list[str] = []
    real = ev._fit_proba
    monkeypatch.setattr(ev, "_fit_proba", lambda m, *a: calls.append(m) or real(m, *a))
    again = run_scenario(
        full_table, NDVI_FEATURES, "extrap", tmp_path, models=("mlp", "rf"), seeds=(0, 1), cfg=cfg, max_rows=3000
    )
    assert calls == ["mlp", "rf"]  # only seed 1 ran
    assert np.allclose(again[again["seed"] == 0]["weighted_f1"], first["weighted_f1"])


def test_select_command_ranks_real_features(sample_table: Path, tmp_path: Path) -> None:
    out = tmp_path / "sel.json"
    p = eulc(
        "select",
        "--table",
        str(sample_table),
        "--out",
        str(out),
        "--k",
        "8",
        "--seeds",
        "2",
        "--curve",
        str(tmp_path / "curve"),
    )
    assert p.returncode == 0, p.stderr
    sel = FeatureSelection.load(out)
    assert len(sel.names) == 8 and sel.method == "rf-mdi" and sel.seed == 0
    scores = [sel.scores[n] for n in sel.names]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
    assert "Jaccard" in sel.note
    curve = pd.read_csv(tmp_path / "curve" / "accuracy_vs_k.csv")
    assert {35, default_k(35)} <= set(curve["k"]) and (curve["weighted_f1"] > 0.3).all()
    assert (tmp_path / "curve" / "accuracy_vs_k.png").stat().st_size > 10_000
    assert default_k(196) == 109


def test_permutation_importance_on_real_data(sample_table: Path) -> None:
    from model.importance import rf_importance
    from model.train import training_arrays

    table, _ = read_feature_table(sample_table)
    names = NDVI_FEATURES + ["nir_median", "swir1_median"]
    d = training_arrays(table, names)
    imp = rf_importance(d.x, d.y, d.cells, names, "permutation", seeds=(0,))
    assert np.isclose(imp.scores.sum(), 1) and (imp.scores >= 0).all()
    assert set(imp.ranking()) == set(names)
