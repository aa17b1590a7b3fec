"""The CLI as a user runs it: real subprocesses, exit codes, one-line errors, real outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from rio_cogeo.cogeo import cog_validate

from .conftest import ELC10


def eulc(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.app.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )


def _one_line_error(p: subprocess.CompletedProcess, *needles: str) -> None:
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, p.stderr
    line = errors[0]
    for n in needles:
        assert n in line, line


def test_table_missing_column(elc10_frame: pd.DataFrame, tmp_path: Path) -> None:
    bad = tmp_path / "export.csv"
    elc10_frame.iloc[:50].drop(columns=["swir1_median"]).to_csv(bad, index=False)
    out = tmp_path / "t.parquet"
    p = eulc("table", str(bad), "--out", str(out))
    _one_line_error(p, "export.csv", "'swir1_median'")
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_unknown_spec_key(tmp_path: Path, data: Path) -> None:
    from pipeline.core.spec import load_spec

    raw = load_spec("elc10").model_dump(mode="json")
    raw["sensors"]["s2"]["cloud_prob_max"] = 40
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    p = eulc(
        "features", "--files", "eolearn_slovenia", "--year", "2017", "--spec", str(spec), "--out", str(tmp_path / "f")
    )
    _one_line_error(p, "spec.yaml", "sensors.s2.cloud_prob_max")
    assert not (tmp_path / "f").exists()


def test_missing_band_in_feature_cog(tmp_path: Path, small_bundle: Path, slovenia_features: Path) -> None:
    with rasterio.open(slovenia_features) as s:
        prof, data, desc = s.profile, s.read(), s.descriptions
    prof.update(count=9, driver="GTiff")
    f = tmp_path / "f.tif"
    with rasterio.open(f, "w", **prof) as d:
        d.write(data[1:])
        d.descriptions = desc[1:]
    p = eulc("map", str(f), "--bundle", str(small_bundle), "--out", str(tmp_path / "maps"), "--scheduler", "sync")
    assert p.returncode == 1 and "Traceback" not in p.stderr  # the tile is recorded as failed
    msg = " ".join(p.stderr.split())
    assert "1 failed tile(s)" in msg and "f.tif: band(s) ['ndvi_p5'] are missing" in msg
    assert not list((tmp_path / "maps").glob("*.tif"))


def test_demo_training_without_data_says_how_to_point_to_it(tmp_path: Path) -> None:
    """The demo's own inputs ship with the package (tests/test_packaging.py runs it with no data);
    training reads the ELC10 table from EULC_DATA and says how to point to it."""
    p = eulc("demo", "--train", "--out", str(tmp_path / "d"), env={"EULC_DATA": str(tmp_path / "none")})
    _one_line_error(p, "EULC_DATA", str(tmp_path / "none"))


# `eulc demo` with the shipped bundle, and its resume after damage: tests/test_readme.py::test_the_main_job


def test_report_command_on_the_demo_map(
    tmp_path: Path, data: Path, small_bundle: Path, slovenia_features: Path
) -> None:
    maps = tmp_path / "maps"
    assert (
        eulc(
            "map", str(slovenia_features), "--bundle", str(small_bundle), "--out", str(maps), "--scheduler", "sync"
        ).returncode
        == 0
    )
    ref = data / "eolearn_testeopatch_slovenia" / "lulc_reference.tif"
    p = eulc(
        "report",
        "--map",
        str(maps / f"{slovenia_features.stem}_class.tif"),
        "--reference",
        str(ref),
        "--crosswalk",
        "eolearn_lulc",
        "--out",
        str(tmp_path / "rep"),
        "--bundle",
        str(small_bundle),
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "overall agreement" in p.stdout and (tmp_path / "rep" / "report.html").is_file()
    bad = eulc(
        "report",
        "--map",
        str(maps / f"{slovenia_features.stem}_class.tif"),
        "--reference",
        str(ref),
        "--crosswalk",
        "corine_l3",
        "--out",
        str(tmp_path / "rep2"),
    )
    _one_line_error(bad, "missing from the crosswalk 'corine_l3'", "lulc_reference.tif")


@pytest.mark.slow
def test_demo_end_to_end_and_resume(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "demo"
    p = eulc("demo", "--out", str(out), "--epochs", "3", "--train")
    assert p.returncode == 0, p.stderr[-3000:]
    assert (out / "table.parquet").is_file()
    assert len(pd.read_parquet(out / "table.parquet")) == len(pd.read_csv(data / ELC10, usecols=["POINT_ID"]))
    names = sorted(x.name for x in (out / "model").iterdir() if x.name != ".eulc-written")
    assert names == ["bundle.json", "item.json", "ood.json", "ood.safetensors", "weights.safetensors"]
    feats = list((out / "features").glob("*.tif"))
    maps = sorted(x.name for x in (out / "maps").glob("*.tif"))
    assert len(feats) == 1 and maps == [
        "eolearn_slovenia_class.tif",
        "eolearn_slovenia_confidence.tif",
        "eolearn_slovenia_ood.tif",
    ]  # the trained bundle has an OOD reference
    for f in [*feats, *(out / "maps").glob("*.tif")]:
        assert cog_validate(str(f))[0]
        with rasterio.open(f) as s:
            assert s.crs.to_epsg() == 3035 and s.res == (10.0, 10.0)
    agree = json.loads((out / "agreement.json").read_text())
    assert {"overall_accuracy", "per_class", "confusion"} <= set(agree)
    cm = np.array(agree["confusion"]["matrix"])
    assert np.isclose(agree["overall_accuracy"], np.trace(cm) / cm.sum())
    # 3 epochs is far shorter than the demo's 10; it still maps the forest patch well
    assert agree["overall_accuracy"] > 0.75
    assert "overall accuracy" in p.stdout
    import matplotlib.image

    png = matplotlib.image.imread(out / "maps" / "eolearn_slovenia_quicklook.png")
    assert png.ndim == 3 and png.shape[1] > 1000
    # a rerun resumes: nothing is redone
    mtime = (out / "model" / "weights.safetensors").stat().st_mtime_ns
    p2 = eulc("demo", "--out", str(out), "--epochs", "3", "--train")
    assert p2.returncode == 0
    assert p2.stderr.count("up to date") >= 4 or p2.stdout.count("up to date") >= 4
    assert (out / "model" / "weights.safetensors").stat().st_mtime_ns == mtime


def test_threads_quiet_info_and_usage_errors(tmp_path: Path, data: Path) -> None:
    p = eulc("--threads", "1", "info")
    assert p.returncode == 0 and "1 threads" in p.stdout and "GDAL" in p.stdout
    _one_line_error(eulc("--threads", "0", "info"), "--threads")
    _one_line_error(eulc("info", env={"EULC_THREADS": "many"}), "EULC_THREADS")
    _one_line_error(eulc("--no-such-option"), "--no-such-option")
    _one_line_error(eulc("map", "--no-such-option"), "--no-such-option")
    # --quiet: the result on stdout, nothing on stderr (no progress, no notes); errors still show
    src = data / "elc10_lucas2018" / "lucas2018_elc10_s2_s1_features.csv.gz"
    q = eulc("-q", "table", str(src), "--out", str(tmp_path / "t.parquet"))
    assert q.returncode == 0 and q.stderr == "" and q.stdout.strip()
    _one_line_error(eulc("-q", "table", str(tmp_path / "none.csv"), "--out", str(tmp_path / "u.parquet")), "none.csv")


def test_openmp_threads_sleep_when_other_work_loads_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.core import config

    for var in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "EULC_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EULC_THREADS", "4")
    monkeypatch.setattr(config.os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    assert not config.calm_openmp_under_load() and "GOMP_SPINCOUNT" not in os.environ  # 1 of 4 busy
    monkeypatch.setattr(config.os, "getloadavg", lambda: (2.5, 1.0, 1.0))
    assert config.calm_openmp_under_load() and os.environ["GOMP_SPINCOUNT"] == config.SPIN_UNDER_LOAD
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's choice is kept
    assert not config.calm_openmp_under_load() and "GOMP_SPINCOUNT" not in os.environ


def test_progress_lines_and_verbose_logs_when_not_a_terminal(
    tmp_path: Path, small_bundle: Path, slovenia_features: Path
) -> None:
    """Under a pipe (CI, a batch job) rich draws no bar: plain progress lines with done/total
    come instead; -v adds eulc's own log records (per tile), and -q with -v is refused."""
    p = eulc(
        "-v",
        "map",
        str(slovenia_features),
        "--bundle",
        str(small_bundle),
        "--out",
        str(tmp_path / "m"),
        "--scheduler",
        "sync",
        env={"EULC_PROGRESS_S": "0"},
    )
    assert p.returncode == 0, p.stderr
    err = " ".join(p.stderr.split())
    assert "mapping: 1/1 (100 %) in 0:0" in err  # the last line of the plain progress
    assert f"{slovenia_features.stem}: mapped in" in err and "pixels" in err  # -v: the runner's record
    q = eulc(
        "map",
        str(slovenia_features),
        "--bundle",
        str(small_bundle),
        "--out",
        str(tmp_path / "q"),
        "--scheduler",
        "sync",
        env={"EULC_PROGRESS_S": "0"},
    )
    assert q.returncode == 0 and "mapped in" not in q.stderr  # no log records without -v
    _one_line_error(eulc("-q", "-v", "info"), "--quiet", "--verbose")
    _one_line_error(
        eulc(
            "map",
            str(slovenia_features),
            "--bundle",
            str(small_bundle),
            "--out",
            str(tmp_path / "x"),
            env={"EULC_PROGRESS_S": "soon"},
        ),
        "EULC_PROGRESS_S",
    )


def test_plain_progress_says_the_time_left() -> None:
    from rich.console import Console

    from pipeline.app import cli_common

    # rich's own attribute: None follows sys.stderr. Saving `console.file` would save the stream this
    # test's capture installed, and "restoring" it would pin the CLI's error console to that dead
    # stream for every later test in the process (seen: their `error:` lines vanished)
    saved = cli_common.console._file
    cli_common.console.file = __import__("io").StringIO()
    try:
        prog = cli_common.PlainProgress(every_s=0)
        now = [0.0]
        prog.get_time = lambda: now[0]  # type: ignore[method-assign]
        task = prog.add_task("features", total=4, info="")
        now[0] = 10.0
        prog.advance(task)  # 1/4 after 10 s: 30 s to go
        now[0] = 20.0
        prog.update(task, advance=1, info="ndvi_p50")
        text = cli_common.console.file.getvalue()
    finally:
        cli_common.console._file = saved
    assert "features: 1/4 (25 %) in 0:10, about 0:30 left" in text, text
    assert "features: 2/4 (50 %) in 0:20, about 0:20 left; ndvi_p50" in text, text
    assert isinstance(cli_common.console, Console)


def test_python_api_table_and_train(data: Path, tmp_path: Path) -> None:
    """pipeline.api's table and training functions on the real LUCAS sample (the notebook
    covers features, map and report)."""
    import pipeline.api as api

    from .conftest import SAMPLE, SURVEY

    table = api.build_table(data / SAMPLE, tmp_path / "t.parquet", lucas=data / SURVEY)
    assert len(table) == 1440 and table.crs.to_epsg() == 4326  # the rows with features
    assert api.read_table(tmp_path / "t.parquet").attrs["eulc"]["features_digest"]
    metrics = api.train(
        tmp_path / "t.parquet", tmp_path / "m", features="elc10-ndvi-l1", preset="mlp", epochs=2, lr=1e-3
    )
    bundle = json.loads((tmp_path / "m" / "bundle.json").read_text())
    assert bundle["features"] == api.bundles()["elc10-ndvi-l1"]
    acc = metrics.get("test_accuracy", metrics.get("val_accuracy"))
    assert acc is not None and 0.2 < acc <= 1, metrics
    assert len(api.legend("level1").classes) == 7 and len(api.legend("level2").classes) == 19
    with pytest.raises(Exception, match="level3"):
        api.legend("level3")
    with pytest.raises(Exception, match="presets"):
        api.train(tmp_path / "t.parquet", tmp_path / "m2", preset="presets")
