from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from model.evaluate import evaluate_bundle, run_scenario, scenario_splits
from model.metrics import classification_metrics, mean_ci95
from model.scenarios import extrap_blocked, loro
from model.train import TrainConfig, training_arrays
from pipeline.core.errors import SchemaError
from pipeline.table import read_feature_table, write_feature_table

from .conftest import NDVI_FEATURES
from .test_cli import _one_line_error, eulc


def test_metrics_match_sklearn_and_t_interval() -> None:
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 7, 500), rng.integers(0, 7, 500)
    m = classification_metrics(y, p, [str(i) for i in range(7)])
    assert np.isclose(m["weighted_f1"], f1_score(y, p, average="weighted"))
    assert m["per_class"]["3"]["support"] == (y == 3).sum()
    v = [0.80, 0.82, 0.81, 0.79, 0.83]
    mean, half = mean_ci95(v)
    # t(0.975, 4 dof) = 2.776 (statistical tables)
    assert np.isclose(mean, 0.81) and np.isclose(half, 2.776 * np.std(v, ddof=1) / np.sqrt(5), rtol=1e-3)


@pytest.fixture(scope="module")
def full_arrays(full_table: Path):
    return training_arrays(read_feature_table(full_table)[0], NDVI_FEATURES)


def test_splits_on_the_real_elc10_table(full_arrays) -> None:
    d = full_arrays
    s = extrap_blocked(d.y, d.cells, seed=0)
    assert not set(d.cells[s.train]) & set(d.cells[s.test])  # whole 100 km cells held out
    assert 0.1 < len(s.test) / len(d.y) < 0.45
    splits = scenario_splits("loro", d, 0)
    assert [x.name for x in splits] == [
        f"loro-{r}"
        for r in ("Alpine", "Atlantic", "BlackSea", "Boreal", "Continental", "Mediterranean", "Pannonian", "Steppic")
    ]
    names = np.array(
        ["Alpine", "Atlantic", "BlackSea", "Boreal", "Continental", "Mediterranean", "Pannonian", "Steppic"]
    )[d.region]
    med = splits[5]
    assert (names[med.test] == "Mediterranean").all() and not (names[med.train] == "Mediterranean").any()
    assert len(med.train) + len(med.test) == len(d.y)
    assert not splits[4].flags and splits[2].flags == []  # BlackSea has 130 points here (>= 100)
    few = np.flatnonzero((names != "BlackSea") | (np.arange(len(names)) % 5 == 0))
    n_black = int((names[few] == "BlackSea").sum())
    assert loro(d.y[few], names[few], "BlackSea").flags == [f"only {n_black} test samples"]
    with pytest.raises(SchemaError, match="'Arctic' is absent"):
        loro(d.y, names, "Arctic")


def test_small_splits_are_refused_or_flagged(sample_table: Path) -> None:
    table, _ = read_feature_table(sample_table)
    d = training_arrays(table, NDVI_FEATURES)
    with pytest.raises(SchemaError, match="extrap-blocked.*fewer than 2"):
        extrap_blocked(d.y, d.cells, seed=0)  # the 1,440-row sample has only 5 water points
    names = np.array(
        ["Alpine", "Atlantic", "BlackSea", "Boreal", "Continental", "Mediterranean", "Pannonian", "Steppic"]
    )[d.region]
    with pytest.raises(SchemaError, match="loro-Steppic.*fewer than 2"):
        loro(d.y, names, "Steppic")


def test_rare_class_is_refused() -> None:
    y = np.array([0] * 50 + [1] * 50 + [2])
    from model.scenarios import extrap_random

    with pytest.raises(SchemaError, match=r"class\(es\) \[2\]"):
        extrap_random(y, 0)


def test_scenario_runs_all_models_on_real_data(full_table: Path, tmp_path: Path) -> None:
    df = run_scenario(
        full_table,
        NDVI_FEATURES,
        "extrap",
        tmp_path,
        models=("bridge-lc", "rf", "xgboost", "svm"),
        seeds=(0, 1),
        cfg=TrainConfig(epochs=3, lr=1e-3),
        max_rows=4000,
    )
    assert set(df["model"]) == {"bridge-lc", "rf", "xgboost", "svm"} and len(df) == 8
    assert (df["n_train"] + df["n_test"] == 4000).all()
    xgb = df[df["model"] == "xgboost"]  # each seed its own rows and split: its own fit (never a cached one)
    assert xgb["accuracy"].nunique() == 2 and (xgb["accuracy"] > 0.75).all()
    table, _ = read_feature_table(full_table)
    majority = table["level1"].value_counts(normalize=True).max()
    assert (df.groupby("model")["accuracy"].mean() > majority).all()
    md = (tmp_path / "extrap_summary.md").read_text()
    assert "± " in md and "| extrap | rf |" in md
    assert len(pd.read_csv(tmp_path / "extrap_runs.csv")) == 8


def test_evaluate_bundle(small_bundle: Path, sample_table: Path, tmp_path: Path) -> None:
    """evaluate_bundle's figures equal sklearn's on an independent prediction of the same rows (the
    fused network the map uses). Mutations caught: evaluate_bundle skipping the normaliser, or
    passing lat/lon swapped, changes its predictions and fails the equality."""
    import json

    from model.bundle import load_bundle
    from model.train import TrainConfig, split_rows
    from tiles.mapping.predict import Predictor

    m = evaluate_bundle(small_bundle, sample_table)
    table, _ = read_feature_table(sample_table)
    d = training_arrays(table, NDVI_FEATURES)
    pred = Predictor(load_bundle(small_bundle), device="cpu").predict(
        d.x.astype(np.float32), d.lonlat.astype(np.float32)
    )["class"]
    # its own training table: scored only on the rows training did not fit (issue #26)
    cfg = TrainConfig(**json.loads((small_bundle / "bundle.json").read_text())["train_config"])
    tr, va, te = split_rows(d, cfg)
    rows = te if len(te) else va
    assert m["n"] == len(rows) > 100 and m["by_split"]["training"]["n_rows"] == len(tr)
    assert m["overall_accuracy"] == pytest.approx(float((pred[rows] == d.y[rows]).mean()), abs=2e-3)  # fused = net
    assert m["weighted_f1"] == pytest.approx(f1_score(d.y[rows], pred[rows], average="weighted"), abs=3e-3)
    assert m["by_split"]["training"]["overall_accuracy"] == pytest.approx(float((pred[tr] == d.y[tr]).mean()), abs=2e-3)
    assert m["overall_accuracy"] > np.bincount(d.y).max() / len(d.y)  # better than the majority class
    table, meta = read_feature_table(sample_table)
    bad = table.drop(columns=["ndvi_p50"])
    bad.attrs["eulc"] = meta
    write_feature_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(SchemaError, match=r"lacks 1 feature\(s\).*ndvi_p50"):
        evaluate_bundle(small_bundle, tmp_path / "bad.parquet")
    p = eulc(
        "evaluate",
        "--bundle",
        str(small_bundle),
        "--table",
        str(tmp_path / "bad.parquet"),
        "--out",
        str(tmp_path / "e"),
    )
    _one_line_error(p, "bad.parquet", "ndvi_p50")
