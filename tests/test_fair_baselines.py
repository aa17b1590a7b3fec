"""Issue #29 part 2: the baselines' ECE next to a temperature-scaled network, calibrated the same
way: fitted on the rows the network trains on, temperature fitted on the blocked hold-out the
network calibrates on. Oracles: the rows `train_bridge` itself trains on, scipy's scalar
minimiser of the hold-out NLL, and an XGBoost refitted here on those rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

import model.evaluate as ev
from model.baselines import fit_predict_proba_baseline
from model.calibration import apply_temperature, log_probabilities
from model.presets import run_config
from model.scenarios import loro
from model.train import TrainConfig, train_bridge, training_arrays
from pipeline.core.bioregion import REGIONS
from pipeline.core.spec import load_spec
from pipeline.table import read_feature_table


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 20), st.integers(2, 7)), elements=st.floats(0, 1)))
def test_temperature_one_leaves_probabilities_unchanged(raw: np.ndarray) -> None:
    p = raw + 1e-3
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(apply_temperature(log_probabilities(p), 1.0), p, rtol=1e-9, atol=1e-12)
    hot = apply_temperature(log_probabilities(p), 3.0)  # T > 1 softens: the top class loses mass
    assert np.all(hot.max(1) <= p.max(1) + 1e-12) and np.allclose(hot.sum(1), 1)


@pytest.fixture(scope="module")
def pannonian(full_table: Path):
    table, _ = read_feature_table(full_table)
    d = training_arrays(table, load_spec("elc10").names)
    rows = np.sort(np.random.default_rng(0).choice(len(d.y), 4000, replace=False))
    d = d.take(rows)
    return d, loro(d.y, np.array(REGIONS)[d.region], "Pannonian")


def test_xgboost_ts_uses_the_networks_rows_and_the_nll_minimising_temperature(
    pannonian, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, split = pannonian
    cfg = TrainConfig(epochs=1, lr=1e-3)
    seen: list[np.ndarray] = []
    real = ev.fit_predict_proba_baseline

    def spy(name, x_train, *a, **k):
        seen.append(x_train)
        return real(name, x_train, *a, **k)

    monkeypatch.setattr(ev, "fit_predict_proba_baseline", spy)
    pred, prob, t = ev.baseline_temperature_scaled("xgboost", d, split, 7, cfg, seed=3)
    side = d.take(split.train)
    net = train_bridge(side, 7, run_config("eulc", cfg, 3))  # the rows the network itself trains on
    assert np.array_equal(seen[0], side.x[net.train_rows])
    held = np.setdiff1d(np.arange(len(side.y)), net.train_rows)
    _, p = fit_predict_proba_baseline(
        "xgboost", side.x[net.train_rows], side.y[net.train_rows], np.concatenate([side.x[held], d.x[split.test]]), 3, 7
    )
    z = np.log(np.maximum(p, 1e-12))
    zh, zt = z[: len(held)], z[len(held) :]
    nll = minimize_scalar(
        lambda s: -log_softmax(zh / np.exp(s), axis=1)[np.arange(len(held)), side.y[held]].mean(),
        bounds=(-3, 3),
        method="bounded",
    )
    assert t == pytest.approx(np.exp(nll.x), rel=1e-3)
    np.testing.assert_allclose(prob, softmax(zt / t, axis=1), rtol=1e-9)
    assert np.array_equal(pred, prob.argmax(1))


def test_scenario_reports_ts_rows_and_resumes(full_table: Path, tmp_path: Path) -> None:
    kw = dict(models=("xgboost",), seeds=(0,), cfg=TrainConfig(epochs=1, lr=1e-3), regions=["Pannonian"])
    df = ev.run_scenario(
        full_table, load_spec("elc10").names, "loro", tmp_path, max_rows=4000, calibrate_baselines=True, **kw
    )
    assert set(df["model"]) == {"xgboost", "xgboost+ts"}
    raw, ts = (df.set_index("model").loc[m] for m in ("xgboost", "xgboost+ts"))
    assert ts["n_test"] == raw["n_test"] and np.isfinite(ts["ece"])
    assert "xgboost+ts" in (tmp_path / "loro_summary.md").read_text()
    before = (tmp_path / "loro_runs.csv").read_bytes()
    again = ev.run_scenario(
        full_table, load_spec("elc10").names, "loro", tmp_path, max_rows=4000, calibrate_baselines=True, **kw
    )
    assert len(again) == 2 and (tmp_path / "loro_runs.csv").read_bytes() == before


def test_tuned_xgboost_is_chosen_inside_the_training_side(full_table: Path, tmp_path: Path) -> None:
    """`xgboost-tuned` on the Pannonian fold (2,500 rows): the choice is recorded with the three
    settings' inner scores and is their argmax; the inner hold-out and fit rows hold no Pannonian
    row; its test predictions equal XGBoost refitted here with the chosen setting on the split's
    training rows (the test rows' labels play no part)."""
    import pandas as pd

    from model.baselines import XGBOOST_GRID
    from model.tuning import inner_split

    names = load_spec("elc10").names
    df = ev.run_scenario(
        full_table,
        names,
        "loro",
        tmp_path,
        models=("xgboost-tuned",),
        seeds=(1,),
        cfg=TrainConfig(epochs=1, lr=1e-3),
        regions=["Pannonian"],
        max_rows=2500,
    )
    sel = pd.read_csv(tmp_path / "loro_selection.csv")
    assert len(sel) == 1
    scores = {k: sel[f"inner_wf1_{k}"].iloc[0] for k in XGBOOST_GRID}
    winner = sel["winner"].iloc[0]
    assert winner == max(XGBOOST_GRID, key=lambda k: (scores[k], -list(XGBOOST_GRID).index(k)))
    assert df["chosen"].iloc[0] == winner

    table, _ = read_feature_table(full_table)
    d_all = training_arrays(table, names)
    d = d_all.take(ev.seed_rows(len(d_all.y), 2500, 1))
    split = loro(d.y, np.array(REGIONS)[d.region], "Pannonian")
    fit, held = inner_split(d.take(split.train), 1)
    pann = REGIONS.index("Pannonian")
    assert pann not in set(fit.region.tolist()) | set(held.region.tolist())
    assert not set(fit.cells.tolist()) & set(held.cells.tolist())  # whole cells held out
    pred, _ = fit_predict_proba_baseline(
        "xgboost", d.x[split.train], d.y[split.train], d.x[split.test], 1, 7, XGBOOST_GRID[winner]
    )
    preds = pd.read_parquet(tmp_path / "loro_predictions.parquet")
    assert np.array_equal(preds["y_pred"].to_numpy(), pred)


def test_inner_regions_choice_is_scored_per_held_out_region(full_table: Path, tmp_path: Path) -> None:
    """`--inner regions` on the Pannonian fold (2,500 rows): the tuned XGBoost's inner scores are,
    for each setting, the size-weighted mean of each held-out bioregion's weighted F1, recomputed
    here with pandas from XGBoost fitted on the side less those whole regions; the regions named
    in the selection CSV are never the fold's own; a bad `inner` is refused before any fit."""
    import pandas as pd
    from sklearn.metrics import f1_score

    from model.baselines import XGBOOST_GRID
    from pipeline.core.errors import SchemaError

    names = load_spec("elc10").names
    kw = dict(models=("xgboost-tuned",), seeds=(1,), cfg=TrainConfig(epochs=1, lr=1e-3), regions=["Pannonian"])
    with pytest.raises(SchemaError, match="`inner` 'region'"):
        ev.run_scenario(full_table, names, "loro", tmp_path / "bad", max_rows=2500, inner="region", **kw)
    ev.run_scenario(full_table, names, "loro", tmp_path, max_rows=2500, inner="regions", **kw)
    sel = pd.read_csv(tmp_path / "loro_selection.csv")
    assert len(sel) == 1 and sel["inner"].iloc[0].startswith("held-out regions: ")
    held_names = sel["inner"].iloc[0].removeprefix("held-out regions: ").split(", ")
    assert "Pannonian" not in held_names and all(h in REGIONS for h in held_names)

    table, _ = read_feature_table(full_table)
    d_all = training_arrays(table, names)
    d = d_all.take(ev.seed_rows(len(d_all.y), 2500, 1))
    side = d.take(loro(d.y, np.array(REGIONS)[d.region], "Pannonian").train)
    region = np.array(REGIONS)[side.region]
    held = np.isin(region, held_names)
    for name, params in XGBOOST_GRID.items():
        pred, _ = fit_predict_proba_baseline("xgboost", side.x[~held], side.y[~held], side.x[held], 1, 7, params)
        frame = pd.DataFrame({"region": region[held], "y": side.y[held], "pred": pred})
        per = [(f1_score(g["y"], g["pred"], average="weighted"), len(g)) for _, g in frame.groupby("region")]
        expected = sum(f * n for f, n in per) / sum(n for _, n in per)
        assert sel[f"inner_wf1_{name}"].iloc[0] == pytest.approx(expected, abs=1e-5), name
