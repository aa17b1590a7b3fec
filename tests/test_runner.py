"""`eulc map` over many tiles on real data: stitching, STAC, resume, kill -9 and bad tiles.

The real Slovenia feature COG (108 × 108 px of 10 m) is cut into 25 EEA cells of 250 m.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from pipeline.core.aoi import tiles_for_bounds_3035
from pipeline.core.cog import write_cog
from pipeline.core.grid import TileId
from pipeline.core.reader import FeatureReader
from pipeline.stages.pretrained import models_dir
from tiles.mapping.predict import NODATA, predict_tile
from tiles.mapping.runner import run_map

BUNDLE = models_dir() / "elc10-ndvi-l1"


def _cells(features: Path) -> list[TileId]:
    with rasterio.open(features) as src:  # 20 m inside the edges: each cell holds real pixels
        left, bottom, right, top = src.bounds
        return tiles_for_bounds_3035((left + 20, bottom + 20, right - 20, top - 20), 250)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _eulc(*args: str, **kw: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.app.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def tiled_run(slovenia_features: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("tiled")
    cells = _cells(slovenia_features)
    summary = run_map(cells, BUNDLE, out, features_files=[slovenia_features], scheduler="local", workers=2)
    return cells, out, summary


def test_tiles_stitch_to_the_whole_map(tiled_run, slovenia_features: Path, tmp_path: Path) -> None:
    cells, out, summary = tiled_run
    assert summary.ok and summary.done == len(cells) == 25 and summary.dashboard  # 5 × 5 cells
    whole = predict_tile(BUNDLE_LOADED(), slovenia_features, tmp_path, "whole")
    with rasterio.open(whole.class_path) as w:
        ref, wt = w.read(1), w.transform
    seen = np.zeros_like(ref, bool)
    for c in cells:
        p = out / f"{c}_class.tif"
        assert cog_validate(str(p))[0]
        with rasterio.open(p) as src:
            assert src.transform == c.window().transform and src.shape == (25, 25)
            assert src.tags()["tile_id"] == str(c) and src.colormap(1)
            part = src.read(1)
        col = int(round((src.transform.c - wt.c) / 10))
        row = int(round((wt.f - src.transform.f) / 10))
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + 25, ref.shape[0]), min(col + 25, ref.shape[1])
        np.testing.assert_array_equal(part[r0 - row : r1 - row, c0 - col : c1 - col], ref[r0:r1, c0:c1])
        outside = np.ones((25, 25), bool)
        outside[r0 - row : r1 - row, c0 - col : c1 - col] = False
        assert (part[outside] == NODATA).all()  # the overhang past the stack is nodata
        seen[r0:r1, c0:c1] = True
    assert seen[2:-2, 2:-2].all()  # the cells cover the stack: no gaps


def BUNDLE_LOADED():  # noqa: N802 - a cached loader
    from model.bundle import load_bundle

    return load_bundle(BUNDLE)


def test_stac_items_and_catalog(tiled_run) -> None:
    cells, out, _ = tiled_run
    cat = json.loads((out / "catalog.json").read_text())
    items = sorted(ln["href"] for ln in cat["links"] if ln["rel"] == "item")
    assert items == sorted(f"./{c}.json" for c in cells)
    it = json.loads((out / f"{cells[7]}.json").read_text())
    assert it["properties"]["proj:code"] == "EPSG:3035" and it["properties"]["proj:shape"] == [25, 25]
    assert it["properties"]["start_datetime"].startswith("2017-01-01")
    assert it["assets"]["class"]["href"] == f"./{cells[7]}_class.tif"
    names = [c["description"] for c in it["assets"]["class"]["classification:classes"]]
    assert names[0] == "Woodland/Shrubland" and len(names) == 7
    w, s, e, n = it["bbox"]
    assert 14.54 < w < e < 14.57 and 45.86 < s < n < 45.88  # lon/lat of the Slovenia patch


def test_rerun_skips_done_tiles_and_redoes_a_deleted_one(tiled_run, slovenia_features: Path) -> None:
    cells, out, _ = tiled_run
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tif")}
    again = run_map(cells, BUNDLE, out, features_files=[slovenia_features], scheduler="sync")
    assert again.skipped == len(cells) and again.done == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tif")} == before
    victim = out / f"{cells[3]}_confidence.tif"
    victim.unlink()
    third = run_map(cells, BUNDLE, out, features_files=[slovenia_features], scheduler="sync")
    assert third.done == 1 and third.skipped == len(cells) - 1 and victim.is_file()


def test_kill_minus_9_then_resume_is_byte_identical(slovenia_features: Path, tmp_path: Path) -> None:
    cells = _cells(slovenia_features)[:20]
    codes = ",".join(map(str, cells))
    common = [
        "--tiles",
        codes,
        "--mosaic",
        str(slovenia_features),
        "--bundle",
        str(BUNDLE),
        "--workers",
        "1",
        "--device",
        "cpu",
    ]
    ref_dir, run_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    ref = _eulc("map", *common, "--out", str(ref_dir), "--scheduler", "sync")
    assert ref.wait(600) == 0, ref.stderr.read() if ref.stderr else ""

    kill_after = random.Random(os.getpid()).randint(2, 15)
    proc = _eulc("map", *common, "--out", str(run_dir), start_new_session=True)
    opened_ok = 0
    try:
        while proc.poll() is None:
            for p in run_dir.glob("*.tif") if run_dir.exists() else []:
                if p.name.startswith("."):  # a temporary, renamed when whole
                    continue
                with rasterio.open(p) as src:  # never a partial COG under its final name
                    src.read(1)
                opened_ok += 1
            if len(list(run_dir.glob("*.json"))) >= kill_after:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        proc.wait(60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    for p in run_dir.glob("[!.]*.tif"):
        assert cog_validate(str(p))[0], p
    with sqlite3.connect(run_dir / "manifest.sqlite") as db:
        done = {r[0] for r in db.execute("SELECT tile_id FROM tiles WHERE status='done'")}
    assert 0 < len(done) < len(cells)
    stamps = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for t in done for p in run_dir.glob(f"{t}_*.tif")}

    res = _eulc("map", *common, "--out", str(run_dir), "--scheduler", "sync")
    assert res.wait(600) == 0, res.stderr.read() if res.stderr else ""
    assert f"{len(cells) - len(done)} tile(s) mapped, {len(done)} up to date" in " ".join(
        (res.stdout.read() if res.stdout else "").split()
    )
    for name, st in stamps.items():  # finished tiles were not redone
        p = run_dir / name
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == st
    files = sorted(p.name for p in ref_dir.iterdir() if p.suffix in (".tif", ".json"))
    assert sorted(p.name for p in run_dir.iterdir() if p.suffix in (".tif", ".json")) == files
    own = (".eulc-map.lock", ".eulc-written")
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".") and p.name not in own]
    for name in files:
        assert _sha(run_dir / name) == _sha(ref_dir / name), name


def _tile_file(
    src: Path, cell: TileId, dest: Path, names: list[str] | None = None, crs: str = "EPSG:3035", fill_nan: bool = False
) -> Path:
    with FeatureReader(src, names or _names(src)) as r:
        vals = r.read(cell.window())
        tags = r.tags
    if fill_nan:
        vals[:] = np.nan
    return write_cog(
        dest,
        vals,
        cell.window().transform,
        crs,
        np.nan,
        descriptions=names or _names(src),
        tags={k: tags[k] for k in ("spec", "spec_hash", "year")},
    )


def _names(src: Path) -> list[str]:
    with rasterio.open(src) as s:
        return list(s.descriptions)


def test_bad_tiles_are_recorded_and_the_rest_is_mapped(slovenia_features: Path, tmp_path: Path) -> None:
    cells = _cells(slovenia_features)[6:14]  # cells inside the stack
    feats = tmp_path / "features"
    good = [_tile_file(slovenia_features, c, feats / f"{c}_2017.tif") for c in cells[:3]]
    trunc = _tile_file(slovenia_features, cells[3], feats / f"{cells[3]}_2017.tif")
    trunc.write_bytes(trunc.read_bytes()[: trunc.stat().st_size // 2])
    names = _names(slovenia_features)
    _tile_file(slovenia_features, cells[4], feats / f"{cells[4]}_2017.tif", names=names[:-1])
    _tile_file(slovenia_features, cells[5], feats / f"{cells[5]}_2017.tif", crs="EPSG:32633")
    _tile_file(slovenia_features, cells[6], feats / f"{cells[6]}_2017.tif", fill_nan=True)
    # cells[7]: no feature file at all
    out = tmp_path / "maps"
    p = _eulc(
        "map",
        "--tiles",
        ",".join(map(str, cells)),
        "--features-dir",
        str(feats),
        "--bundle",
        str(BUNDLE),
        "--out",
        str(out),
        "--scheduler",
        "threads",
        "--workers",
        "2",
    )
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 1, stderr
    text = " ".join(stderr.split())
    assert "Traceback" not in stderr and "5 failed tile(s)" in text
    assert "3 tile(s) mapped, 0 up to date, 5 failed" in " ".join(stdout.split())
    with sqlite3.connect(out / "manifest.sqlite") as db:
        rows = dict(db.execute("SELECT tile_id, COALESCE(error, '') FROM tiles WHERE status='failed'").fetchall())
    assert set(rows) == {str(c) for c in cells[3:]}
    assert "corrupt or truncated" in rows[str(cells[3])]
    assert f"['{names[-1]}'] are missing" in rows[str(cells[4])]
    assert "EPSG:32633" in rows[str(cells[5])] and "not the grid CRS EPSG:3035" in rows[str(cells[5])]
    assert "every pixel" in rows[str(cells[6])] and "nodata" in rows[str(cells[6])]
    assert "no feature COG for tile" in rows[str(cells[7])]
    for g in good:
        tile = g.name.removesuffix("_2017.tif")
        assert cog_validate(str(out / f"{tile}_class.tif"))[0]
    assert not list(out.glob(f"{cells[3]}_*"))


def test_bf16_precision_is_recorded_keyed_and_close_to_float32(
    tiled_run, slovenia_features: Path, tmp_path: Path
) -> None:
    from model.infer import resolve_precision
    from pipeline.core.errors import EulcError

    cells, out, _ = tiled_run
    cpu = __import__("torch").device("cpu")
    assert (resolve_precision("auto", cpu), resolve_precision("bf16", cpu), resolve_precision("fp32", cpu)) == (
        False,
        True,
        False,
    )
    with pytest.raises(EulcError, match="`precision` 'half'"):
        resolve_precision("half", cpu)
    events: list[tuple[str, dict]] = []
    b = run_map(
        cells,
        BUNDLE,
        tmp_path,
        features_files=[slovenia_features],
        scheduler="sync",
        precision="bf16",
        on_event=lambda k, i: events.append((k, i)),
    )
    assert b.ok and b.done == len(cells)
    agree, n = 0, 0
    for c in cells:
        with rasterio.open(tmp_path / f"{c}_class.tif") as s16, rasterio.open(out / f"{c}_class.tif") as s32:
            assert (s16.tags()["precision"], s32.tags()["precision"]) == ("bf16", "fp32")
            a16, a32 = s16.read(1), s32.read(1)
        ok = a32 != NODATA
        agree += int((a16[ok] == a32[ok]).sum())
        n += int(ok.sum())
    assert n > 1000 and agree / n >= 0.99  # bf16 matrix products move few pixels' class
    # the precision is part of the resume key: the same run in float32 redoes every tile
    again = run_map(cells, BUNDLE, tmp_path, features_files=[slovenia_features], scheduler="sync", precision="fp32")
    assert again.done == len(cells) and again.skipped == 0
    with rasterio.open(tmp_path / f"{cells[0]}_class.tif") as s:
        assert s.tags()["precision"] == "fp32"
