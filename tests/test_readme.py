"""Every command block of the README runs as written (issue #17).

The README's ``bash`` blocks are read from README.md itself, in order:

- a block preceded by ``<!-- readme-test: not run (REASON) -->`` is not executed (it needs the
  internet, a cluster, a Google account, or hours); each of its ``eulc`` commands is parsed by the
  CLI itself (every option exists, every value converts, required options are there), and every
  other program it names must be installed;
- every other block is executed, command by command, exactly as written, in the root of a copy of
  this checkout's tree beside its own ``../shared/data`` and with no ``EULC_DATA`` set (a fresh
  clone beside ``../shared``, issue #27): each command reads what the ones before it wrote, as a
  reader following the README would, and an output that collides with the project's own folders
  (``--out model``) fails. ``pip install`` and the
  test suite itself are not rerun (``.ci/run`` installs exactly that way); the extras they name
  must exist.

The outputs are then checked against what the README says they are.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import rasterio
import typer
from rio_cogeo.cogeo import cog_validate

from pipeline.app.cli import app
from pipeline.core.spec import load_spec

from .conftest import SURVEY

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARK = re.compile(r"<!--\s*readme-test:\s*not run\s*\((?P<reason>[^)]+)\)\s*-->")


@dataclass
class Block:
    """One ``bash`` or ``python`` block: its first line number, its commands (a python block is
    one ``python -c CODE``), and why it is not run (if so)."""

    line: int
    commands: list[list[str]]
    not_run: str | None

    @property
    def name(self) -> str:
        first = self.commands[0]
        return f"README.md:{self.line} {' '.join(first[:3] if first[0] != 'python' else first[:2])}"


def _blocks() -> list[Block]:
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() in ("```bash", "```python"):
            lang, start, body = lines[i].strip()[3:], i + 1, []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i] if lang == "python" else lines[i].strip())
                i += 1
            mark = MARK.search(lines[start - 2]) if start >= 2 else None
            if lang == "python":
                blocks.append(Block(start, [["python", "-c", "\n".join(body)]], mark.group("reason") if mark else None))
                i += 1
                continue
            text = "\n".join(body).replace("\\\n", " ")
            commands = []
            for line in text.splitlines():
                for part in line.split("&&"):
                    argv = shlex.split(part, comments=True)
                    if argv:
                        commands.append(argv)
            blocks.append(Block(start, commands, mark.group("reason") if mark else None))
        i += 1
    return blocks


BLOCKS = _blocks()


def _extras() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def _check_not_executed(argv: list[str]) -> bool:
    """Commands the test does not execute anywhere: checked here; True when handled."""
    while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):  # VAR=value before a command
        argv = argv[1:]
    if argv[:1] == ["python"] and len(argv) > 1 and argv[1].startswith("scripts/"):
        assert (ROOT / argv[1]).is_file(), argv[1]
        return True
    if argv[:2] == ["pip", "install"]:
        extras = re.findall(r"\[([\w,]+)\]", argv[-1])
        assert extras and set(extras[0].split(",")) <= _extras(), argv
        return True
    if argv[:3] == ["python", "-m", "pytest"]:
        if "-m" in argv[3:]:
            marker = argv[argv.index("-m", 3) + 1]
            assert marker in (ROOT / "pyproject.toml").read_text(), marker
        if "-n" in argv[3:]:  # pytest-xdist, from the dev extra
            import xdist  # noqa: F401
        return True
    if argv[0] in ("ruff", "mypy", "lint-imports", "earthengine", "cosmic-ray", "cr-report"):
        assert shutil.which(argv[0]), f"{argv[0]} is not installed by the README's install command"
        return True
    return False


def _parse(argv: list[str]) -> None:
    """Parse an ``eulc`` command line with the CLI itself, without running it."""
    assert argv[0] == "eulc", argv
    cmd, args, path = typer.main.get_command(app), argv[1:], ["eulc"]
    while hasattr(cmd, "commands"):  # eulc, eulc gee: down to the command named
        assert args and args[0] in cmd.commands, f"{' '.join(path)}: no command {args[:1]}"
        path.append(args[0])
        cmd, args = cmd.commands[args[0]], args[1:]
    cmd.make_context(" ".join(path), list(args))  # raises on an unknown option, a bad value, a missing one


def test_the_readme_blocks_are_found() -> None:
    assert len(BLOCKS) >= 10
    assert sum(b.not_run is None for b in BLOCKS) >= 6  # most blocks run
    for b in BLOCKS:
        assert b.commands, b.name
        if b.not_run:  # a block that is not run says so to the reader too
            assert "not run in the tests" in README.read_text().splitlines()[b.line] or all(
                c[0] != "eulc" for c in b.commands
            ), b.name


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.not_run], ids=lambda b: b.name)
def test_blocks_not_run_parse(block: Block) -> None:
    for argv in block.commands:
        if argv[:2] == ["python", "-c"]:
            compile(argv[2], block.name, "exec")  # a Python block not run: valid Python
        elif not _check_not_executed(argv):
            _parse(argv)


def test_parse_catches_a_wrong_option() -> None:
    """The parse check can fail: an option that does not exist, a value that does not convert."""
    with pytest.raises(Exception, match="--select"):
        _parse(["eulc", "features", "--files", "x", "--year", "2017", "--select", "m", "--out", "f"])
    with pytest.raises(Exception, match="integer"):
        _parse(["eulc", "train", "t.parquet", "--out", "m", "--epochs", "many"])


def clone_root(data: Path, parent: Path) -> Path:
    """A copy of this checkout's tree (tracked and untracked-but-not-ignored files, links kept) at
    ``parent/eulc``, with ``parent/shared/data`` standing for the real data: a fresh clone beside
    ``../shared``, as the README's reader has. Commands run there see the project's own folders
    (``model/``, ``pipeline/``, ...), so an output name that collides with one fails.
    """
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    root = parent / "eulc"
    for rel in filter(None, files):
        src, dst = ROOT / rel, root / rel
        if not src.is_symlink() and not src.is_file():  # deleted in the work tree, not yet committed
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)
    (parent / "shared").mkdir()
    (parent / "shared" / "data").symlink_to(data)
    return root


def clone_env() -> dict[str, str]:
    """The environment of a reader who set nothing: no ``EULC_DATA`` (the clone finds
    ``../shared/data`` itself), the copy's own ``pipeline`` first on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("EULC_DATA", "PYTHONPATH")}
    return {**env, "EULC_PROGRESS_S": "30"}


def in_clone(root: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``eulc ARGS`` as the README's reader runs it in the clone's root (:func:`clone_env`)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.app.cli", *args],
        cwd=root,
        env=clone_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def ran(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Execute the blocks that run, in README order, in the root of a copy of the checkout beside
    its own ``../shared/data`` (:func:`clone_root`), with no ``EULC_DATA`` set, exactly as written;
    fail at the first command that does not exit 0 or prints a traceback.
    """
    root = clone_root(data, tmp_path_factory.mktemp("readme"))
    env = clone_env()
    logs: list[str] = []
    for block in BLOCKS:
        if block.not_run:
            continue
        for argv in block.commands:
            if argv[:2] == ["python", "-c"]:  # a Python block: run as a script in the same folder
                cmd = [sys.executable, "-c", argv[2]]
            elif _check_not_executed(argv):
                continue
            else:
                assert argv[0] == "eulc", f"{block.name}: {argv[0]} is neither eulc nor a known tool"
                cmd = [sys.executable, "-m", "pipeline.app.cli", *argv[1:]]  # the copy's eulc (cwd first)
            t0 = time.perf_counter()
            p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
            print(f"{time.perf_counter() - t0:6.1f} s  {shlex.join(argv)[:110]}")  # pytest -s: the README's times
            logs.append(f"{shlex.join(argv)}\n{p.stderr}")
            assert p.returncode == 0, f"{block.name}: `{shlex.join(argv)}` exit {p.returncode}:\n{p.stderr[-3000:]}"
            assert "Traceback" not in p.stderr, p.stderr[-3000:]
    (root / "out" / "readme-stderr.json").write_text(json.dumps(logs))
    return root


def _stderr(ran: Path, command_start: str) -> str:
    (err,) = [e for e in json.loads((ran / "out" / "readme-stderr.json").read_text()) if e.startswith(command_start)]
    return " ".join(err.split())


def test_an_output_colliding_with_the_project_fails_here(ran: Path) -> None:
    """The README runs in a clone's root: ``--out model`` there meets the project's own ``model/``
    package, is refused (exit 2) and leaves it untouched, so a README block writing there fails."""
    before = sorted(p.name for p in (ran / "model").iterdir())
    p = in_clone(
        ran,
        "train",
        "out/t.parquet",
        "--out",
        "model",
        "--features",
        "elc10-ndvi-l1",
        "--preset",
        "eulc-plain",
        "--epochs",
        "1",
    )
    assert p.returncode == 2, p.stderr[-2000:]
    assert "model" in p.stderr and sorted(q.name for q in (ran / "model").iterdir()) == before


def test_the_python_api_example(ran: Path) -> None:
    m = json.loads((ran / "out" / "api" / "report" / "metrics.json").read_text())
    assert f"{m['overall_agreement']:.3f}" in README.read_text()  # the figure the README prints
    assert (ran / "out" / "api" / "maps" / "eolearn_slovenia_demo_2017_class.tif").is_file()


def test_the_main_job(ran: Path, data: Path) -> None:
    """`eulc demo --out out/demo`: the shipped bundle, nothing trained, the agreement and the
    report; a rerun after damage redoes the damaged map (resume checks content, issue #14)."""
    out = ran / "out" / "demo"
    demo_log = _stderr(ran, "eulc demo --out out/demo")
    assert "pretrained bundle elc10-ndvi-l1" in demo_log
    assert not (out / "model").exists() and not (out / "table.parquet").exists()  # nothing trained
    agree = json.loads((out / "agreement.json").read_text())
    assert f"**{agree['overall_accuracy']:.3f}**" in README.read_text()  # the figure the README states
    rep = json.loads((out / "report" / "metrics.json").read_text())  # the demo ends with the report
    assert rep["overall_agreement"] == pytest.approx(agree["overall_accuracy"])
    assert "elc10-ndvi-l1" in (out / "report" / "report.html").read_text()  # its model card
    # the shipped bundle carries an OOD reference: the demo maps the layer and reports it
    ood = out / "maps" / "eolearn_slovenia_ood.tif"
    assert cog_validate(str(ood))[0] and rep["ood"]["file"] == ood.name
    assert rep["ood"]["share"] < 0.05  # a Slovenian forest patch is well inside the LUCAS training data
    cls = next((out / "maps").glob("*_class.tif"))
    good = cls.read_bytes()
    cls.write_bytes(good[: len(good) // 3])
    p = in_clone(ran, "demo", "--out", "out/demo", timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert cls.read_bytes() == good


def test_the_stage_commands(ran: Path) -> None:
    sel = json.loads((ran / "out" / "selection.json").read_text())
    assert len(sel["names"]) == 19  # "19 of 35"
    bundle = json.loads((ran / "out" / "model" / "bundle.json").read_text())
    assert bundle["features"] == [
        f"ndvi_{s}" for s in ("p5", "p25", "p50", "p75", "p95", "summer", "winter", "spring", "fall", "texture_sd")
    ]
    with rasterio.open(ran / "out" / "features" / "eolearn_slovenia_2017.tif") as src:
        assert list(src.descriptions) == bundle["features"]
    with rasterio.open(ran / "out" / "maps" / "eolearn_slovenia_2017_class.tif") as src:
        assert src.crs.to_epsg() == 3035 and src.res == (10.0, 10.0) and src.colormap(1)
    with rasterio.open(ran / "out" / "maps" / "eolearn_slovenia_2017_ood.tif") as src:  # --ood
        assert src.nodata == 255 and src.colormap(1)[3][:3] == (120, 0, 0)
    a = json.loads((ran / "out" / "agreement.json").read_text())
    assert a["n_pixels"] > 9000 and a["overall_accuracy"] > 0.7
    m = json.loads((ran / "out" / "eval" / "metrics.json").read_text())
    # the bundle's own training table: only its untouched rows are scored, the rest apart (issue #26)
    assert m["n"] > 5_000 and 0.5 < m["weighted_f1"] <= 1 and "untouched" in m["rows_scored"]
    assert m["n"] + m["by_split"]["training"]["n_rows"] + m["by_split"]["hold_out"]["n_rows"] > 50_000
    runs = pd.read_csv(ran / "out" / "eval-quick" / "loro_runs.csv")
    assert set(runs["model"]) == {"eulc-plain", "rf"} and set(runs["split"]) == {"loro-Pannonian", "loro-Steppic"}
    # the progress knows the number of runs (2 regions x 2 models x 1 seed): a plain line when not a terminal
    assert "loro: 4/4 (100 %)" in _stderr(ran, "eulc evaluate --table out/t.parquet --scenario loro")


def test_the_feature_drift_and_tile_commands(ran: Path) -> None:
    assert (ran / "out" / "feats" / "eolearn_slovenia_2017.tif").is_file()
    drift = pd.read_csv(ran / "out" / "drift.csv")
    assert len(drift) == 10 and {"psi", "ks"} <= set(drift.columns)
    assert (ran / "out" / "landscapes.png").read_bytes()[:4] == b"\x89PNG"
    classes = sorted((ran / "out" / "maps-tiles").glob("1kmE*_class.tif"))
    assert len(classes) >= 2  # the bbox spans more than one 1 km cell
    assert all(c.with_name(c.name.replace("_class", "_proba")).is_file() for c in classes)


def test_the_report(ran: Path) -> None:
    m = json.loads((ran / "out" / "report" / "metrics.json").read_text())
    assert 0.7 < m["overall_agreement"] <= 1
    assert "transitions_ha" in json.dumps(m) or (ran / "out" / "report" / "transitions_ha.csv").is_file()
    html = (ran / "out" / "report" / "report.html").read_text()
    assert "Continental" in html or "Alpine" in html  # the bioregion zones
    assert m["ood"]["file"] == "eolearn_slovenia_2017_ood.tif"  # the layer beside --map
    assert "Where the model is out of its depth" in html
    # --drift: the drift CSV summarised per file beside the OOD share, counted again here from the CSV
    drift = pd.read_csv(ran / "out" / "drift.csv")
    (row,) = m["drift"]["tiles"]
    assert row["tile"] == "eolearn_slovenia_2017" and row["features"] == len(drift) == 10
    assert row["beyond one training landscape"] == int(drift["beyond_expected"].sum())
    assert row["shifted (PSI)"] == int((drift["flag"] == "shift").sum())
    assert "Drift and the OOD layer" in html


def test_the_gee_plans(ran: Path, data: Path) -> None:
    """The offline Earth Engine plans of the README, on the real LUCAS 2018 points."""
    out = ran / "out" / "gee_table"
    raw = pd.read_csv(data / SURVEY)
    cells = (raw["POINT_ID"] // 10_000 // 100).astype(str) + "_" + (raw["POINT_ID"] % 10_000 // 100).astype(str)
    expected_tasks = sum(math.ceil(n / 2000) for n in cells.value_counts())
    with (out / "tasks.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == expected_tasks == len(list((out / "graphs").glob("*.json")))
    assert sum(json.loads(r["detail"])["n_points"] for r in rows) == len(raw)
    bands = json.loads((out / "bands.json").read_text())
    assert bands["bands"] == load_spec("bridge-lc-196").names and bands["dtype"] == "int16"
    g = json.loads((out / "graphs" / f"{rows[0]['key']}.json").read_text())
    assert g["task_type"] == "Type.EXPORT_TABLE" and g["config"]["fileExportOptions"]["fileFormat"] == "CSV"
    assert "Image.sampleRegions" in json.dumps(g["expression"])
    tiles = json.loads((ran / "out" / "gee_tiles" / "bands.json").read_text())
    sel = json.loads((ran / "out" / "selection.json").read_text())  # from `eulc select`: its spec came along
    assert tiles["bands"] == sel["names"] and tiles["features_digest"] == sel["features_digest"]
    # a --spec that disagrees with the selection is refused, before anything is written
    p = in_clone(
        ran,
        "gee",
        "export-tiles",
        "--tiles",
        "10kmE467N253",
        "--features",
        "out/selection.json",
        "--year",
        "2022",
        "--spec",
        "bridge-lc-196",
        "--out",
        "out/plan2",
    )
    assert p.returncode == 2 and "error:" in p.stderr and not (ran / "out" / "plan2").exists()
    graphs = (ran / "out" / "gee_tiles" / "graphs").iterdir()
    assert sorted(p.name for p in graphs if p.name != ".eulc-written") == ["10kmE467N253.json", "10kmE468N253.json"]


def test_the_openeo_plan(ran: Path) -> None:
    """The README's offline openEO plan is the one tests/test_openeo.py pins and executes."""
    out = ran / "out" / "openeo_tiles"
    graph = json.loads((out / "graphs" / "10kmE467N253.json").read_text())["process_graph"]
    golden = json.loads((Path(__file__).parent / "golden" / "openeo_elc10_ndvi_tile.json").read_text())
    assert graph == golden
    bands = json.loads((out / "bands.json").read_text())
    assert bands["engine"] == "openeo" and len(bands["bands"]) == 10 and "SCL 1,8,9,10" in bands["cloud_mask"]


def test_ci_runs_the_readmes_test_command() -> None:
    """`.ci/run` runs the test command of the README's quick start, as written there."""
    quick = next(b for b in BLOCKS if any(c[:3] == ["python", "-m", "pytest"] for c in b.commands))
    (cmd,) = [c for c in quick.commands if c[:3] == ["python", "-m", "pytest"]]
    assert shlex.join(cmd) in (ROOT / ".ci" / "run").read_text()
