"""Issue #29 part 1: the paired cell-bootstrap interval of a difference between two models.

Oracles: scikit-learn's ``f1_score``/``accuracy_score`` on explicitly resampled rows (a naive
bootstrap written here, with its own random draws), Student t over seeds, and closed-form cases.
The real case uses the ELC10 LUCAS 2018 table's Alpine LORO fold and its EEA 100 km cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import accuracy_score, f1_score
from sklearn.naive_bayes import GaussianNB

from model.bootstrap import Stratum, paired_cell_bootstrap, scores_from_confusion
from model.train import training_arrays
from pipeline.core.bioregion import REGIONS
from pipeline.core.errors import SchemaError
from pipeline.core.spec import load_spec
from pipeline.table import read_feature_table


def _naive(strata: list[Stratum], k: int, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Row-level oracle: the documented draws (per stratum in order, cells sorted by code:
    ``default_rng(seed).multinomial(m, [1/m] * m, size=n_boot)``) turned into explicit lists of
    resampled rows, each scored by scikit-learn."""
    rng = np.random.default_rng(seed)
    w = np.array([s.weight for s in strata], float)
    w /= w.sum()
    labels = list(range(k))

    def f1(y: np.ndarray, p: np.ndarray) -> float:
        return float(f1_score(y, p, labels=labels, average="weighted", zero_division=0))

    obs = sum(
        wi * np.mean([f1(s.y_true, a) - f1(s.y_true, b) for a, b in zip(s.pred_a, s.pred_b, strict=True)])
        for s, wi in zip(strata, w, strict=True)
    )
    reps = np.zeros(n_boot)
    for s, wi in zip(strata, w, strict=True):
        codes = np.unique(s.cells.astype(str))
        counts = rng.multinomial(len(codes), np.full(len(codes), 1 / len(codes)), size=n_boot)
        members = [np.flatnonzero(s.cells.astype(str) == c) for c in codes]
        for r in range(n_boot):
            rows = np.concatenate([np.repeat(mem, n) for mem, n in zip(members, counts[r], strict=True)])
            pairs = zip(s.pred_a, s.pred_b, strict=True)
            reps[r] += wi * np.mean([f1(s.y_true[rows], a[rows]) - f1(s.y_true[rows], b[rows]) for a, b in pairs])
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return 100 * obs, 100 * lo, 100 * hi


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 6).flatmap(
        lambda k: st.tuples(
            st.just(k),
            st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1, max_size=60),
        )
    )
)
def test_scores_from_confusion_equal_sklearn(case: tuple[int, list[tuple[int, int]]]) -> None:
    k, pairs = case
    y = np.array([t for t, _ in pairs])
    p = np.array([q for _, q in pairs])
    cm = np.zeros(k * k, np.int64)
    np.add.at(cm, y * k + p, 1)
    wf1, acc = scores_from_confusion(cm, k)
    assert float(wf1) == pytest.approx(f1_score(y, p, labels=list(range(k)), average="weighted", zero_division=0))
    assert float(acc) == pytest.approx(accuracy_score(y, p))


def test_one_cell_gives_a_point_interval_and_cells_matter() -> None:
    """One cell: every replicate is the sample itself, so the interval is the observed difference.
    Then 40 cells where model a is right in half the cells and b in the other half: resampling
    cells gives a wide interval around 0, while the same rows treated as independent points (one
    cell per row) give a much narrower one; a row-level bootstrap would pass as the cell one."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 400)
    a = np.where(rng.random(400) < 0.8, y, (y + 1) % 3)
    b = np.where(rng.random(400) < 0.7, y, (y + 2) % 3)
    one = paired_cell_bootstrap([Stratum(y, a[None], b[None], np.zeros(400))], 3, n_boot=200)["weighted_f1"]
    assert one.low == pytest.approx(one.diff) and one.high == pytest.approx(one.diff)
    ref = 100 * (f1_score(y, a, average="weighted") - f1_score(y, b, average="weighted"))
    assert one.diff == pytest.approx(ref)

    cells = np.repeat(np.arange(40), 10)
    good_a = (cells % 2 == 0)[:, None]
    a2 = np.where(good_a[:, 0], y, (y + 1) % 3)
    b2 = np.where(good_a[:, 0], (y + 1) % 3, y)
    by_cell = paired_cell_bootstrap([Stratum(y, a2[None], b2[None], cells)], 3)["weighted_f1"]
    by_row = paired_cell_bootstrap([Stratum(y, a2[None], b2[None], np.arange(400))], 3)["weighted_f1"]
    assert by_cell.low < 0 < by_cell.high and by_cell.verdict == "tie"
    assert (by_cell.high - by_cell.low) > 2.5 * (by_row.high - by_row.low)


def test_interval_equals_a_row_level_bootstrap_with_sklearn() -> None:
    """Two strata (sizes 300 and 120, weights = sizes), 3 seeds: the interval equals the row-level
    oracle's on the same draws, the observed difference exactly, and the seed half-width equals
    Student t over seeds."""
    rng = np.random.default_rng(7)
    strata = []
    for n, m in ((300, 30), (120, 12)):
        y = rng.integers(0, 4, n)
        cells = rng.integers(0, m, n).astype(str)
        skill = rng.uniform(0.5, 0.95, m)  # cell-level skill: correlated errors within a cell
        cell_i = cells.astype(int)
        pa = np.stack([np.where(rng.random(n) < skill[cell_i], y, rng.integers(0, 4, n)) for _ in range(3)])
        pb = np.stack([np.where(rng.random(n) < skill[cell_i] - 0.1, y, rng.integers(0, 4, n)) for _ in range(3)])
        strata.append(Stratum(y, pa, pb, cells, weight=float(n)))
    got = paired_cell_bootstrap(strata, 4, n_boot=150, seed=3)["weighted_f1"]
    obs, lo, hi = _naive(strata, 4, 150, seed=3)
    assert got.diff == pytest.approx(obs, abs=1e-9)
    assert got.low == pytest.approx(lo, abs=1e-9) and got.high == pytest.approx(hi, abs=1e-9)
    assert got.n_cells == len(np.unique(strata[0].cells)) + len(np.unique(strata[1].cells))
    w = np.array([300, 120]) / 420

    def wf1(y: np.ndarray, p: np.ndarray) -> float:
        return float(f1_score(y, p, average="weighted"))

    per_seed = [
        100
        * sum(wi * (wf1(s.y_true, s.pred_a[i]) - wf1(s.y_true, s.pred_b[i])) for s, wi in zip(strata, w, strict=True))
        for i in range(3)
    ]
    half = stats.t.ppf(0.975, 2) * np.std(per_seed, ddof=1) / np.sqrt(3)
    assert got.seed_half == pytest.approx(half)


def test_real_alpine_fold_two_models(full_table: Path) -> None:
    """The real LORO Alpine fold (ELC10 table, 35 features): LDA against Gaussian naive Bayes
    trained on the other regions; the interval on the real EEA 100 km cells equals the row-level
    oracle's on the same draws, and it is wider than the interval that treats the points as
    independent (real points cluster by cell)."""
    table, _ = read_feature_table(full_table)
    d = training_arrays(table, load_spec("elc10").names)
    alpine = np.array(REGIONS)[d.region] == "Alpine"
    tr, te = np.flatnonzero(~alpine), np.flatnonzero(alpine)
    pa = LinearDiscriminantAnalysis().fit(d.x[tr], d.y[tr]).predict(d.x[te])
    pb = GaussianNB().fit(d.x[tr], d.y[tr]).predict(d.x[te])
    s = Stratum(d.y[te], pa[None], pb[None], d.cells[te])
    got = paired_cell_bootstrap([s], 7, n_boot=200)["weighted_f1"]
    obs, lo, hi = _naive([s], 7, 200, seed=0)
    assert got.diff == pytest.approx(obs, abs=1e-9)
    assert got.low == pytest.approx(lo, abs=1e-9) and got.high == pytest.approx(hi, abs=1e-9)
    rows = paired_cell_bootstrap([Stratum(d.y[te], pa[None], pb[None], np.arange(len(te)))], 7, n_boot=400)
    assert got.high - got.low > 1.5 * (rows["weighted_f1"].high - rows["weighted_f1"].low)


def test_bad_shapes_are_refused() -> None:
    y = np.zeros(5, int)
    with pytest.raises(SchemaError, match="predictions"):
        paired_cell_bootstrap([Stratum(y, np.zeros((2, 5), int), np.zeros((1, 5), int), np.arange(5))], 2)
    with pytest.raises(SchemaError, match="empty"):
        paired_cell_bootstrap([], 2)


def test_scenario_stores_predictions_and_differences_seam(full_table: Path, tmp_path: Path) -> None:
    """`run_scenario` (LORO, two regions, two seeds on their own 4,000-row subsamples) writes
    ``loro_predictions.parquet`` and ``loro_differences.csv``; read back as written: every run's
    predictions give the confusion matrix its runs.csv row recorded (scikit-learn's), each split's
    difference is the mean over seeds of the runs.csv weighted-F1 differences, the 8-region-style
    mean is the mean of the splits', and a rerun resumes without refitting or duplicating rows."""
    import json

    import pandas as pd

    import model.evaluate as ev
    from model.train import TrainConfig

    cfg = TrainConfig(epochs=1, lr=1e-3)
    kw = dict(models=("mlp", "xgboost"), seeds=(0, 1), cfg=cfg, regions=["Pannonian", "Atlantic"], max_rows=4000)
    runs = ev.run_scenario(full_table, load_spec("elc10").names, "loro", tmp_path, **kw)
    preds = pd.read_parquet(tmp_path / "loro_predictions.parquet")
    assert len(preds) == runs["n_test"].sum()
    for r in runs.to_dict("records"):
        g = preds[(preds["split"] == r["split"]) & (preds["model"] == r["model"]) & (preds["seed"] == r["seed"])]
        cm = np.zeros((7, 7), int)
        np.add.at(cm, (g["y_pred"].to_numpy(), g["y_true"].to_numpy()), 1)  # rows = map
        assert cm.tolist() == json.loads(r["confusion"])["matrix"]
        assert (g["cell"].str.startswith("100km")).all()
    diff = pd.read_csv(tmp_path / "loro_differences.csv").set_index("split")
    assert set(diff["reference"]) == {"mlp"} and set(diff["model"]) == {"xgboost"}
    per_split = []
    for split in ("loro-Pannonian", "loro-Atlantic"):
        w = runs[runs["split"] == split].pivot(index="seed", columns="model", values="weighted_f1")
        expected = 100 * (w["mlp"] - w["xgboost"]).mean()
        assert diff.loc[split, "weighted_f1_diff"] == pytest.approx(expected)
        lo, hi = diff.loc[split, "weighted_f1_cell_low"], diff.loc[split, "weighted_f1_cell_high"]
        assert lo < diff.loc[split, "weighted_f1_diff"] < hi
        per_split.append(expected)
    assert diff.loc["mean", "weighted_f1_diff"] == pytest.approx(np.mean(per_split))
    assert "cell interval" in (tmp_path / "loro_differences.md").read_text()
    before = (tmp_path / "loro_predictions.parquet").read_bytes()
    again = ev.run_scenario(full_table, load_spec("elc10").names, "loro", tmp_path, **kw)
    assert len(again) == len(runs) and (tmp_path / "loro_predictions.parquet").read_bytes() == before
