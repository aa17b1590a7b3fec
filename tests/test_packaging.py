"""The installed package (issue #17): a wheel and an sdist built from this tree carry everything the
CLI reads, and ``eulc demo`` runs from the installed wheel in an empty folder with no shared data.

The wheel is installed with ``--no-deps`` into a folder put first on ``PYTHONPATH`` (the
dependencies come from this environment); the child asserts it imported eulc from there, not
from the editable checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import rasterio

REPO = Path(__file__).resolve().parents[1]
NEEDED = [
    "pipeline/specs/elc10.yaml",
    "pipeline/specs/bridge-lc-196.yaml",
    "pipeline/legends/eolearn_lulc.csv",
    "pipeline/legends/clcplus_backbone.csv",
    "tiles/stacks/eolearn_slovenia_demo.yaml",
    "pipeline/bundles/elc10-ndvi-l1/weights.safetensors",
    "pipeline/bundles/elc10-l1/bundle.json",
    "pipeline/bundles/elc10-l2/MODEL_CARD.md",
    "pipeline/demo_data/eolearn_slovenia/ndvi_68dates.tif",
    "pipeline/demo_data/eolearn_slovenia/lulc_reference.tif",
    "pipeline/demo_data/SOURCES.md",
    "pipeline/reference/biogeoregions_10km.tif",
    "pipeline/reference/SOURCES.md",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, sdist) built from a copy of the tree (the build writes build/ and egg-info)."""
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "src"
    shutil.copytree(
        REPO,
        src,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            ".hypothesis",
            "tests",
            "benchmarks",
        ),
    )
    out = tmp / "dist"
    for kind in ("wheel", "sdist"):  # one process each: setuptools keeps state between the two
        code = f"import sys; from setuptools import build_meta as b; print(b.build_{kind}(sys.argv[1]))"
        subprocess.run([sys.executable, "-c", code, str(out)], cwd=src, check=True, capture_output=True, text=True)
    return next(out.glob("*.whl")), next(out.glob("*.tar.gz"))


def test_wheel_and_sdist_carry_what_the_cli_reads(built: tuple[Path, Path]) -> None:
    wheel, sdist = built
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in NEEDED if n not in names]
    top = {n.split("/")[0] for n in names if not n.startswith("eulc-")}
    assert top == {"pipeline", "model", "tiles", "gee_scripts", "openeo_scripts"}  # no stray top-level "models"
    with tarfile.open(sdist) as t:
        snames = {m.name.split("/", 1)[1] for m in t.getmembers() if "/" in m.name}
    assert not [n for n in NEEDED if n not in snames]


def test_demo_data_is_the_shared_data(data: Path) -> None:
    """The shipped demo inputs are byte-identical to the project's real data (SOURCES.md §5)."""
    shipped = sorted((REPO / "pipeline/demo_data/eolearn_slovenia").iterdir())
    assert len(shipped) == 9
    for p in shipped:
        assert p.read_bytes() == (data / "eolearn_testeopatch_slovenia" / p.name).read_bytes(), p.name


CHILD = r"""
import os, sys
sys.argv = ["eulc", *sys.argv[1:]]
import pipeline
assert pipeline.__file__.startswith(os.environ["EULC_WHEEL_DIR"]), pipeline.__file__
from pipeline.app.cli import main
main()
"""


@pytest.fixture(scope="module")
def site(built: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed (``--no-deps``) into a folder of its own, once for the module."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(built[0])],
        check=True,
    )
    return target


def test_demo_runs_from_the_installed_wheel_without_shared_data(site: Path, tmp_path: Path) -> None:
    target = site
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("EULC_DATA", "EULC_MODELS")}
    env.update(PYTHONPATH=str(target), EULC_WHEEL_DIR=str(target), EULC_DATA=str(tmp_path / "no-data-here"))
    info = subprocess.run([sys.executable, "-c", CHILD, "info"], cwd=work, env=env, capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert str(target / "pipeline" / "bundles") in info.stdout and "missing" in info.stdout
    p = subprocess.run(
        [sys.executable, "-c", CHILD, "demo", "--out", "demo"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    demo = work / "demo"
    with rasterio.open(demo / "maps" / "eolearn_slovenia_class.tif") as c:
        cls = c.read(1)
        assert c.crs.to_epsg() == 3035 and (cls != 255).sum() > 9000
    assert json.loads((demo / "agreement.json").read_text())["overall_accuracy"] > 0.85
    assert (demo / "report" / "report.html").is_file() and (demo / "maps" / "eolearn_slovenia_confidence.tif").is_file()
    assert sorted(p.name for p in work.iterdir()) == ["demo"]  # nothing written outside --out


def test_every_stage_runs_from_the_installed_wheel(site: Path, tmp_path: Path, data: Path) -> None:
    """A pip user without the shared data (issue #27): ``eulc table`` on their own LUCAS-style CSV
    (here 2,000 real rows of the ELC10 export), ``eulc train`` on a short schedule, ``eulc map`` and
    ``eulc report`` all run from the wheel in an empty folder, and the report's bioregion and EEA
    cell columns are filled from the table shipped in the package."""
    import pandas as pd

    from .conftest import ELC10

    target = site
    mine = tmp_path / "mine"
    mine.mkdir()
    pd.read_csv(data / ELC10).sample(2000, random_state=0).to_csv(mine / "my_lucas.csv", index=False)
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("EULC_DATA", "EULC_MODELS")}
    env.update(PYTHONPATH=str(target), EULC_WHEEL_DIR=str(target), EULC_DATA=str(tmp_path / "no-data-here"))
    ref = target / "pipeline" / "demo_data" / "eolearn_slovenia" / "lulc_reference.tif"

    def eulc(*args: str) -> None:
        p = subprocess.run(
            [sys.executable, "-c", CHILD, *args], cwd=work, env=env, capture_output=True, text=True, timeout=600
        )
        assert p.returncode == 0, f"eulc {' '.join(args)}: {p.stderr[-2000:]}"

    eulc("table", str(mine / "my_lucas.csv"), "--spec", "elc10", "--out", "t.parquet")
    table = pd.read_parquet(work / "t.parquet")
    assert table["bioregion"].notna().mean() > 0.97 and table["bioregion"].nunique() >= 6
    eulc(
        "train",
        "t.parquet",
        "--out",
        "mymodel",
        "--features",
        "elc10-ndvi-l1",
        "--preset",
        "eulc-plain",
        "--epochs",
        "2",
        "--lr",
        "1e-3",
    )
    eulc("features", "--files", "eolearn_slovenia_demo", "--year", "2017", "--features", "mymodel", "--out", "feats")
    (feat,) = (work / "feats").glob("*.tif")
    eulc("map", str(feat.relative_to(work)), "--bundle", "mymodel", "--out", "maps", "--scheduler", "sync")
    (cls,) = (work / "maps").glob("*_class.tif")
    eulc(
        "report",
        "--map",
        str(cls.relative_to(work)),
        "--crosswalk",
        "eolearn_lulc",
        "--reference",
        str(ref),
        "--out",
        "report",
    )
    blocks = pd.read_csv(work / "report" / "blocks.csv", keep_default_na=False)
    assert set(blocks["bioregion"]) <= {"Alpine", "Continental"} and set(blocks["bioregion"]) != {""}
    assert set(blocks["tile"]) == {"10kmE467N253"}  # the patch near Ljubljana
    assert "unknown" not in (work / "report" / "report.html").read_text()
