"""The stages layer (issue #25): errors name request fields and the CLI spells them as flags; one
ledger rule behind every resuming stage; features over many tiles on the map's schedulers, byte-
identical to one process and kill -9 safe; the API does what the CLI does; one bundle load per run.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from pipeline.app.cli import app, main
from pipeline.app.flags import FIELD, FLAGS, to_flags
from pipeline.core.errors import EulcError
from pipeline.core.ledger import JsonLedger, content_sha256

from .conftest import NDVI_FEATURES, SAMPLE

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = [
    p
    for pkg in ("pipeline", "tiles", "model", "gee_scripts")
    for p in sorted((ROOT / pkg).rglob("*.py"))
    if not p.is_relative_to(ROOT / "pipeline" / "app") and p.name != "api.py"
]
FOUR = "bbox:14.55384,45.86908,14.55928,45.87245"  # 4 cells of 250 m inside the Slovenia stack
NINE = "bbox:14.55384,45.86908,14.56268,45.87456"  # 3 x 3 cells of 250 m inside it


def _cli_flags() -> set[str]:
    import typer.main

    flags: set[str] = set()

    def walk(cmd: object) -> None:
        for p in getattr(cmd, "params", []):
            flags.update(o for o in p.opts + p.secondary_opts if o.startswith("--"))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return flags - {"--help"}


def _error_strings(path: Path) -> list[tuple[int, str]]:
    """String constants inside ``raise`` statements and error-class calls of a module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        call = isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")).endswith(
            ("Error", "safe_name")
        )
        if (isinstance(node, ast.Raise) and node.exc is not None) or call:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    out.append((sub.lineno, sub.value))
    return out


def test_no_library_error_names_a_cli_flag() -> None:
    flags = _cli_flags()
    assert {"--tiles", "--tile-size", "--features-dir", "--out", "--scheduler"} <= flags
    pattern = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
    hits = [
        f"{p.relative_to(ROOT)}:{ln} {m}"
        for p in LIBRARY
        for ln, s in _error_strings(p)
        for m in pattern.findall(s)
        if m in flags
    ]
    assert hits == []


def test_every_field_an_error_names_has_its_flag() -> None:
    cli = _cli_flags()
    named = {m for p in LIBRARY for _, s in _error_strings(p) for m in FIELD.findall(s)}
    assert {"tile_size", "tiles", "scheduler", "out", "device"} <= named
    manifest_keys = {"bands", "orbit", "timeseries"}  # stack-manifest YAML values, not request fields
    assert named - set(FLAGS) - manifest_keys == set(), "add these fields to pipeline/app/flags.py"
    assert {f for f in FLAGS.values() if f.startswith("--")} - cli == set()
    assert (
        to_flags("`tile_size` '0m' and `features_dir` and `eulc map`") == "--tile-size '0m' and --features-dir "
        "and `eulc map`"
    )


def _cli_error(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.setattr(sys, "argv", ["eulc", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return " ".join(" ".join(err.split("error:", 1)[1].split()).split())


CASES = [  # (request, CLI args, the field, the flag)
    ("features", dict(tile_size="0m", tiles=FOUR), ["--tile-size", "0m", "--tiles", FOUR], "tile_size"),
    ("features", dict(scheduler="nope"), ["--scheduler", "nope"], "scheduler"),
    ("features", dict(workers=0), ["--workers", "0"], "workers"),
    ("features", dict(cloud_mask="some"), ["--cloud-mask", "some"], "cloud_mask"),
    ("features", dict(tiles="E467N253"), ["--tiles", "E467N253"], "tiles"),
    ("map", dict(compress="LZ4"), ["--compress", "LZ4"], "compress"),
    ("map", dict(accept=("orbit",)), ["--accept", "orbit"], "accept"),
    ("map", dict(precision="fp8"), ["--precision", "fp8"], "precision"),
    ("map", dict(device="tpu"), ["--device", "tpu"], "device"),
    ("train", dict(model="forest"), ["--model", "forest"], "model"),
    (
        "train",
        dict(model="xgboost", xgboost_setting="huge"),
        ["--model", "xgboost", "--xgboost-setting", "huge"],
        "xgboost_setting",
    ),
    ("train", dict(model="xgboost", epochs=3), ["--model", "xgboost", "--epochs", "3"], "epochs"),
    ("train", dict(model="xgboost", ema=False), ["--model", "xgboost", "--no-ema"], "ema"),
    ("train", dict(model="xgboost", device="cuda"), ["--model", "xgboost", "--device", "cuda"], "device"),
]


@pytest.mark.parametrize("stage,fields,args,field", CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_the_cli_and_the_api_refuse_alike(
    stage: str,
    fields: dict,
    args: list[str],
    field: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import pipeline.api as api

    monkeypatch.chdir(tmp_path)
    if stage == "features":
        req = dict(out=tmp_path / "o", year=2017, files="eolearn_slovenia_demo") | fields
        base = ["features", "--out", str(tmp_path / "o"), "--year", "2017", "--files", "eolearn_slovenia_demo"]
        make = lambda: api.run(api.FeaturesRequest(**req))  # noqa: E731
    elif stage == "train":
        req = dict(table=tmp_path / "t.parquet", out=tmp_path / "o") | fields
        base = ["train", str(tmp_path / "t.parquet"), "--out", str(tmp_path / "o")]
        make = lambda: api.run(api.TrainRequest(**req))  # noqa: E731
    else:
        feats = tmp_path / "f.tif"
        feats.write_bytes(b"")
        req = dict(out=tmp_path / "o", feature_files=(feats,), bundle="elc10-ndvi-l1") | fields
        base = ["map", str(feats), "--out", str(tmp_path / "o"), "--bundle", "elc10-ndvi-l1"]
        make = lambda: api.run(api.MapRequest(**req))  # noqa: E731
    with pytest.raises(EulcError) as e:
        make()
    said_api = " ".join(str(e.value).split())
    assert f"`{field}`" in said_api and FLAGS[field] not in said_api
    said_cli = _cli_error(base + args, monkeypatch, capsys)
    assert said_cli == to_flags(said_api) and FLAGS[field] in said_cli
    assert not (tmp_path / "o").exists() or not any(p for p in (tmp_path / "o").iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("backend", ["json", "sqlite"])
def test_both_ledger_backends_keep_the_one_rule(backend: str, tmp_path: Path) -> None:
    from tiles.mapping.manifest import Manifest

    out = tmp_path / "run"
    out.mkdir()
    a = out / "a.tif"
    a.write_bytes(b"abc")
    book = JsonLedger(out, ".l.json") if backend == "json" else Manifest(out / "manifest.sqlite")
    assert not book.current("a", "k1")
    book.start("a", "k1")
    assert not book.current("a", "k1")  # running: a killed run's entry is redone
    book.finish("a", "k1", [a])
    assert book.current("a", "k1") and not book.current("a", "k2") and not book.current("b", "k1")
    a.write_bytes(b"abd")  # same size, other bytes
    assert not book.current("a", "k1")
    a.write_bytes(b"abc")
    assert book.current("a", "k1")
    a.unlink()
    assert not book.current("a", "k1")
    a.write_bytes(b"abc")
    book.fail("a", "k1", "broken")
    e = book.entry("a")
    assert e is not None and e.status == "failed" and e.error == "broken" and not book.current("a", "k1")
    if backend == "json":
        assert JsonLedger(out, ".l.json").entry("a") == e  # it reads back as written
        (out / ".l.json").write_text("{not json")
        assert JsonLedger(out, ".l.json").entry("a") is None  # damaged: everything is redone
    else:
        book.close()


def test_every_resuming_stage_goes_through_the_one_rule(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """table, train, features, map and the demo: a rerun is current only through
    ``pipeline.core.ledger.outputs_intact``: with the rule saying no, every stage redoes its work."""
    import pipeline.core.ledger as ledger
    from pipeline.stages.demo import DemoRequest, run_demo
    from pipeline.stages.features import FeaturesRequest, features
    from pipeline.stages.mapping import MapRequest, map_tiles
    from pipeline.stages.table import TableRequest, build_table
    from pipeline.stages.train import TrainRequest, train

    asked: list[str] = []
    real = ledger.outputs_intact

    def spy(root: Path, outputs: dict[str, str]) -> bool:
        asked.extend(Path(n).name for n in outputs)
        return real(root, outputs)

    def run_all() -> dict[str, bool]:
        t = build_table(TableRequest((data / SAMPLE,), tmp_path / "t" / "t.parquet"))
        m = train(
            TrainRequest(
                t.path,
                tmp_path / "m",
                features="ndvi_p50,ndvi_p95",
                epochs=2,
                preset="mlp",
                device="cpu",
                landscapes=0,
                overwrite=True,
            )
        )
        f = features(
            FeaturesRequest(
                tmp_path / "f",
                2017,
                files="eolearn_slovenia",
                tiles=FOUR,
                tile_size="250m",
                features="ndvi_p50,ndvi_p95",
                scheduler="sync",
            )
        )
        mp = map_tiles(
            MapRequest(tmp_path / "maps", tuple(f.outputs[:2]), str(tmp_path / "m"), scheduler="sync", device="cpu")
        )
        steps: list[str] = []
        run_demo(DemoRequest(tmp_path / "demo"), lambda kind, info: steps.append(str(info.get("message"))))
        return {
            "table": t.up_to_date,
            "train": m.up_to_date,
            "features": f.skipped == 4,
            "map": mp.skipped == 2,
            "demo": any(s.startswith("up to date") for s in steps)
            and not any(s.startswith("wrote eolearn") for s in steps),
        }

    assert run_all() == dict.fromkeys(("table", "train", "features", "map", "demo"), False)
    monkeypatch.setattr(ledger, "outputs_intact", spy)
    assert run_all() == dict.fromkeys(("table", "train", "features", "map", "demo"), True)
    for name in (
        "t.parquet",
        "weights.safetensors",
        f"{'250mE18699N10157'}_2017.tif",
        "eolearn_slovenia_class.tif",
        "selection.json",
        "eolearn_slovenia_2017.tif",
    ):
        assert name in asked
    monkeypatch.setattr(ledger, "outputs_intact", lambda root, outputs: False)  # the rule says "changed"
    assert run_all() == dict.fromkeys(("table", "train", "features", "map", "demo"), False)


def _tifs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tif"))}


def test_features_on_a_local_cluster_equal_one_process(data: Path, tmp_path: Path) -> None:
    """4 cells of the shipped Slovenia stack and 4 of the static-catalogue fixture: `local` with 2
    workers writes the same bytes (COGs and ledger) as `sync`."""
    from pipeline.stages.features import FeaturesRequest, features

    from .test_stac_load import _catalog

    (tmp_path / "cat").mkdir()
    cat = _catalog(data, tmp_path / "cat")
    for name, src in (
        ("stack", dict(files="eolearn_slovenia", year=2017, features=",".join(NDVI_FEATURES))),
        (
            "catalog",
            dict(
                catalog=cat,
                year=2015,
                features="ndvi_p50,ndvi_p95",
                spec="elc10",
                cloud_mask="none",
                processing_level="L1C",
            ),
        ),
    ):
        got = {}
        for sched in ("sync", "local"):
            out = tmp_path / f"{name}-{sched}"
            s = features(FeaturesRequest(out, tiles=FOUR, tile_size="250m", scheduler=sched, workers=2, **src))
            assert s.done == 4 and s.ok, s.failures
            got[sched] = _tifs(out) | {"ledger": (out / ".eulc-features.json").read_bytes()}
        assert len(got["sync"]) == 5 and got["sync"] == got["local"], name
        with rasterio.open(
            out / "250mE18699N10157_2015.tif" if name == "catalog" else out / "250mE18699N10157_2017.tif"
        ) as s:
            assert s.shape == (25, 25) and s.crs.to_epsg() == 3035 and np.isfinite(s.read()).any()


def _ledger_done(path: Path) -> dict[str, str]:
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {k: v["sha256"][k] for k, v in d.items() if v.get("status") == "done"}


def test_kill_9_in_a_cluster_run_then_rerun(data: Path, tmp_path: Path) -> None:
    """`eulc features` over 9 cells on a local cluster, killed with SIGKILL (client and workers)
    mid-run: the rerun redoes only the tiles not recorded, and every byte equals an uninterrupted
    run."""
    args = [
        "features",
        "--files",
        "eolearn_slovenia",
        "--tiles",
        NINE,
        "--tile-size",
        "250m",
        "--year",
        "2017",
        "--features",
        ",".join(NDVI_FEATURES),
        "--out",
        "out",
    ]
    env = os.environ | {"EULC_DATA": str(data)}
    ref, run = tmp_path / "ref", tmp_path / "run"
    ref.mkdir()
    run.mkdir()
    p = subprocess.run(
        [sys.executable, "-m", "pipeline.app.cli", *args, "--scheduler", "sync"],
        cwd=ref,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    want = _tifs(ref / "out")
    assert len(want) == 9
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.app.cli", *args, "--scheduler", "local", "--workers", "2"],
        cwd=run,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    t0 = time.monotonic()
    while len(_ledger_done(run / "out" / ".eulc-features.json")) < 3 and time.monotonic() - t0 < 240:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(60)
    before = _ledger_done(run / "out" / ".eulc-features.json")
    assert 3 <= len(before) < 9, len(before)
    kept = {n: (run / "out" / n).stat().st_mtime_ns for n in before}
    p = subprocess.run(
        [sys.executable, "-m", "pipeline.app.cli", *args, "--scheduler", "sync"],
        cwd=run,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    said = " ".join(p.stdout.split())
    assert f"wrote {9 - len(before)} feature COG(s)" in said and f"({len(before)} up to date)" in said, said
    assert {n: (run / "out" / n).stat().st_mtime_ns for n in before} == kept  # not rewritten
    assert _tifs(run / "out") == want
    assert (run / "out" / ".eulc-features.json").read_bytes() == (ref / "out" / ".eulc-features.json").read_bytes()
    assert not list((run / "out").glob(".eulc-tmp.*"))


def test_the_api_resumes_features_and_chains_them_into_the_map(data: Path, sample_table: Path, tmp_path: Path) -> None:
    """Through pipeline.api: the features of a static catalogue resume; `map_tiles(catalog=...)`
    computes each tile's features on the worker that maps it, and its classes equal mapping the
    separately computed features."""
    import pipeline.api as api

    from .test_stac_load import _catalog

    (tmp_path / "cat").mkdir()
    cat = _catalog(data, tmp_path / "cat")
    bundle = tmp_path / "b"
    api.train(sample_table, bundle, features="ndvi_p50,ndvi_p95", preset="mlp", epochs=3, device="cpu", landscapes=0)
    src = dict(catalog=cat, year=2015, cloud_mask="none", processing_level="L1C")
    first = api.features_for_tiles(tmp_path / "f", tiles=FOUR, tile_size="250m", features=str(bundle), **src)
    again = api.features_for_tiles(tmp_path / "f", tiles=FOUR, tile_size="250m", features=str(bundle), **src)
    assert (first.done, again.done, again.skipped) == (4, 0, 4)
    sep = api.map_tiles(
        tmp_path / "m1",
        FOUR,
        tile_size="250m",
        bundle=bundle,
        features_dir=tmp_path / "f",
        device="cpu",
        accept=("cloud_mask", "level"),
    )  # what the chained run accepts itself
    chained = api.map_tiles(tmp_path / "m2", FOUR, tile_size="250m", bundle=bundle, device="cpu", **src)
    assert (sep.done, chained.done, chained.features_done) == (4, 4, 4) and chained.ok, (sep.failures, chained.failures)
    assert _tifs(tmp_path / "m2" / "features") == _tifs(tmp_path / "f")
    for name in (p.name for p in (tmp_path / "m1").glob("*_class.tif")):
        with rasterio.open(tmp_path / "m1" / name) as a, rasterio.open(tmp_path / "m2" / name) as b:
            assert np.array_equal(a.read(), b.read())
    rerun = api.map_tiles(tmp_path / "m2", FOUR, tile_size="250m", bundle=bundle, device="cpu", **src)
    assert (rerun.done, rerun.skipped, rerun.features_done) == (0, 4, 0)
    one = api.compute_features("eolearn_slovenia", 2017, tmp_path / "s", features="ndvi_p50")
    mtime = one.stat().st_mtime_ns
    assert api.compute_features("eolearn_slovenia", 2017, tmp_path / "s", features="ndvi_p50") == one
    assert one.stat().st_mtime_ns == mtime and content_sha256(one)


def test_one_bundle_load_per_map_run(slovenia_features: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import model.bundle as mb
    import tiles.mapping.runner as runner
    from pipeline.stages.mapping import MapRequest, map_tiles
    from pipeline.stages.pretrained import models_dir

    bundle = tmp_path / "b"
    shutil.copytree(models_dir() / "elc10-ndvi-l1", bundle)
    loads: list[Path] = []
    real = mb.load_bundle
    monkeypatch.setattr(mb, "load_bundle", lambda p: loads.append(Path(p)) or real(p))
    monkeypatch.setattr(runner, "_PREDICTORS", {})
    feats = [tmp_path / f"{n}.tif" for n in "ab"]
    for f in feats:
        shutil.copy(slovenia_features, f)
    s = map_tiles(MapRequest(tmp_path / "maps", tuple(feats), str(bundle), scheduler="sync", device="cpu"))
    assert s.done == 2 and loads == [bundle]
