"""Safe off the beaten path (issue #26): one regression test per class of finding that the
bad-input table (tests/test_bad_inputs.py) cannot express as "exit 2, one line": a full disk,
concurrent and killed runs, foreign but valid inputs, and figures at the edges. Each compares
with an independent oracle (counts by hand, the file's own bytes, a second reader), not with
"something happened".
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio

from pipeline.core.atomic import PREFIX, WRITTEN, WriteError, atomic_path, check_replaceable, temp_prefix
from pipeline.core.errors import EulcError

from .conftest import NDVI_FEATURES

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "models" / "elc10-ndvi-l1"


class Ran:
    """What an in-process CLI run left: its exit status and stderr."""

    def __init__(self, returncode: int, stderr: str) -> None:
        self.returncode, self.stderr = returncode, stderr


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[[list[str], Path], Ran]:
    """Run ``eulc ARGS`` in-process in a folder (the console-script entry point, no interpreter start)."""
    from pipeline.app.cli import main

    def run(args: list[str], cwd: Path) -> Ran:
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["eulc", *args])
        capsys.readouterr()
        code = 0
        try:
            main()
        except SystemExit as e:
            code = int(e.code or 0)
        return Ran(code, capsys.readouterr().err)

    return run


def _eulc(args: list[str], cwd: Path, limit_bytes: int | None = None) -> subprocess.CompletedProcess[str]:
    def lim() -> None:
        if limit_bytes is not None:  # a file-size limit: GDAL's writes fail as on a full disk
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "pipeline.app.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        preexec_fn=lim,
        timeout=600,
    )


# --- one guarded way to write ------------------------------------------------------------------


def test_a_full_disk_ends_in_exit_1_and_nothing_is_recorded_as_done(tmp_path: Path) -> None:
    """A full disk gave a 'done' but unreadable feature COG, and the rerun called it up to date."""
    args = [
        "features",
        "--files",
        "eolearn_slovenia",
        "--year",
        "2017",
        "--out",
        "out",
        "--features",
        ",".join(NDVI_FEATURES[:4]),
    ]
    p = _eulc(args, tmp_path, limit_bytes=60_000)  # the COG is ~150 kB; a limit needs a process of its own
    assert p.returncode == 1, p.stderr
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and "eolearn_slovenia_2017.tif" in line[0] and "free on its disk" in line[0], p.stderr
    assert not (tmp_path / "out" / "eolearn_slovenia_2017.tif").exists()
    ledger = json.loads((tmp_path / "out" / ".eulc-features.json").read_text())
    assert [e["status"] for e in ledger.values()] == ["failed"]
    assert not list((tmp_path / "out").glob(PREFIX + "*"))
    p = _eulc(args, tmp_path)  # with room again: written, and readable to the last block
    assert p.returncode == 0, p.stderr
    with rasterio.open(tmp_path / "out" / "eolearn_slovenia_2017.tif") as src:
        assert np.isfinite(src.read()).any()


def test_the_writer_verifies_before_renaming(tmp_path: Path) -> None:
    dest = tmp_path / "x.json"
    dest.write_text("old")
    from pipeline.core.atomic import record_written

    record_written(dest.parent, dest.name)
    with pytest.raises(WriteError, match="0 bytes"), atomic_path(dest):
        pass  # wrote nothing
    assert dest.read_text() == "old"

    def bad(p: Path) -> None:
        raise WriteError("checked", path=p)

    with pytest.raises(WriteError), atomic_path(dest, verify=bad) as tmp:
        tmp.write_text("new")
    assert dest.read_text() == "old" and not list(tmp_path.glob(PREFIX + "*"))
    with atomic_path(dest) as tmp:
        tmp.write_text("new")
    assert dest.read_text() == "new"


def test_a_file_eulc_did_not_write_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "mine.json").write_text("user")
    with pytest.raises(EulcError, match="not written by eulc"), atomic_path(tmp_path / "mine.json") as tmp:
        tmp.write_text("eulc")
    assert (tmp_path / "mine.json").read_text() == "user"
    with atomic_path(tmp_path / "ours.json") as tmp:  # written by eulc: replaceable, recorded once more
        tmp.write_text("1")
    with atomic_path(tmp_path / "ours.json") as tmp:
        tmp.write_text("2")
    assert (tmp_path / "ours.json").read_text() == "2"
    names = [json.loads(ln)["name"] for ln in (tmp_path / WRITTEN).read_text().splitlines()]
    assert names == ["ours.json", "ours.json"]


def test_links_are_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.json").symlink_to(victim)
    with pytest.raises(EulcError, match="symbolic link"):
        check_replaceable(tmp_path / "out" / "a.json")
    (tmp_path / "out" / "dangling.json").symlink_to(tmp_path / "nowhere")
    with pytest.raises(EulcError, match="symbolic link"):
        check_replaceable(tmp_path / "out" / "dangling.json")
    assert victim.read_text() == "keep" and not (tmp_path / "nowhere").exists()


def test_a_held_lock_refuses_a_second_report_and_a_dead_runs_temporaries_go(
    tmp_path: Path, slovenia_features: Path, cli: Callable[[list[str], Path], Ran]
) -> None:
    """`report` had no lock: two reports at once interleaved their files with exit 0."""
    from model.bundle import load_bundle
    from tiles.mapping.predict import predict_tile

    res = predict_tile(load_bundle(BUNDLE), slovenia_features, tmp_path / "m", "slo")
    out = tmp_path / "rep"
    out.mkdir()
    args = [
        "report",
        "--map",
        str(res.class_path),
        "--reference",
        str(res.class_path),
        "--crosswalk",
        "eulc_level1",
        "--out",
        str(out),
    ]
    with open(out / ".eulc.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        p = _eulc(args, tmp_path)  # another process: flock is per open file, so a second one is needed
    assert p.returncode == 2 and "another `eulc report`" in p.stderr and not (out / "report.html").exists()
    # a temporary of a killed run on this host (a pid that is not alive) is removed by the next run
    dead = subprocess.run(["true"]).returncode or 999_999
    stale = out / temp_prefix("report.html").replace(f".{os.getpid()}.", f".{dead}.")
    stale.write_text("half")
    p = cli(args, tmp_path)
    assert p.returncode == 0, p.stderr
    assert not stale.exists() and (out / "report.html").is_file()


# --- foreign but valid inputs --------------------------------------------------------------------


def test_a_feature_cog_without_eulc_tags_maps(
    tmp_path: Path, slovenia_features: Path, cli: Callable[[list[str], Path], Ran]
) -> None:
    """A COG as GDAL or QGIS write it (band names, no tags) mapped, then exited 3 leaving a
    'running' manifest row: it maps, the item's datetime is the mapping time, the year 'unknown'."""
    with rasterio.open(slovenia_features) as src:
        prof, arr, names = src.profile, src.read(), src.descriptions
    prof.update(driver="GTiff")
    foreign = tmp_path / "qgis.tif"
    with rasterio.open(foreign, "w", **prof) as dst:
        dst.write(arr)
        for i, n in enumerate(names, start=1):
            dst.set_band_description(i, n)
    p = cli(["map", str(foreign), "--bundle", str(BUNDLE), "--out", "m", "--scheduler", "sync"], tmp_path)
    assert p.returncode == 0, p.stderr
    item = json.loads((tmp_path / "m" / "qgis.json").read_text())
    assert item["properties"]["datetime"] and item["properties"]["eulc:year"].startswith("unknown")
    assert item["properties"]["eulc:contract"].startswith("unchecked")
    import sqlite3

    rows = sqlite3.connect(tmp_path / "m" / "manifest.sqlite").execute("SELECT status FROM tiles").fetchall()
    assert rows == [("done",)]


def test_a_legend_with_any_ids_maps_as_written(
    tmp_path: Path, slovenia_features: Path, cli: Callable[[list[str], Path], Ran]
) -> None:
    """Legend ids 10, 13, 16 … were written as 0, 1, 2 (and the STAC item crashed): the class COG
    holds the legend's ids, pixel for pixel those of the shipped bundle relabelled."""
    from model.bundle import load_bundle
    from tiles.mapping.predict import predict_tile

    b = tmp_path / "b"
    shutil.copytree(BUNDLE, b)
    meta = json.loads((b / "bundle.json").read_text())
    ids = [10 + 3 * i for i in range(len(meta["legend"]["classes"]))]
    for c, i in zip(meta["legend"]["classes"], ids, strict=True):
        c["id"] = i
    (b / "bundle.json").write_text(json.dumps(meta))
    p = cli(["map", str(slovenia_features), "--bundle", str(b), "--out", "m", "--scheduler", "sync"], tmp_path)
    assert p.returncode == 0, p.stderr
    ref = predict_tile(load_bundle(BUNDLE), slovenia_features, tmp_path / "ref", "slo")
    with rasterio.open(ref.class_path) as a, rasterio.open(tmp_path / "m" / f"{slovenia_features.stem}_class.tif") as c:
        want, got = a.read(1), c.read(1)
    lut = np.full(256, 255, np.uint8)
    lut[: len(ids)] = ids
    assert (got == lut[want]).all() and set(np.unique(got)) - {255} <= set(ids)
    item = json.loads((tmp_path / "m" / f"{slovenia_features.stem}.json").read_text())
    assert [c["value"] for c in item["assets"]["class"]["classification:classes"]] == ids


def test_an_ood_json_edit_changes_the_resume_key(tmp_path: Path) -> None:
    from model.bundle import load_bundle

    shutil.copytree(BUNDLE, tmp_path / "b")
    d0 = load_bundle(tmp_path / "b").ood().digest  # type: ignore[union-attr]
    meta = json.loads((tmp_path / "b" / "ood.json").read_text())
    meta["distance_threshold"] = float(meta["distance_threshold"]) * 2
    (tmp_path / "b" / "ood.json").write_text(json.dumps(meta))
    assert load_bundle(tmp_path / "b").ood().digest != d0  # type: ignore[union-attr]


# --- containment of what eulc reads ----------------------------------------------------------------


def test_the_model_card_cannot_run_script_or_call_out() -> None:
    import html

    import markdown

    from pipeline.assess.report import safe_card_html

    card = (
        "# Card\n[a](javascript:alert(1)) [b](JAVASCRIPT:x) [c](data:text/html,x) ![d](http://e.example/t.png)"
        " [e](https://doi.org/10.1/x) [f](#method) <img src=x onerror=alert(1)> <script>x</script>"
    )
    out = safe_card_html(markdown.markdown(html.escape(card, quote=False)))
    from html.parser import HTMLParser

    seen: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            seen.append((tag, attrs))

    Tags().feed(out)  # an independent parser: what a browser would build
    assert {t for t, _ in seen} <= {"h1", "p", "a"}, seen
    hrefs = [v for _, attrs in seen for k, v in attrs if k == "href"]
    assert hrefs == ["https://doi.org/10.1/x", "#method"], hrefs
    assert not [k for _, attrs in seen for k, _ in attrs if k.startswith("on") or k == "src"]
    assert 'href="https://doi.org/10.1/x"' in out and 'href="#method"' in out


# --- figures right at the edges ------------------------------------------------------------------


def test_an_unsampled_stratum_is_not_estimable_never_0_ha() -> None:
    from pipeline.assess.accuracy import stratified_estimates

    counts = np.array([[40, 5, 0], [3, 50, 0], [0, 0, 0]])  # stratum 2 mapped, never sampled
    e = stratified_estimates(counts, np.array([100.0, 200.0, 5.0]), ["a", "b", "c"])
    assert np.isnan(e.area).all() and np.isnan(e.overall)
    assert e.n_per_stratum.tolist() == [45, 53, 0]
    assert any("not estimable" in w and "c 0" in w for w in e.warnings)
    # the same matrix without the empty stratum: estimable, by the equations of Olofsson et al.
    e2 = stratified_estimates(counts[:2, :2], np.array([100.0, 200.0]))
    w = np.array([1 / 3, 2 / 3])
    p = w[:, None] * counts[:2, :2] / counts[:2, :2].sum(1, keepdims=True)
    assert e2.overall == pytest.approx(np.trace(p)) and e2.area == pytest.approx(300 * p.sum(0))


def test_the_area_figure_says_not_estimable() -> None:
    from pipeline.assess.report_figures import area_bars

    png = area_bars(["a", "b"], np.array([1.0, 2.0]), np.array([np.nan, np.nan]), np.array([np.nan, np.nan]))
    assert png[:4] == b"\x89PNG"


def test_overlapping_zones_are_split_never_won_by_drawing_order(tmp_path: Path, slovenia_features: Path) -> None:
    """With overlapping zones the later one silently won: the shared pixels are a zone of their own."""
    import geopandas as gpd
    from shapely.geometry import box

    from pipeline.assess.change import zone_ids

    with rasterio.open(slovenia_features) as src:
        left, b, r, t = src.bounds
        crs, w = src.crs, src.width
    mid = left + 10 * (w // 2)
    zones = gpd.GeoDataFrame(
        {"name": ["west", "east"]}, geometry=[box(left, b, mid + 500, t), box(mid, b, r, t)], crs=crs
    )
    zones.to_file(tmp_path / "z.gpkg")
    ids, names = zone_ids(tmp_path / "z.gpkg", slovenia_features)
    assert names == ["west", "east", "west ∩ east"]
    cols = {k: sorted(set(np.nonzero(ids == k)[1].tolist())) for k in (1, 2, 3)}
    assert cols[3] == list(range(w // 2, w // 2 + 50))  # 500 m = 50 columns, counted once
    assert cols[1][-1] == w // 2 - 1 and cols[2][0] == w // 2 + 50 and (ids > 0).all()
    gpd.GeoDataFrame({"name": ["west", "east"]}, geometry=[box(left, b, mid, t), box(mid, b, r, t)], crs=crs).to_file(
        tmp_path / "ok.gpkg"
    )
    ids, names = zone_ids(tmp_path / "ok.gpkg", slovenia_features)
    assert names == ["west", "east"] and set(np.unique(ids)) == {1, 2}


def test_rates_over_0_pixels_are_na() -> None:
    from pipeline.app.cli_map import _pct

    assert _pct(None) == "n/a" and _pct(0.0) == "0.0 %" and _pct(0.5) == "50.0 %"


def test_one_confusion_orientation_rows_map_columns_reference() -> None:
    from model.metrics import classification_metrics

    rng = np.random.default_rng(5)
    y, p = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    m = classification_metrics(y, p, ["a", "b", "c", "d"])
    assert m["confusion"]["rows"] == "map" and m["confusion"]["columns"] == "reference"
    want = [[int(((p == i) & (y == j)).sum()) for j in range(4)] for i in range(4)]  # counted by hand
    assert m["confusion"]["matrix"] == want
    ua = want[1][1] / sum(want[1])  # user's accuracy of class b: its row
    assert m["per_class"]["b"]["users_accuracy"] == pytest.approx(ua)


def test_evaluate_bundle_separates_its_own_training_rows(small_bundle: Path, sample_table: Path) -> None:
    """`eulc evaluate --bundle` scored a bundle on its own training rows without a word."""
    from model.evaluate import evaluate_bundle
    from model.train import TrainConfig, split_rows, training_arrays
    from pipeline.table import read_feature_table

    m = evaluate_bundle(small_bundle, sample_table)
    meta = json.loads((small_bundle / "bundle.json").read_text())
    table, _ = read_feature_table(sample_table)
    data = training_arrays(table, meta["features"], "level1")
    tr, va, te = split_rows(data, TrainConfig(**meta["train_config"]))
    rows, name = (te, "untouched") if len(te) else (va, "hold_out")
    assert m["n"] == len(rows) == m["by_split"][name]["n_rows"] > 0
    assert m["by_split"]["training"]["n_rows"] == len(tr) and "training table" in m["warning"]
    key = "test_accuracy" if len(te) else "val_accuracy"  # what training recorded on the same rows
    assert m["overall_accuracy"] == pytest.approx(meta["metrics"][key], abs=0.02)


def test_the_split_words_match_the_split(sample_table: Path) -> None:
    """A table spanning ≤ 10 100 km cells fell back to a random split while the card said 'whole
    100 km cells'."""
    from model.train import TrainConfig, split_is_blocked, split_rows, training_arrays
    from pipeline.table import read_feature_table

    table, _ = read_feature_table(sample_table)
    data = training_arrays(table, NDVI_FEATURES, "level1")
    assert split_is_blocked(np.arange(len(data.y)), data)
    few = np.flatnonzero(np.isin(data.cells, np.unique(data.cells)[:5]))
    small = data.take(few)
    assert not split_is_blocked(np.arange(len(small.y)), small)
    _, _, te = split_rows(small, TrainConfig(epochs=1, test_fraction=0.2))
    assert len(te)
    assert len(set(small.cells[te].tolist()) & set(np.delete(small.cells, te).tolist())) > 0  # random, not cells


def test_a_one_class_table_is_refused(sample_table: Path, tmp_path: Path) -> None:
    """A one-class table trained without complaint."""
    from model.api import train_from_table
    from model.train import TrainConfig
    from pipeline.core.selection import FeatureSelection
    from pipeline.core.spec import load_spec
    from pipeline.table import read_feature_table, write_feature_table

    gdf, meta = read_feature_table(sample_table)
    one = gdf[gdf["level1"] == gdf["level1"].mode()[0]].copy()
    one.attrs["eulc"] = meta
    assert len(one) > 50
    write_feature_table(one, tmp_path / "one.parquet")
    sel = FeatureSelection.of(load_spec("elc10"), NDVI_FEATURES, "names")
    with pytest.raises(EulcError, match="at least two"):
        train_from_table(tmp_path / "one.parquet", tmp_path / "m", sel, TrainConfig(epochs=1))
    assert not (tmp_path / "m").exists()


def test_every_report_table_is_preflighted() -> None:
    import re

    from pipeline.assess.report import REPORT_FILES

    src = (ROOT / "pipeline" / "assess" / "report.py").read_text()
    tables = set(re.findall(r'tables\["([a-z_]+)"\]', src))
    assert {f"{t}.csv" for t in tables} <= set(REPORT_FILES)


def test_outputs_of_an_eulc_before_the_journal_are_still_replaced(tmp_path: Path, sample_table: Path) -> None:
    """COGs and FeatureTables are recognised by their own tags/metadata when the folder has no
    journal (an eulc before issue #26): replaced; a GeoTIFF without eulc's tags is not.
    Kills: dropping ``recognise=is_eulc_cog`` in the COG writer or ``_is_feature_table`` in the table writer."""
    from affine import Affine

    from pipeline.core.cog import write_cog
    from pipeline.table import read_feature_table, write_feature_table

    t = Affine(10, 0, 4_500_000, 0, -10, 2_600_000)
    ones = np.ones((8, 8), np.uint8)
    write_cog(tmp_path / "m_class.tif", ones, t, "EPSG:3035", 255, tags={"model_hash": "abc"})
    (tmp_path / WRITTEN).unlink()
    write_cog(tmp_path / "m_class.tif", ones * 2, t, "EPSG:3035", 255, tags={"model_hash": "abc"})
    with rasterio.open(tmp_path / "m_class.tif") as src:
        assert (src.read(1) == 2).all()
    (tmp_path / WRITTEN).unlink()
    with rasterio.open(
        tmp_path / "qgis.tif",
        "w",
        driver="GTiff",
        width=8,
        height=8,
        count=1,
        dtype="uint8",
        crs="EPSG:3035",
        transform=t,
    ) as dst:
        dst.write(ones, 1)
    with pytest.raises(EulcError, match="not written by eulc"):
        write_cog(tmp_path / "qgis.tif", ones, t, "EPSG:3035", 255, tags={"model_hash": "abc"})
    gdf, meta = read_feature_table(sample_table)
    gdf.attrs["eulc"] = meta
    write_feature_table(gdf.head(20), tmp_path / "t.parquet")
    (tmp_path / WRITTEN).unlink()
    write_feature_table(gdf.head(30), tmp_path / "t.parquet")
    assert len(read_feature_table(tmp_path / "t.parquet")[0]) == 30
