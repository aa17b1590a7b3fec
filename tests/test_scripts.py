"""Every script in ``scripts/`` runs, on a tiny setting, as a reader would run it (issue #29 part 3:
``pilot_default.py`` had stopped importing and nothing noticed).

Each script has one case here; a new script without a case fails :func:`test_every_script_has_a_case`.
The cases check what the script produced against an independent oracle where there is one (the
shipped file a generator made, the runs a table was built from), not only that it exited 0."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "scripts").glob("*.py"))
CASES = {
    "build_reference_tables.py",
    "check_report_browser.py",
    "elevation_loro.py",
    "level2_cv.py",
    "make_alphaearth_specs.py",
    "make_bridge_lc_196_spec.py",
    "mutants.py",
    "ood_loro.py",
    "pilot_default.py",
    "results_protocol.py",
    "results_tables.py",
    "train_pretrained.py",
}


def script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python scripts/<name> args`` from ``cwd`` (not the checkout: nothing may depend on it)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args], cwd=cwd, capture_output=True, text=True, timeout=900
    )


def test_every_script_has_a_case() -> None:
    assert set(SCRIPTS) == CASES


def test_build_reference_tables_reproduces_the_shipped_raster(data: Path, tmp_path: Path) -> None:
    from pipeline.core.bioregion import SHIPPED_CELLS

    p = script("build_reference_tables.py", "--out", str(tmp_path / "b.tif"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    with rasterio.open(tmp_path / "b.tif") as a, rasterio.open(SHIPPED_CELLS) as b:
        assert np.array_equal(a.read(), b.read()) and a.transform == b.transform and a.crs == b.crs
        assert a.tags()["bits"] == b.tags()["bits"]


def test_make_bridge_lc_196_spec_reproduces_the_shipped_spec(tmp_path: Path) -> None:
    p = script("make_bridge_lc_196_spec.py", "--out", str(tmp_path / "s.yaml"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    shipped = ROOT / "pipeline" / "specs" / "bridge-lc-196.yaml"
    assert (tmp_path / "s.yaml").read_text() == shipped.read_text()
    assert len(yaml.safe_load(shipped.read_text())["features"]) == 196


def test_make_alphaearth_specs_reproduces_the_shipped_specs(tmp_path: Path) -> None:
    p = script("make_alphaearth_specs.py", "--out-dir", str(tmp_path), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    for name, n in (("alphaearth", 64), ("elc10-alphaearth", 99)):
        shipped = ROOT / "pipeline" / "specs" / f"{name}.yaml"
        assert (tmp_path / f"{name}.yaml").read_text() == shipped.read_text()
        assert len(yaml.safe_load(shipped.read_text())["features"]) == n


def test_check_report_browser_refuses_a_missing_page_in_one_line(tmp_path: Path) -> None:
    p = script("check_report_browser.py", str(tmp_path / "none.html"), cwd=tmp_path)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0 and "not an `eulc report` page" in p.stderr


def test_elevation_loro_joins_the_survey_and_compares_on_the_same_points(
    full_table: Path, data: Path, tmp_path: Path
) -> None:
    """The join keeps exactly the table's points with a plausible survey ``Elev`` (recounted here
    from the two files), and the with/without runs test the same points, so their difference has
    a paired interval; a survey without ``Elev`` ends in one line."""
    import geopandas as gpd

    survey = data / "lucas2018_survey_points" / "lucas2018_topsoil_points_survey_attrs.csv"
    args = ["--survey", str(survey), "--out", str(tmp_path / "e"), "--models", "xgboost", "--regions", "Alpine"]
    p = script("elevation_loro.py", str(full_table), *args, "--max-rows", "4000", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    s = pd.read_csv(survey, usecols=["POINT_ID", "Elev"])
    t = gpd.read_parquet(full_table)[["point_id", "level1"]]
    good = t.merge(s, left_on="point_id", right_on="POINT_ID")
    good = good[good["Elev"].between(-30, 4810)]
    n = good["level1"].value_counts()
    good = good[good["level1"].isin(n[n >= 30].index)]
    joined = gpd.read_parquet(tmp_path / "e" / "elc10_elevation.parquet")
    assert len(joined) == len(good) > 10_000 and set(joined["level1"]) == {0, 1, 6}
    got = joined.set_index("point_id")["dem_elevation"].sort_index()
    np.testing.assert_allclose(got.to_numpy(), good.set_index("POINT_ID")["Elev"].sort_index().to_numpy(), rtol=1e-6)
    diff = pd.read_csv(tmp_path / "e" / "elevation_loro.csv")
    row = diff[(diff["split"] == "loro-Alpine") & (diff["model"] == "xgboost")].iloc[0]
    assert row["weighted_f1_cell_low"] <= row["weighted_f1_diff"] <= row["weighted_f1_cell_high"]
    runs = {t: pd.read_csv(tmp_path / "e" / t / "loro_runs.csv") for t in ("with", "without")}
    assert runs["with"]["n_test"].tolist() == runs["without"]["n_test"].tolist()
    wf1 = {t: float(r["weighted_f1"].iloc[0]) for t, r in runs.items()}
    assert row["weighted_f1_diff"] == pytest.approx(100 * (wf1["with"] - wf1["without"]), abs=1e-6)
    bad = tmp_path / "bad.csv"
    bad.write_text("POINT_ID,height\n1,2\n")
    p = script("elevation_loro.py", str(full_table), "--survey", str(bad), "--out", str(tmp_path / "b"), cwd=tmp_path)
    assert p.returncode == 1 and "Traceback" not in p.stderr and "no column(s) ['Elev']" in p.stderr


def test_mutants_kills_one_named_mutant(data: Path, tmp_path: Path) -> None:
    p = script("mutants.py", "6", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr[-2000:]
    assert "mutant 6" in p.stdout and "killed" in p.stdout and "1 of 1 named mutants killed" in p.stdout


def test_ood_loro_runs_one_region_and_refuses_other_settings_on_resume(full_table: Path, tmp_path: Path) -> None:
    args = ["--out", str(tmp_path / "o.json"), "--regions", "Pannonian", "--max-rows", "3000"]
    p = script("ood_loro.py", str(full_table), *args, "--epochs", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads((tmp_path / "o.json").read_text())
    pann = out["regions"]["Pannonian"]
    assert out["pool"]["n"] == pann["n"] > 0 and 0 <= pann["accuracy"] <= 1 and 0 <= pann["flag_any"] <= 1
    assert out["settings"]["max_rows"] == 3000
    p = script("ood_loro.py", str(full_table), *args, "--epochs", "2", cwd=tmp_path)
    assert p.returncode == 1 and "other settings" in p.stderr and "Traceback" not in p.stderr


def test_pilot_default_chooses_inside_one_fold(full_table: Path, tmp_path: Path) -> None:
    """The pilot on the Pannonian fold: the winner is the candidate with the best inner score
    (ties: the earlier), XGBoost is scored on the same inner hold-out, and bad input is one line."""
    p = script(
        "pilot_default.py",
        str(full_table),
        "--folds",
        "Pannonian",
        "--candidates",
        "eulc-plain,eulc-coords",
        "--epochs",
        "1",
        "--max-rows",
        "3000",
        "--out",
        str(tmp_path / "p.csv"),
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    df = pd.read_csv(tmp_path / "p.csv").set_index("model")
    cand = df.loc[["eulc-plain", "eulc-coords"], "inner_weighted_f1"]
    best = cand.index[int(np.argmax(cand.to_numpy()))]
    assert f"winner: {best}" in df.index and 0 < df.loc["xgboost", "inner_weighted_f1"] <= 100
    assert (df["fold"] == "Pannonian").all()
    bad = script("pilot_default.py", str(full_table), "--folds", "Atlantis", cwd=tmp_path)
    assert bad.returncode == 2 and "Atlantis" in bad.stderr and "Traceback" not in bad.stderr


def test_level2_cv_never_reads_the_shipped_bundles_test_cells(data: Path, tmp_path: Path) -> None:
    """Two folds on 600 training-side rows, 1 epoch: the rows it scored exclude every untouched row
    of the shipped Level-2 bundle's split (recomputed here from the bundle's own record), its
    weighted F1 is scikit-learn's on the stored out-of-fold predictions, each row was predicted
    once (probabilities sum to 1), a rerun reuses the folds, and bad input is one line."""
    from sklearn.metrics import f1_score

    from model.bundle import load_bundle
    from model.train import TrainConfig, split_rows, training_arrays
    from pipeline.stages.pretrained import models_dir
    from pipeline.table import read_feature_table

    from .conftest import build_elc10_table

    table = build_elc10_table(
        data / "derived" / "lucas2018_elc10_features_with_lc1_lu1.csv.gz", tmp_path / "l2.parquet"
    )
    args = [str(table), "--out", str(tmp_path / "cv"), "--folds", "2", "--epochs", "1", "--max-rows", "600"]
    p = script("level2_cv.py", *args, "--candidates", "eulc-plain", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    shipped = load_bundle(models_dir() / "elc10-l2")
    d = training_arrays(read_feature_table(table)[0], shipped.features, "level2")
    _, _, te = split_rows(d, TrainConfig(**shipped.meta["train_config"]))
    z = np.load(tmp_path / "cv" / "oof_eulc-plain.npz")
    assert len(z["rows"]) == 600 and not set(z["rows"].tolist()) & set(te.tolist())
    np.testing.assert_allclose(z["prob"].sum(1), 1, atol=1e-4)
    f1 = f1_score(d.y[z["rows"]], z["prob"].argmax(1), average="weighted")
    assert f"| eulc-plain | {100 * f1:.2f} |" in (tmp_path / "cv" / "summary.md").read_text()
    again = script("level2_cv.py", *args, "--candidates", "eulc-plain", cwd=tmp_path)
    assert again.returncode == 0 and "eulc-plain: done before" in again.stdout
    bad = script("level2_cv.py", *args, "--candidates", "forest", cwd=tmp_path)
    assert bad.returncode == 2 and "forest" in bad.stderr and "Traceback" not in bad.stderr


@pytest.fixture(scope="module")
def loro_dir(full_table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LORO run (two regions, one seed, 3,000 rows, 1 epoch) as `eulc evaluate` writes it."""
    from model.evaluate import run_scenario
    from model.train import TrainConfig
    from pipeline.core.spec import load_spec

    out = tmp_path_factory.mktemp("loro")
    run_scenario(
        full_table,
        load_spec("elc10").names,
        "loro",
        out,
        models=("mlp", "xgboost"),
        seeds=(0,),
        cfg=TrainConfig(epochs=1, lr=1e-3),
        regions=["Pannonian", "Atlantic"],
        max_rows=3000,
    )
    return out


def test_results_protocol_prints_the_runs_and_their_intervals(loro_dir: Path, tmp_path: Path) -> None:
    p = script("results_protocol.py", str(loro_dir), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    runs = pd.read_csv(loro_dir / "loro_runs.csv")
    for r in runs.to_dict("records"):  # the per-region table shows each run's weighted F1
        assert f"{100 * r['weighted_f1']:.2f}" in p.stdout
    diff = pd.read_csv(loro_dir / "loro_differences.csv").set_index("split")
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("| size-weighted mean | xgboost |"))
    assert f"{diff.loc['size-weighted mean', 'weighted_f1_diff']:+.2f}" in line
    assert "size-weighted mean wF1" in p.stdout and "pooled" not in p.stdout


def test_results_protocol_gives_each_kind_of_choice_its_own_candidates(loro_dir: Path, tmp_path: Path) -> None:
    """A run with both `nested` and `xgboost-tuned` writes both kinds of row to one selection CSV
    (as `eulc evaluate` does); each table must list its own candidates' inner scores.
    """
    run = tmp_path / "run"
    run.mkdir()
    (run / "loro_runs.csv").write_bytes((loro_dir / "loro_runs.csv").read_bytes())
    inner = "blocked: 0.15 of the training side's 100 km cells"
    pd.DataFrame(
        [
            {  # seed 1 written first: the table lists the choices seed by seed, each row naming its seed
                "split": "loro-Alpine",
                "split_key": "k1:xgboost-tuned:1",
                "seed": 1,
                "winner": "deep",
                "inner": inner,
                "inner_wf1_paper": 0.51234,
                "inner_wf1_deep": 0.55678,
            },
            {
                "split": "loro-Alpine",
                "split_key": "k1",
                "seed": 0,
                "winner": "eulc-coords",
                "inner": inner,
                "inner_wf1_eulc": 0.54423,
                "inner_wf1_eulc-coords": 0.56883,
            },
            {
                "split": "loro-Alpine",
                "split_key": "k1:xgboost-tuned:0",
                "seed": 0,
                "winner": "paper",
                "inner": inner,
                "inner_wf1_paper": 0.53666,
                "inner_wf1_deep": 0.52777,
            },
            {  # a region temperature (protocol 6): no candidates, its own table
                "split": "loro-Alpine (nested+rt)",
                "split_key": "k1:nested+rt:0",
                "seed": 0,
                "winner": "1.022647",
                "inner": "held-out regions: Continental (eulc fitted on the others)",
            },
        ]
    ).to_csv(run / "loro_selection.csv", index=False)
    p = script("results_protocol.py", str(run), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stdout.splitlines()
    assert "| split | seed | eulc | eulc-coords | chosen | scored on |" in lines
    assert f"| Alpine | 0 | 54.42 | 56.88 | eulc-coords | {inner} |" in lines
    assert "| split | seed | paper | deep | chosen | scored on |" in lines
    assert f"| Alpine | 0 | 53.67 | 52.78 | paper | {inner} |" in lines
    seed1 = f"| Alpine | 1 | 51.23 | 55.68 | deep | {inner} |"
    assert lines.index(f"| Alpine | 0 | 53.67 | 52.78 | paper | {inner} |") < lines.index(seed1)
    rt = "| Alpine (nested+rt) | 0 | 1.022647 | held-out regions: Continental (eulc fitted on the others) |"
    assert lines[lines.index(rt) - 2] == "| split | seed | chosen | scored on |"


def test_results_tables_lists_regions_not_aggregates(loro_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "l2"
    empty.mkdir()
    p = script("results_tables.py", str(loro_dir), str(empty), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    level1 = p.stdout.split("## LORO per region, Level-1")[1].split("##")[0]
    rows = [ln.split("|")[1].strip() for ln in level1.splitlines() if ln.startswith("| ") and "(" in ln]
    assert sorted(r.split(" (")[0] for r in rows if not r.startswith("region")) == ["Atlantic", "Pannonian"]


def test_train_pretrained_writes_a_bundle_with_its_interval(data: Path, tmp_path: Path) -> None:
    """One bundle on 3,000 rows, 1 epoch, into --out: it loads, its card gives XGBoost on the same
    untouched cells with the paired cell-bootstrap interval (versus_xgboost.json beside bundle.json,
    which stays as training wrote it: its hash is part of the model's digest)."""
    from model.bundle import load_bundle

    out = tmp_path / "models"
    p = script(
        "train_pretrained.py",
        "--only",
        "elc10-ndvi-l1",
        "--epochs",
        "1",
        "--max-rows",
        "3000",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    b = load_bundle(out / "elc10-ndvi-l1")
    assert b.ood() is not None  # bundle.json untouched after training: the OOD reference still matches
    m = {**b.meta["metrics"], **json.loads((out / "elc10-ndvi-l1" / "versus_xgboost.json").read_text())}
    lo, hi = m["minus_xgboost_cell_ci95"]
    assert lo <= 100 * (m["test_weighted_f1"] - m["xgboost_test_weighted_f1"]) <= hi and m["n_test_cells"] > 5
    assert f"[{lo:+.2f}, {hi:+.2f}]" in (out / "elc10-ndvi-l1" / "MODEL_CARD.md").read_text()
    assert sorted(q.name for q in out.iterdir()) == ["elc10-ndvi-l1"]
