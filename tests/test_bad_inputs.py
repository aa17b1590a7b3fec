"""Bad input, across every command (issue #14): each case must end with exit status 2 and one
line on stderr that names the culprit, no traceback, nothing written outside ``--out``, no
partial output, and no foreign file touched.

The cases run in-process through ``pipeline.app.cli.main`` (the console-script entry point), each
in its own folder holding a foreign file (``.env``) that must survive byte for byte. Inputs come
from the shared data (a real FeatureTable, the shipped bundles, the real Slovenia feature COG)
or are broken copies of them made here.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from pipeline.app.cli import main

from .conftest import NDVI_FEATURES, SAMPLE, SURVEY

BUNDLE = Path(__file__).resolve().parents[1] / "models" / "elc10-ndvi-l1"
FOREIGN = b"SECRET=keep-me\n"


@dataclass
class Case:
    """One bad invocation: ``args`` (``{x}`` placeholders filled from the fixtures), the strings the
    one error line must contain, and files to prepare in the case folder first."""

    id: str
    args: list[str]
    needles: list[str]
    prepare: Callable[[Path, dict[str, Path]], None] | None = None
    out: str | None = "out"
    env: dict[str, str] = field(default_factory=dict)


def _bundle_with(edit: Callable[[dict], None], name: str = "bundle.json") -> Callable[[Path, dict[str, Path]], None]:
    """A copy of the shipped bundle as ``b/`` with ``edit`` applied to its JSON file ``name``."""

    def prep(tmp: Path, fx: dict[str, Path]) -> None:
        shutil.copytree(BUNDLE, tmp / "b")
        meta = json.loads((tmp / "b" / name).read_text())
        edit(meta)
        (tmp / "b" / name).write_text(json.dumps(meta))

    return prep


def _write(name: str, content: bytes | str) -> Callable[[Path, dict[str, Path]], None]:
    def prep(tmp: Path, fx: dict[str, Path]) -> None:
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())

    return prep


def _csv_from_sample(transform: Callable[[str], str], name: str = "bad.csv") -> Callable[[Path, dict[str, Path]], None]:
    def prep(tmp: Path, fx: dict[str, Path]) -> None:
        (tmp / name).write_text(transform(fx["sample_csv"].read_text()))

    return prep


def _feature_copy(tmp: Path, fx: dict[str, Path]) -> None:
    (tmp / "feats").mkdir()
    shutil.copy(fx["features"], tmp / "feats" / "slo_2017.tif")


def _both(*fs: Callable[[Path, dict[str, Path]], None]) -> Callable[[Path, dict[str, Path]], None]:
    def prep(tmp: Path, fx: dict[str, Path]) -> None:
        for f in fs:
            f(tmp, fx)

    return prep


def _foreign_out(tmp: Path, fx: dict[str, Path]) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / ".env").write_bytes(FOREIGN)
    (tmp / "out" / "notes.txt").write_bytes(FOREIGN)


def _selection(names: list[str], spec: str = "elc10") -> Callable[[Path, dict[str, Path]], None]:
    def prep(tmp: Path, fx: dict[str, Path]) -> None:
        from pipeline.core.spec import load_spec

        sp = load_spec(spec)
        (tmp / "sel.json").write_text(
            json.dumps({"spec": spec, "spec_hash": sp.digest(), "names": names, "method": "names"})
        )

    return prep


COMMANDS = {  # a minimal valid-looking call of each command, to graft usage errors on
    "table": ["table", "{sample_csv}", "--out", "out/t.parquet"],
    "train": ["train", "{table}", "--out", "out/m"],
    "evaluate": ["evaluate", "--table", "{table}", "--out", "out", "--bundle", str(BUNDLE)],
    "select": ["select", "--table", "{table}", "--out", "out/sel.json"],
    "features": ["features", "--files", "eolearn_slovenia", "--year", "2017", "--out", "out"],
    "sample": ["sample", "--points", "{survey}", "--features-dir", "{features_dir}", "--out", "out/x.csv"],
    "drift": ["drift", "--table", "{table}", "--features-dir", "{features_dir}"],
    "map": ["map", "{features}", "--bundle", str(BUNDLE), "--out", "out"],
    "agreement": ["agreement", "{features}", "--reference", "{features}", "--crosswalk", "eolearn_lulc"],
    "report": ["report", "--map", "{features}", "--reference", "{features}", "--out", "out"],
    "demo": ["demo", "--out", "out"],
    "gee export-table": ["gee", "export-table", "--points", "{survey}", "--year", "2022", "--out", "out"],
    "gee export-tiles": ["gee", "export-tiles", "--tiles", "10kmE467N253", "--year", "2022", "--out", "out"],
    "gee status": ["gee", "status", "--out", "out"],
}

XW = ["--crosswalk", "eolearn_lulc"]
CASES: list[Case] = []
# usage errors on every command: an unknown option, a bad value, a missing required option
for name, argv in COMMANDS.items():
    CASES.append(Case(f"{name}: unknown option", [*argv, "--no-such-option"], ["--no-such-option"]))
for name, argv, drop, needle in [
    ("table", COMMANDS["table"], "--out", "--out"),
    ("train", COMMANDS["train"], "--out", "--out"),
    ("evaluate", COMMANDS["evaluate"], "--table", "--table"),
    ("select", COMMANDS["select"], "--out", "--out"),
    ("features", COMMANDS["features"], "--year", "--year"),
    ("sample", COMMANDS["sample"], "--points", "--points"),
    ("drift", COMMANDS["drift"], "--table", "--table"),
    ("report", COMMANDS["report"], "--reference", "--reference"),
    ("agreement", COMMANDS["agreement"], "--reference", "--reference"),
    ("demo", COMMANDS["demo"], "--out", "--out"),
    ("gee export-table", COMMANDS["gee export-table"], "--points", "--points"),
    ("gee export-tiles", COMMANDS["gee export-tiles"], "--tiles", "--tiles"),
    ("gee status", COMMANDS["gee status"], "--out", "--out"),
]:
    i = argv.index(drop)
    CASES.append(Case(f"{name}: missing {drop}", argv[:i] + argv[i + 2 :], [needle]))
for name, opt in [
    ("features", "--year"),
    ("gee export-table", "--year"),
    ("gee export-tiles", "--year"),
    ("train", "--epochs"),
    ("train", "--lr"),
    ("select", "--k"),
    ("evaluate", "--seeds"),
    ("map", "--workers"),
]:
    base = [a for a in COMMANDS[name]]
    if opt in base:
        j = base.index(opt)
        base = base[:j] + base[j + 2 :]
    CASES.append(Case(f"{name}: {opt} not a number", [*base, opt, "abc"], [opt]))
CASES += [
    Case("unknown command", ["frobnicate"], ["frobnicate"], out=None),
    Case("no command option", ["--bogus"], ["--bogus"], out=None),
]

# eulc table
CASES += [
    Case("table: missing file", ["table", "nope.csv", "--out", "out/t.parquet"], ["nope.csv", "not found"]),
    Case(
        "table: empty file", ["table", "empty.csv", "--out", "out/t.parquet"], ["empty.csv"], _write("empty.csv", b"")
    ),
    Case(
        "table: cut mid-row",
        ["table", "bad.csv", "--out", "out/t.parquet"],
        ["bad.csv", "middle of a row"],
        _csv_from_sample(lambda s: s[: len(s) // 2]),
    ),
    Case(
        "table: missing column",
        ["table", "bad.csv", "--out", "out/t.parquet"],
        ["bad.csv", "ndvi_p50"],
        _csv_from_sample(lambda s: s.replace("ndvi_p50", "ndvi_p5O", 1)),
    ),
    Case(
        "table: no POINT_ID",
        ["table", "bad.csv", "--out", "out/t.parquet"],
        ["bad.csv", "POINT_ID"],
        _csv_from_sample(lambda s: s.replace("POINT_ID", "PID", 1)),
    ),
    Case(
        "table: header only",
        ["table", "bad.csv", "--out", "out/t.parquet"],
        ["bad.csv"],
        _csv_from_sample(lambda s: s.splitlines()[0] + "\n"),
    ),
    Case(
        "table: binary garbage",
        ["table", "bad.csv", "--out", "out/t.parquet"],
        ["bad.csv"],
        _write("bad.csv", bytes(range(256)) * 40 + b"\n"),
    ),
    Case("table: a folder", ["table", "adir", "--out", "out/t.parquet"], ["adir"], _write("adir/x", "x")),
    Case("table: unknown spec", ["table", "{sample_csv}", "--spec", "elc11", "--out", "out/t.parquet"], ["elc11"]),
    Case(
        "table: spec path missing",
        ["table", "{sample_csv}", "--spec", "s.yaml", "--out", "out/t.parquet"],
        ["s.yaml", "not found"],
    ),
    Case(
        "table: spec not YAML",
        ["table", "{sample_csv}", "--spec", "s.yaml", "--out", "out/t.parquet"],
        ["s.yaml", "YAML"],
        _write("s.yaml", "name: [unclosed\n"),
    ),
    Case(
        "table: spec unknown key",
        ["table", "{sample_csv}", "--spec", "s.yaml", "--out", "out/t.parquet"],
        ["s.yaml", "colour"],
        _write("s.yaml", "name: x\nyear: 2018\ncolour: red\nsensors: {}\nfeatures: []\n"),
    ),
    Case("table: --out is a folder", ["table", "{sample_csv}", "--out", "out"], ["out"], _foreign_out),
    Case(
        "table: --out is a foreign file",
        ["table", "{sample_csv}", "--out", "out/notes.txt"],
        ["notes.txt", "not a FeatureTable"],
        _foreign_out,
    ),
    Case("table: --lucas missing", ["table", "{sample_csv}", "--lucas", "l.csv", "--out", "out/t.parquet"], ["l.csv"]),
    Case(
        "table: --lucas without LC1",
        ["table", "{sample_csv}", "--lucas", "l.csv", "--out", "out/t.parquet"],
        ["l.csv", "LC1"],
        _write("l.csv", "POINT_ID,X\n1,2\n"),
    ),
]

# eulc train
CASES += [
    Case("train: table missing", ["train", "t.parquet", "--out", "out/m"], ["t.parquet"]),
    Case("train: not parquet", ["train", "t.parquet", "--out", "out/m"], ["t.parquet"], _write("t.parquet", "x,y\n")),
    Case("train: unknown feature", ["train", "{table}", "--out", "out/m", "--features", "ndvi_p51"], ["ndvi_p51"]),
    Case("train: selection missing", ["train", "{table}", "--out", "out/m", "--features", "sel.json"], ["sel.json"]),
    Case(
        "train: selection not JSON",
        ["train", "{table}", "--out", "out/m", "--features", "sel.json"],
        ["sel.json"],
        _write("sel.json", "{not json"),
    ),
    Case(
        "train: selection of another spec",
        ["train", "{table}", "--out", "out/m", "--features", "sel.json"],
        ["sel.json"],
        _selection(["s2_b02_p5"], "bridge-lc-196"),
    ),
    Case(
        "train: derived without inputs",
        ["train", "{table}", "--out", "out/m", "--features", "asc_dpol_median"],
        ["asc_dpol_median"],
    ),
    Case("train: epochs 0", ["train", "{table}", "--out", "out/m", "--epochs", "0"], ["epochs"]),
    Case("train: epochs -3", ["train", "{table}", "--out", "out/m", "--epochs", "-3"], ["epochs"]),
    Case("train: lr 0", ["train", "{table}", "--out", "out/m", "--lr", "0"], ["lr"]),
    Case("train: lr -1", ["train", "{table}", "--out", "out/m", "--lr", "-1"], ["lr"]),
    Case("train: batch size 1", ["train", "{table}", "--out", "out/m", "--batch-size", "1"], ["batch_size"]),
    Case("train: level 3", ["train", "{table}", "--out", "out/m", "--level", "level3"], ["level3"]),
    Case("train: unknown preset", ["train", "{table}", "--out", "out/m", "--preset", "gpt"], ["gpt"]),
    Case(
        "train: --out holds a python package",
        ["train", "{table}", "--out", "out", "--epochs", "1"],
        ["out", "did not write"],
        _foreign_out,
    ),
    Case(
        "train: --out is a file",
        ["train", "{table}", "--out", "out/notes.txt", "--epochs", "1"],
        ["notes.txt", "not a folder"],
        _foreign_out,
    ),
    Case(
        "train: --out holds a bundle",
        ["train", "{table}", "--out", "b", "--epochs", "1"],
        ["b", "--overwrite"],
        lambda tmp, fx: shutil.copytree(BUNDLE, tmp / "b"),
        out="b",
    ),
    Case(
        "train: table without metadata",
        ["train", "t.parquet", "--out", "out/m"],
        ["t.parquet", "FeatureTable"],
        lambda tmp, fx: __import__("pandas").DataFrame({"a": [1]}).to_parquet(tmp / "t.parquet"),
    ),
]

# eulc evaluate / select
CASES += [
    Case("evaluate: neither", ["evaluate", "--table", "{table}", "--out", "out"], ["--bundle or --scenario"]),
    Case(
        "evaluate: unknown scenario", ["evaluate", "--table", "{table}", "--out", "out", "--scenario", "mars"], ["mars"]
    ),
    Case(
        "evaluate: unknown model",
        ["evaluate", "--table", "{table}", "--out", "out", "--scenario", "extrap", "--models", "gpt"],
        ["gpt"],
    ),
    Case("evaluate: bundle missing", ["evaluate", "--table", "{table}", "--out", "out", "--bundle", "nob"], ["nob"]),
    Case(
        "evaluate: table missing",
        ["evaluate", "--table", "t.parquet", "--out", "out", "--bundle", str(BUNDLE)],
        ["t.parquet"],
    ),
    Case(
        "evaluate: epochs 0",
        ["evaluate", "--table", "{table}", "--out", "out", "--scenario", "extrap", "--epochs", "0"],
        ["epochs"],
    ),
    Case(
        "evaluate: unknown region",
        [
            "evaluate",
            "--table",
            "{table}",
            "--out",
            "out",
            "--scenario",
            "loro",
            "--regions",
            "Arctic",
            "--models",
            "rf",
            "--seeds",
            "1",
        ],
        ["Arctic"],
    ),
    Case("select: table missing", ["select", "--table", "t.parquet", "--out", "out/s.json"], ["t.parquet"]),
    Case("select: k 0", ["select", "--table", "{table}", "--out", "out/s.json", "--k", "0"], ["k"]),
    Case("select: k too large", ["select", "--table", "{table}", "--out", "out/s.json", "--k", "999"], ["999"]),
    Case(
        "select: unknown method",
        ["select", "--table", "{table}", "--out", "out/s.json", "--method", "magic"],
        ["magic"],
    ),
]

# eulc features
CASES += [
    Case("features: no source", ["features", "--year", "2017", "--out", "out"], ["--files"]),
    Case(
        "features: two sources",
        ["features", "--files", "eolearn_slovenia", "--catalog", "c.json", "--year", "2017", "--out", "out"],
        ["--files"],
    ),
    Case(
        "features: unknown manifest",
        ["features", "--files", "atlantis", "--year", "2017", "--out", "out"],
        ["atlantis"],
    ),
    Case("features: manifest missing", ["features", "--files", "m.yaml", "--year", "2017", "--out", "out"], ["m.yaml"]),
    Case(
        "features: manifest not YAML",
        ["features", "--files", "m.yaml", "--year", "2017", "--out", "out"],
        ["m.yaml"],
        _write("m.yaml", "items: [\n"),
    ),
    Case(
        "features: manifest unknown key",
        ["features", "--files", "m.yaml", "--year", "2017", "--out", "out"],
        ["m.yaml"],
        _write("m.yaml", "name: x\nlevel: L1C\nitems: []\nwhat: 1\n"),
    ),
    Case(
        "features: manifest file missing",
        ["features", "--files", "m.yaml", "--year", "2017", "--out", "out", "--cloud-mask", "none"],
        ["gone.tif"],
        _write("m.yaml", "name: x\nlevel: L1C\nitems:\n  - {path: gone.tif, kind: timeseries, variable: ndvi}\n"),
    ),
    Case(
        "features: year without data",
        ["features", "--files", "eolearn_slovenia", "--year", "1999", "--out", "out", "--features", "ndvi_p50"],
        ["1999"],
    ),
    Case(
        "features: unknown feature",
        ["features", "--files", "eolearn_slovenia", "--year", "2017", "--out", "out", "--features", "ndvi_p51"],
        ["ndvi_p51"],
    ),
    Case(
        "features: band missing",
        ["features", "--files", "eolearn_slovenia", "--year", "2017", "--out", "out", "--features", "asc_vv_median"],
        ["asc_vv_median"],
    ),
    Case(
        "features: selection missing",
        ["features", "--files", "eolearn_slovenia", "--year", "2017", "--out", "out", "--features", "s.json"],
        ["s.json"],
    ),
    Case(
        "features: broken bundle",
        ["features", "--files", "eolearn_slovenia", "--year", "2017", "--out", "out", "--features", "b"],
        ["bundle.json"],
        _bundle_with(lambda m: m.pop("features")),
    ),
    Case(
        "features: tile id with ..",
        [
            "features",
            "--files",
            "eolearn_slovenia",
            "--year",
            "2017",
            "--out",
            "out",
            "--tile-id",
            "../../x",
            "--features",
            "ndvi_p50",
        ],
        ["--tile-id", "../../x"],
    ),
    Case(
        "features: absolute tile id",
        [
            "features",
            "--files",
            "eolearn_slovenia",
            "--year",
            "2017",
            "--out",
            "out",
            "--tile-id",
            "/tmp/evil",
            "--features",
            "ndvi_p50",
        ],
        ["--tile-id", "/tmp/evil"],
    ),
    Case(
        "features: manifest name with ..",
        ["features", "--files", "m.yaml", "--year", "2017", "--out", "out"],
        ["manifest name", "../up"],
        _write("m.yaml", "name: ../up\nlevel: L1C\nitems:\n  - {path: x.tif, kind: timeseries, variable: ndvi}\n"),
    ),
    Case(
        "features: reserved tile id",
        [
            "features",
            "--files",
            "eolearn_slovenia",
            "--year",
            "2017",
            "--out",
            "out",
            "--tile-id",
            "catalog",
            "--features",
            "ndvi_p50",
        ],
        ["catalog", "reserved"],
    ),
    Case(
        "features: catalogue missing",
        ["features", "--catalog", "c.json", "--tiles", "10kmE467N253", "--year", "2017", "--out", "out"],
        ["c.json"],
    ),
    Case(
        "features: catalogue not JSON",
        ["features", "--catalog", "c.json", "--tiles", "10kmE467N253", "--year", "2017", "--out", "out"],
        ["c.json"],
        _write("c.json", "{oops"),
    ),
    Case(
        "features: catalogue not STAC",
        ["features", "--catalog", "c.json", "--tiles", "10kmE467N253", "--year", "2017", "--out", "out"],
        ["c.json"],
        _write("c.json", '{"a": 1}'),
    ),
    Case(
        "features: catalogue names /etc/passwd",
        [
            "features",
            "--catalog",
            "cat/catalog.json",
            "--tiles",
            "10kmE467N253",
            "--year",
            "2017",
            "--out",
            "out",
            "--features",
            "ndvi_p50",
        ],
        ["/etc/passwd", "outside"],
        lambda tmp, fx: _evil_catalog(tmp, "/etc/passwd"),
    ),
    Case(
        "features: catalogue names s3://",
        [
            "features",
            "--catalog",
            "cat/catalog.json",
            "--tiles",
            "10kmE467N253",
            "--year",
            "2017",
            "--out",
            "out",
            "--features",
            "ndvi_p50",
        ],
        ["s3://"],
        lambda tmp, fx: _evil_catalog(tmp, "s3://bucket/x.tif"),
    ),
    Case(
        "features: catalogue names ../",
        [
            "features",
            "--catalog",
            "cat/catalog.json",
            "--tiles",
            "10kmE467N253",
            "--year",
            "2017",
            "--out",
            "out",
            "--features",
            "ndvi_p50",
        ],
        ["outside"],
        lambda tmp, fx: _evil_catalog(tmp, "../../secret.tif"),
    ),
    Case(
        "features: catalogue without --tiles",
        ["features", "--catalog", "cat/catalog.json", "--year", "2017", "--out", "out"],
        ["--tiles"],
        lambda tmp, fx: _evil_catalog(tmp, "x.tif"),
    ),
    Case(
        "features: bad cloud mask",
        [
            "features",
            "--catalog",
            "cat/catalog.json",
            "--tiles",
            "10kmE467N253",
            "--year",
            "2017",
            "--out",
            "out",
            "--cloud-mask",
            "some",
        ],
        ["some"],
        lambda tmp, fx: _evil_catalog(tmp, "x.tif"),
    ),
    Case(
        "features: bad tiles",
        ["features", "--catalog", "cat/catalog.json", "--tiles", "E467N253", "--year", "2017", "--out", "out"],
        ["E467N253"],
        lambda tmp, fx: _evil_catalog(tmp, "x.tif"),
    ),
    Case(
        "features: tile size 0m",
        [
            "features",
            "--catalog",
            "cat/catalog.json",
            "--tiles",
            "bbox:14,45,15,46",
            "--tile-size",
            "0m",
            "--year",
            "2017",
            "--out",
            "out",
        ],
        ["--tile-size"],
        lambda tmp, fx: _evil_catalog(tmp, "x.tif"),
    ),
    Case(
        "features: --out file taken",
        ["features", "--files", "eolearn_slovenia", "--year", "2017", "--out", "out", "--features", "ndvi_p50"],
        ["eolearn_slovenia_2017.tif", "not written"],
        _write("out/eolearn_slovenia_2017.tif", FOREIGN),
    ),
    Case(
        "features: spec disagrees with selection",
        [
            "features",
            "--files",
            "eolearn_slovenia",
            "--year",
            "2017",
            "--out",
            "out",
            "--features",
            "sel.json",
            "--spec",
            "bridge-lc-196",
        ],
        ["sel.json"],
        _selection(NDVI_FEATURES),
    ),
]

# eulc map
CASES += [
    Case("map: bundle missing", ["map", "{features}", "--bundle", "nob", "--out", "out"], ["nob"]),
    Case(
        "map: bundle.json garbage",
        ["map", "{features}", "--bundle", "b", "--out", "out"],
        ["bundle.json", "JSON"],
        lambda tmp, fx: (shutil.copytree(BUNDLE, tmp / "b"), (tmp / "b" / "bundle.json").write_text("{oops")),
    ),
    Case(
        "map: hidden 60000",
        ["map", "{features}", "--bundle", "b", "--out", "out"],
        ["hidden"],
        _bundle_with(lambda m: m["architecture"].update(hidden=60000)),
    ),
    Case(
        "map: temperature 0",
        ["map", "{features}", "--bundle", "b", "--out", "out"],
        ["temperature"],
        _bundle_with(lambda m: m["architecture"].update(temperature=0)),
    ),
    Case(
        "map: temperature -1",
        ["map", "{features}", "--bundle", "b", "--out", "out"],
        ["temperature"],
        _bundle_with(lambda m: m["architecture"].update(temperature=-1)),
    ),
    Case(
        "map: temperature NaN",
        ["map", "{features}", "--bundle", "b", "--out", "out"],
        ["temperature"],
        _bundle_with(lambda m: m["architecture"].update(temperature=float("nan"))),
    ),
    Case(
        "map: depth 0",
        ["map", "{features}", "--bundle", "b", "--out", "out"],
        ["depth"],
        _bundle_with(lambda m: m["architecture"].update(depth=0)),
    ),
    Case(
        "map: wrong format",
        ["map", "{features}", "--bundle", "b", "--out", "out"],
        ["format"],
        _bundle_with(lambda m: m.update(format="other/1")),
    ),
    Case(
        "map: weights edited",
        ["map", "{features}", "--bundle", "b", "--out", "out"],
        ["weights", "SHA-256"],
        _bundle_with(lambda m: m.update(weights_sha256="0" * 64)),
    ),
    Case(
        "map: feature spec edited",
        ["map", "{features}", "--bundle", "b", "--out", "out"],
        ["digest"],
        _bundle_with(lambda m: m["spec"]["feature_spec"]["features"][0].update(scale=1.0)),
    ),
    Case(
        "map: bundle features reordered",
        ["map", "{features}", "--bundle", "b", "--out", "out"],
        ["b"],
        _bundle_with(lambda m: m.update(features=m["features"][::-1][:3])),
    ),
    Case(
        "map: weights missing",
        ["map", "{features}", "--bundle", "b", "--out", "out"],
        ["weights.safetensors"],
        lambda tmp, fx: (shutil.copytree(BUNDLE, tmp / "b"), (tmp / "b" / "weights.safetensors").unlink()),
    ),
    Case("map: no feature source", ["map", "--bundle", str(BUNDLE), "--out", "out"], ["--features-dir"]),
    Case(
        "map: both feature sources",
        ["map", "{features}", "--features-dir", "{features_dir}", "--bundle", str(BUNDLE), "--out", "out"],
        ["--features-dir"],
    ),
    Case(
        "map: feature dir empty",
        ["map", "--features-dir", "empty", "--bundle", str(BUNDLE), "--out", "out"],
        ["empty", "no feature file"],
        _write("empty/.keep", ""),
    ),
    Case(
        "map: bad tiles",
        ["map", "--tiles", "10kmE467", "--mosaic", "{features}", "--bundle", str(BUNDLE), "--out", "out"],
        ["10kmE467"],
    ),
    Case(
        "map: tile size 0m",
        [
            "map",
            "--tiles",
            "bbox:14,45,15,46",
            "--tile-size",
            "0m",
            "--mosaic",
            "{features}",
            "--bundle",
            str(BUNDLE),
            "--out",
            "out",
        ],
        ["--tile-size"],
    ),
    Case(
        "map: tile size abc",
        [
            "map",
            "--tiles",
            "bbox:14,45,15,46",
            "--tile-size",
            "abc",
            "--mosaic",
            "{features}",
            "--bundle",
            str(BUNDLE),
            "--out",
            "out",
        ],
        ["--tile-size"],
    ),
    Case(
        "map: bbox inverted",
        ["map", "--tiles", "bbox:15,46,14,45", "--mosaic", "{features}", "--bundle", str(BUNDLE), "--out", "out"],
        ["bbox"],
    ),
    Case(
        "map: unknown compress",
        ["map", "{features}", "--bundle", str(BUNDLE), "--out", "out", "--compress", "brotli"],
        ["--compress", "BROTLI"],
    ),
    Case(
        "map: unknown device",
        ["map", "{features}", "--bundle", str(BUNDLE), "--out", "out", "--device", "tpu"],
        ["tpu"],
    ),
    Case(
        "map: unknown accept",
        ["map", "{features}", "--bundle", str(BUNDLE), "--out", "out", "--accept", "scale"],
        ["scale"],
    ),
    Case(
        "map: --out is a file",
        ["map", "{features}", "--bundle", str(BUNDLE), "--out", "out/notes.txt"],
        ["notes.txt"],
        _foreign_out,
        out="out/notes.txt",
    ),
    Case(
        "map: --out holds foreign files",
        ["map", "{features}", "--bundle", str(BUNDLE), "--out", "out"],
        ["notes.txt", "--overwrite"],
        _foreign_out,
    ),
    Case(
        "map: --stac without --year",
        ["map", "--stac", "http://127.0.0.1:9/", "--tiles", "10kmE467N253", "--bundle", str(BUNDLE), "--out", "out"],
        ["--year"],
    ),
    Case(
        "map: two files same name",
        ["map", "a/slo.tif", "b/slo.tif", "--bundle", str(BUNDLE), "--out", "out", "--scheduler", "sync"],
        ["slo"],
        lambda tmp, fx: [(tmp / d).mkdir() or shutil.copy(fx["features"], tmp / d / "slo.tif") for d in "ab"],
    ),
    Case(
        "map: feature file named catalog",
        ["map", "catalog.tif", "--bundle", str(BUNDLE), "--out", "out", "--scheduler", "sync"],
        ["catalog", "reserved"],
        lambda tmp, fx: shutil.copy(fx["features"], tmp / "catalog.tif"),
    ),
    Case(
        "map: level2 bundle missing",
        ["map", "{features}", "--bundle", str(BUNDLE), "--out", "out", "--level2", "nol2"],
        ["nol2"],
    ),
]

# sample, drift, agreement, report
CASES += [
    Case(
        "sample: points missing",
        ["sample", "--points", "p.csv", "--features-dir", "{features_dir}", "--out", "out/x.csv"],
        ["p.csv"],
    ),
    Case(
        "sample: no POINT_ID",
        ["sample", "--points", "p.csv", "--features-dir", "{features_dir}", "--out", "out/x.csv"],
        ["p.csv", "POINT_ID"],
        _write("p.csv", "A,B\n1,2\n"),
    ),
    Case(
        "sample: empty points",
        ["sample", "--points", "p.csv", "--features-dir", "{features_dir}", "--out", "out/x.csv"],
        ["p.csv"],
        _write("p.csv", "POINT_ID,TH_LAT,TH_LONG\n"),
    ),
    Case(
        "sample: points outside",
        ["sample", "--points", "p.csv", "--features-dir", "{features_dir}", "--out", "out/x.csv"],
        ["none of the 1 points"],
        _write("p.csv", "POINT_ID,TH_LAT,TH_LONG\n38002768,48.85,2.35\n"),
    ),
    Case(
        "sample: points off the grid",
        ["sample", "--points", "p.csv", "--features-dir", "{features_dir}", "--out", "out/x.csv"],
        ["p.csv", "outside the EEA grid"],
        _write("p.csv", "POINT_ID,TH_LAT,TH_LONG\n7,-33.9,151.2\n"),
    ),
    Case(
        "sample: feature dir empty",
        ["sample", "--points", "{survey}", "--features-dir", "empty", "--out", "out/x.csv"],
        ["empty"],
        _write("empty/.keep", ""),
    ),
    Case(
        "sample: feature dir missing",
        ["sample", "--points", "{survey}", "--features-dir", "nodir", "--out", "out/x.csv"],
        ["nodir"],
    ),
    Case("drift: table missing", ["drift", "--table", "t.parquet", "--features-dir", "{features_dir}"], ["t.parquet"]),
    Case(
        "drift: feature dir empty",
        ["drift", "--table", "{table}", "--features-dir", "empty"],
        ["empty"],
        _write("empty/.keep", ""),
    ),
    Case("agreement: map missing", ["agreement", "m.tif", "--reference", "{features}", *XW], ["m.tif"]),
    Case("agreement: reference missing", ["agreement", "{class_map}", "--reference", "r.tif", *XW], ["r.tif"]),
    Case("agreement: no crosswalk", ["agreement", "{class_map}", "--reference", "{class_map}"], ["--crosswalk"]),
    Case(
        "agreement: unknown crosswalk",
        ["agreement", "{class_map}", "--reference", "{class_map}", "--crosswalk", "nope"],
        ["nope"],
    ),
    Case(
        "agreement: reference corrupt",
        ["agreement", "{class_map}", "--reference", "r.tif", *XW],
        ["r.tif"],
        _write("r.tif", b"II*\x00" + bytes(100)),
    ),
    Case(
        "report: map missing",
        ["report", "--map", "m.tif", "--reference", "{class_map}", "--crosswalk", "eulc_level1", "--out", "out"],
        ["m.tif"],
    ),
    Case(
        "report: reference missing",
        ["report", "--map", "{class_map}", "--reference", "r.tif", "--crosswalk", "eulc_level1", "--out", "out"],
        ["r.tif"],
    ),
    Case(
        "report: no crosswalk",
        ["report", "--map", "{class_map}", "--reference", "{class_map}", "--out", "out"],
        ["--crosswalk"],
    ),
    Case(
        "report: unknown crosswalk",
        ["report", "--map", "{class_map}", "--reference", "{class_map}", "--crosswalk", "nope", "--out", "out"],
        ["nope"],
    ),
    Case(
        "report: points missing",
        [
            "report",
            "--map",
            "{class_map}",
            "--reference",
            "{class_map}",
            "--crosswalk",
            "eulc_level1",
            "--points",
            "p.parquet",
            "--out",
            "out",
        ],
        ["p.parquet"],
    ),
    Case(
        "report: zones missing",
        [
            "report",
            "--map",
            "{class_map}",
            "--reference",
            "{class_map}",
            "--crosswalk",
            "eulc_level1",
            "--zones",
            "z.gpkg",
            "--out",
            "out",
        ],
        ["z.gpkg"],
    ),
    Case(
        "report: previous missing",
        [
            "report",
            "--map",
            "{class_map}",
            "--reference",
            "{class_map}",
            "--crosswalk",
            "eulc_level1",
            "--previous",
            "prev.tif",
            "--out",
            "out",
        ],
        ["prev.tif"],
    ),
]

# gee and demo
CASES += [
    Case(
        "gee table: points missing",
        ["gee", "export-table", "--points", "p.csv", "--year", "2022", "--out", "out"],
        ["p.csv"],
    ),
    Case(
        "gee table: future year",
        ["gee", "export-table", "--points", "{survey}", "--year", "2999", "--out", "out"],
        ["2999"],
    ),
    Case(
        "gee table: shard size 0",
        ["gee", "export-table", "--points", "{survey}", "--year", "2022", "--out", "out", "--shard-size", "0"],
        ["shard"],
    ),
    Case(
        "gee table: unknown dest",
        ["gee", "export-table", "--points", "{survey}", "--year", "2022", "--out", "out", "--dest", "ftp"],
        ["--dest"],
    ),
    Case(
        "gee table: gcs without bucket",
        ["gee", "export-table", "--points", "{survey}", "--year", "2022", "--out", "out", "--dest", "gcs"],
        ["bucket"],
    ),
    Case(
        "gee tiles: bad tile",
        ["gee", "export-tiles", "--tiles", "10kmE467", "--year", "2022", "--out", "out"],
        ["10kmE467"],
    ),
    Case(
        "gee tiles: unknown feature",
        [
            "gee",
            "export-tiles",
            "--tiles",
            "10kmE467N253",
            "--year",
            "2022",
            "--out",
            "out",
            "--features",
            "s2_ndvi_p99",
        ],
        ["s2_ndvi_p99"],
    ),
    Case(
        "gee tiles: asset without root",
        ["gee", "export-tiles", "--tiles", "10kmE467N253", "--year", "2022", "--out", "out", "--dest", "asset"],
        ["asset"],
    ),
    Case(
        "gee tiles: before S2 L2A",
        ["gee", "export-tiles", "--tiles", "10kmE467N253", "--year", "2015", "--out", "out"],
        ["2015"],
    ),
    Case("gee status: no job table", ["gee", "status", "--out", "out"], ["job table"]),
    Case(
        "demo --train: data folder missing",
        ["demo", "--out", "out", "--train"],
        ["EULC_DATA"],
        env={"EULC_DATA": "/nonexistent"},
    ),
    Case("demo: epochs 0 with --train", ["demo", "--out", "out", "--train", "--epochs", "0"], ["epochs"]),
]


# --- issue #26: the neighbours of the cases above --------------------------------------------


def _ood_with(edit: Callable[[dict], None]) -> Callable[[Path, dict[str, Path]], None]:
    return _bundle_with(edit, "ood.json")


def _norm(key: str, i: int, value: object) -> Callable[[dict], None]:
    def edit(m: dict) -> None:
        m["normalizer"][key][i] = value

    return edit


def _set(path: tuple[str, ...], value: object) -> Callable[[dict], None]:
    def edit(m: dict) -> None:
        d = m
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return edit


def _relabel(m: dict) -> None:
    m["legend"]["classes"][0]["id"] = 300


def _many_classes(m: dict) -> None:
    m["architecture"]["n_classes"] = 300
    m["legend"]["classes"] = [{"id": i, "name": f"c{i}", "colour": "#000000"} for i in range(300)]


BUNDLE_EDITS: list[tuple[str, Callable[[dict], None], list[str]]] = [
    ("temperature 1e-300", _set(("architecture", "temperature"), 1e-300), ["temperature"]),
    ("temperature 1e300", _set(("architecture", "temperature"), 1e300), ["temperature"]),
    ("temperature NaN", _set(("architecture", "temperature"), float("nan")), ["temperature"]),
    ("temperature a string", _set(("architecture", "temperature"), "1.0"), ["temperature"]),
    ("temperature true", _set(("architecture", "temperature"), True), ["temperature"]),
    ("centre NaN", _norm("center", 0, float("nan")), ["normalizer.center"]),
    ("centre inf", _norm("center", 1, float("inf")), ["normalizer.center"]),
    ("scale 1e-38", _norm("scale", 0, 1e-38), ["normalizer.scale"]),
    ("scale 1e30", _norm("scale", 2, 1e30), ["normalizer.scale"]),
    ("scale NaN", _norm("scale", 0, float("nan")), ["normalizer"]),
    ("lo above hi", _norm("lo", 0, 1e9), ["lo must be below hi"]),
    ("lo NaN", _norm("lo", 0, float("nan")), ["normalizer bounds"]),
    ("prior NaN", lambda m: m["metrics"]["class_prior"].__setitem__(0, float("nan")), ["class_prior"]),
    ("prior negative", lambda m: m["metrics"]["class_prior"].__setitem__(0, -0.5), ["class_prior"]),
    ("prior sums to 2", lambda m: m["metrics"].update(class_prior=[2 / 7] * 7), ["class_prior"]),
    ("prior too short", lambda m: m["metrics"].update(class_prior=[1.0]), ["class_prior"]),
    ("prior strings", lambda m: m["metrics"].update(class_prior=["a"] * 7), ["class_prior"]),
    ("legend id 300", _relabel, ["legend id 300"]),
    ("300 classes", _many_classes, ["n_classes"]),
    ("67 M parameters", lambda m: m["architecture"].update(hidden=2048, depth=16), ["parameters"]),
    ("hidden 4096 depth 8", lambda m: m["architecture"].update(hidden=4096, depth=8), ["parameters"]),
    ("features not a list", _set(("features",), 7), ["bundle.json"]),
    ("normalizer a list", _set(("normalizer",), []), ["bundle.json"]),
    ("legend classes a string", _set(("legend", "classes"), "x"), ["bundle.json"]),
    ("architecture a list", _set(("architecture",), [1]), ["architecture"]),
    ("bundle.json a list", lambda m: None, ["bundle.json"]),
    ("metrics true", _set(("metrics",), True), ["metrics"]),  # found by tests/test_fuzz.py
]

OOD_EDITS: list[tuple[str, Callable[[dict], None], list[str]]] = [
    ("landscape threshold NaN", _set(("landscape_threshold",), float("nan")), ["landscape_threshold"]),
    ("landscape threshold -1", _set(("landscape_threshold",), -1), ["landscape_threshold"]),
    ("distance threshold null", _set(("distance_threshold",), None), ["distance_threshold"]),
    ("distance threshold inf", _set(("distance_threshold",), float("inf")), ["distance_threshold"]),
    ("distance threshold a string", _set(("distance_threshold",), "3"), ["distance_threshold"]),
    ("rare share 2", _set(("rare_share",), 2), ["rare_share"]),
    ("quantile -0.1", _set(("quantile",), -0.1), ["quantile"]),
    ("format foreign", _set(("format",), "other/9"), ["format"]),
    ("fitted for another model", _set(("bundle_digest",), "0" * 16), ["fitted for the model"]),
    ("arrays hash edited", _set(("arrays_sha256",), "0" * 64), ["SHA-256"]),
]


def _bundle_list(tmp: Path, fx: dict[str, Path]) -> None:
    shutil.copytree(BUNDLE, tmp / "b")
    (tmp / "b" / "bundle.json").write_text("[1, 2]")


for what, edit, needles in BUNDLE_EDITS:
    prep = _bundle_list if what == "bundle.json a list" else _bundle_with(edit)
    CASES.append(Case(f"map: bundle {what}", ["map", "{features}", "--bundle", "b", "--out", "out"], needles, prep))
    CASES.append(
        Case(
            f"evaluate: bundle {what}",
            ["evaluate", "--table", "{table}", "--out", "out", "--bundle", "b"],
            needles,
            prep,
        )
    )
for what, edit, needles in OOD_EDITS:
    CASES.append(
        Case(
            f"map --ood: ood.json {what}",
            ["map", "{features}", "--bundle", "b", "--out", "out", "--ood"],
            needles,
            _ood_with(edit),
        )
    )
CASES += [
    Case(
        "map --ood: ood.json not JSON",
        ["map", "{features}", "--bundle", "b", "--out", "out", "--ood"],
        ["ood.json", "JSON"],
        lambda tmp, fx: (shutil.copytree(BUNDLE, tmp / "b"), (tmp / "b" / "ood.json").write_text("{oops")),
    ),
    Case(
        "map --ood: ood.safetensors missing",
        ["map", "{features}", "--bundle", "b", "--out", "out", "--ood"],
        ["ood.json without ood.safetensors"],
        lambda tmp, fx: (shutil.copytree(BUNDLE, tmp / "b"), (tmp / "b" / "ood.safetensors").unlink()),
    ),
    Case(
        "map: weights truncated",
        ["map", "{features}", "--bundle", "b", "--out", "out"],
        ["weights"],
        lambda tmp, fx: (
            shutil.copytree(BUNDLE, tmp / "b"),
            (tmp / "b" / "weights.safetensors").write_bytes((BUNDLE / "weights.safetensors").read_bytes()[:1000]),
        ),
    ),
    Case(
        "map: weights empty",
        ["map", "{features}", "--bundle", "b", "--out", "out"],
        ["weights"],
        lambda tmp, fx: (shutil.copytree(BUNDLE, tmp / "b"), (tmp / "b" / "weights.safetensors").write_bytes(b"")),
    ),
    Case(
        "map: bundle.json Latin-1",
        ["map", "{features}", "--bundle", "b", "--out", "out"],
        ["bundle.json"],
        lambda tmp, fx: (
            shutil.copytree(BUNDLE, tmp / "b"),
            (tmp / "b" / "bundle.json").write_bytes(b'{"format": "caf\xe9"}'),
        ),
    ),
]


def _link(name: str, target: str = "victim.txt") -> Callable[[Path, dict[str, Path]], None]:
    """A symbolic link ``name`` (inside the case folder) to a file outside ``out``."""

    def prep(tmp: Path, fx: dict[str, Path]) -> None:
        (tmp / target).write_bytes(FOREIGN)
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.symlink_to(tmp / target)

    return prep


def _user_db(tmp: Path, fx: dict[str, Path]) -> None:
    import sqlite3

    (tmp / "out").mkdir(exist_ok=True)
    db = sqlite3.connect(tmp / "out" / "manifest.sqlite")
    db.execute("CREATE TABLE accounts (name TEXT)")
    db.execute("INSERT INTO accounts VALUES ('mine')")
    db.commit()
    db.close()


REPORT = ["report", "--map", "{class_map}", "--reference", "{class_map}", "--crosswalk", "eulc_level1", "--out", "out"]
MAP = ["map", "{features}", "--bundle", str(BUNDLE), "--out", "out", "--scheduler", "sync"]
EVALUATE = ["evaluate", "--table", "{table}", "--out", "out", "--bundle", str(BUNDLE)]
SELECT = ["select", "--table", "{table}", "--out", "out/sel.json", "--seeds", "1"]
SAMPLE_CMD = ["sample", "--points", "{inside}", "--features-dir", "{features_dir}", "--out", "out/x.csv"]
DRIFT = ["drift", "--table", "{table}", "--features-dir", "{features_dir}", "--out", "out/d.csv"]
AGREE = ["agreement", "{class_map}", "--reference", "{class_map}", "--crosswalk", "eulc_level1", "--out", "out/a.json"]
FEATURES = ["features", "--files", "eolearn_slovenia", "--year", "2017", "--out", "out", "--features", "ndvi_p50"]
# a foreign file, a link to a file outside, at each name a command writes: never replaced or followed
for name, argv, dest in [
    ("report", REPORT, "out/report.html"),
    ("report", REPORT, "out/metrics.json"),
    ("evaluate", EVALUATE, "out/metrics.json"),
    ("select", SELECT, "out/sel.json"),
    ("sample", SAMPLE_CMD, "out/x.csv"),
    ("drift", DRIFT, "out/d.csv"),
    ("agreement", AGREE, "out/a.json"),
    ("map", MAP, "out/slo_2017_class.tif"),
    ("map", MAP, "out/slo_2017.json"),
    ("features", FEATURES, "out/eolearn_slovenia_2017.tif"),
]:
    base = Path(dest).name
    CASES.append(Case(f"{name}: foreign {base} in the way", argv, [base], _write(dest, FOREIGN)))
    CASES.append(Case(f"{name}: {base} is a link outside", argv, [base], _link(dest)))
for name, argv, lock in [
    ("report", REPORT, "out/.eulc.lock"),
    ("evaluate", EVALUATE, "out/.eulc.lock"),
    ("select", SELECT, "out/.eulc.lock"),
    ("sample", SAMPLE_CMD, "out/.eulc.lock"),
    ("drift", DRIFT, "out/.eulc.lock"),
    ("agreement", AGREE, "out/.eulc.lock"),
    ("map", MAP, "out/.eulc-map.lock"),
    ("features", FEATURES, "out/.eulc-features.lock"),
    ("map", MAP, "out/manifest.sqlite"),
    ("map", MAP, "out/manifest.sqlite-wal"),
    ("map", MAP, "out/.eulc-written"),
    ("report", REPORT, "out/.eulc-written"),
]:
    CASES.append(Case(f"{name}: {Path(lock).name} is a link outside", argv, [Path(lock).name, "link"], _link(lock)))
CASES += [
    Case("map: manifest.sqlite is the user's database", MAP, ["manifest.sqlite", "accounts"], _user_db),
    Case(
        "map: manifest.sqlite corrupt",
        MAP,
        ["manifest.sqlite", "SQLite"],
        _write("out/manifest.sqlite", b"SQLite format 3\x00" + bytes(range(256)) * 8),
    ),
    Case("map: manifest.sqlite a folder", MAP, ["manifest.sqlite"], _write("out/manifest.sqlite/x", "x")),
]

# values of options that set the amount of work, and addresses
for name, argv in [("map", MAP), ("features", FEATURES)]:
    for opt, val, needle in [
        ("--workers", "-1", "--workers"),
        ("--workers", "0", "--workers"),
        ("--workers", "100000", "--workers"),
        ("--scheduler", "tcp://[bad", "--scheduler"),
        ("--scheduler", "tcp://host", "--scheduler"),
        ("--scheduler", "tcp://h:99999", "--scheduler"),
        ("--scheduler", "bogus", "--scheduler"),
        ("--scheduler", "", "--scheduler"),
        ("--dashboard", "nonsense", "--dashboard"),
        ("--dashboard", "h:70000", "--dashboard"),
        ("--dashboard", "a/b:1", "--dashboard"),
    ]:
        rest = [a for i, a in enumerate(argv) if not (a == "--scheduler" or (i and argv[i - 1] == "--scheduler"))]
        CASES.append(Case(f"{name}: {opt} {val!r}", [*rest, opt, val], [needle]))
for tiles, size in [("bbox:-10,35,30,70", "100m"), ("bbox:-180,-80,180,80", "1km"), ("bbox:-10,35,30,70", "250m")]:
    CASES.append(
        Case(
            f"features: {tiles} at {size}",
            [
                "features",
                "--catalog",
                "cat/catalog.json",
                "--tiles",
                tiles,
                "--tile-size",
                size,
                "--year",
                "2017",
                "--out",
                "out",
            ],
            ["--tiles", "cells"],
            lambda tmp, fx: _evil_catalog(tmp, "x.tif"),
        )
    )
for name, argv in [
    ("evaluate", ["evaluate", "--table", "{table}", "--out", "out", "--scenario", "extrap"]),
    ("select", ["select", "--table", "{table}", "--out", "out/s.json"]),
]:
    for val in ("0", "-1", "-100"):
        CASES.append(Case(f"{name}: --seeds {val}", [*argv, "--seeds", val], ["--seeds"]))

# user files in odd encodings and shapes
for what, content, needles in [
    ("Latin-1", "POINT_ID,ndvi_p50\n1,caf\xe9\n".encode("latin-1"), ["bad.csv"]),
    ("UTF-16", "POINT_ID,ndvi_p50\n1,2\n".encode("utf-16"), ["bad.csv"]),
    ("a BOM only", b"\xef\xbb\xbf", ["bad.csv"]),
    ("NUL bytes", b"\x00" * 64, ["bad.csv"]),
    ("one newline", b"\n", ["bad.csv"]),
    ("a JSON file", b'{"POINT_ID": [1]}', ["bad.csv"]),
]:
    CASES.append(
        Case(f"table: {what}", ["table", "bad.csv", "--out", "out/t.parquet"], needles, _write("bad.csv", content))
    )
    CASES.append(
        Case(
            f"sample: points {what}",
            ["sample", "--points", "bad.csv", "--features-dir", "{features_dir}", "--out", "out/x.csv"],
            needles,
            _write("bad.csv", content),
        )
    )
for what, sel in [
    ("names not a list", {"spec": "elc10", "names": "ndvi_p50"}),
    ("names numbers", {"spec": "elc10", "names": [1, 2]}),
    ("a list", ["ndvi_p50"]),
    ("spec a number", {"spec": 5, "names": ["ndvi_p50"]}),
    ("empty names", {"spec": "elc10", "names": []}),
    ("null", None),
]:
    CASES.append(
        Case(
            f"train: selection {what}",
            ["train", "{table}", "--out", "out/m", "--features", "sel.json"],
            ["sel.json"],
            _write("sel.json", json.dumps(sel)),
        )
    )
    CASES.append(
        Case(
            f"features: selection {what}",
            [*FEATURES[:-2], "--features", "sel.json"],
            ["sel.json"],
            _write("sel.json", json.dumps(sel)),
        )
    )


# static catalogues whose VRTs or GDAL paths read outside the tree
def _vrt_catalog(source: str, relative: bool = False, code: bool = False) -> Callable[[Path, dict[str, Path]], None]:
    def prep(tmp: Path, fx: dict[str, Path]) -> None:
        _evil_catalog(tmp, "x.vrt")
        item = next((tmp / "cat").rglob("i.json"))
        vrt = item.parent / "x.vrt"
        fn = "<PixelFunctionLanguage>Python</PixelFunctionLanguage>" if code else ""
        vrt.write_text(
            f'<VRTDataset rasterXSize="1" rasterYSize="1"><VRTRasterBand dataType="Float32" band="1" '
            f'subClass="VRTDerivedRasterBand">{fn}<SimpleSource><SourceFilename '
            f'relativeToVRT="{int(relative)}">{source}</SourceFilename><SourceBand>1</SourceBand>'
            "</SimpleSource></VRTRasterBand></VRTDataset>"
        )
        d = json.loads(item.read_text())
        d["assets"]["ndvi"]["href"] = "./x.vrt"
        item.write_text(json.dumps(d))

    return prep


CAT = [
    "features",
    "--catalog",
    "cat/catalog.json",
    "--tiles",
    "10kmE467N253",
    "--year",
    "2017",
    "--out",
    "out",
    "--features",
    "ndvi_p50",
]
CASES += [
    Case("features: VRT reads /etc/passwd", CAT, ["/etc/passwd", "outside"], _vrt_catalog("/etc/passwd")),
    Case("features: VRT reads ../../", CAT, ["outside"], _vrt_catalog("../../../secret.tif", relative=True)),
    Case("features: VRT reads /vsicurl/", CAT, ["/vsicurl/"], _vrt_catalog("/vsicurl/http://example.com/x.tif")),
    Case("features: VRT with Python code", CAT, ["code"], _vrt_catalog("y.tif", relative=True, code=True)),
    Case("features: href /vsicurl/", CAT, ["/vsicurl/"], lambda tmp, fx: _evil_catalog(tmp, "/vsicurl/http://e/x.tif")),
    Case("features: href /vsizip/", CAT, ["/vsizip/"], lambda tmp, fx: _evil_catalog(tmp, "/vsizip//etc/x.zip/a.tif")),
]

for val in ("0", "-1", "100000", "abc", "1.5"):
    CASES.append(
        Case(
            f"--threads {val}",
            ["--threads", val, "map", "{features}", "--bundle", str(BUNDLE), "--out", "out"],
            ["--threads"],
        )
    )
    CASES.append(
        Case(
            f"EULC_THREADS={val}",
            ["map", "{features}", "--bundle", str(BUNDLE), "--out", "out"],
            ["THREADS"],
            env={"EULC_THREADS": val},
        )
    )

# names with rich-markup characters are printed verbatim
for name in ("a[b]c.csv", "[red]x[/red].csv", "[bold].csv", "x\\[y].csv"):
    CASES.append(Case(f"table: missing {name}", ["table", name, "--out", "out/t.parquet"], [name]))


def _evil_catalog(tmp: Path, href: str) -> None:
    import datetime as dt

    import pystac

    cat = pystac.Catalog("c", "a catalogue that names a file it should not")
    it = pystac.Item(
        "i",
        {"type": "Point", "coordinates": [14.5, 46.0]},
        [14.5, 46.0, 14.5, 46.0],
        dt.datetime(2017, 6, 1, tzinfo=dt.UTC),
        {},
    )
    it.add_asset("ndvi", pystac.Asset(href, media_type=pystac.MediaType.GEOTIFF))
    cat.add_item(it)
    cat.normalize_hrefs(str(tmp / "cat"))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    if "://" not in href and not href.startswith("/"):  # keep the relative href as written
        item = next((tmp / "cat").rglob("i.json"))
        d = json.loads(item.read_text())
        d["assets"]["ndvi"]["href"] = href
        item.write_text(json.dumps(d))


@pytest.fixture(scope="module")
def fx(
    sample_table: Path, slovenia_features: Path, data: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The valid inputs the cases break: a real table, the real Slovenia features, a class map."""
    from model.bundle import load_bundle
    from tiles.mapping.predict import predict_tile

    d = tmp_path_factory.mktemp("fx")
    res = predict_tile(load_bundle(BUNDLE), slovenia_features, d, "slo")
    import rasterio
    from pyproj import Transformer

    with rasterio.open(slovenia_features) as src:  # two LUCAS-like points inside the real feature tile
        xs, ys = src.xy([10, 40], [10, 40])
        lon, lat = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    (d / "inside.csv").write_text(
        "POINT_ID,TH_LAT,TH_LONG\n"
        + "".join(f"{i},{la:.6f},{lo:.6f}\n" for i, (lo, la) in enumerate(zip(lon, lat, strict=True), start=1))
    )
    return {
        "table": sample_table,
        "features": slovenia_features,
        "features_dir": slovenia_features.parent,
        "sample_csv": data / SAMPLE,
        "survey": data / SURVEY,
        "class_map": res.class_path,
        "inside": d / "inside.csv",
    }


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>")
        for p in sorted(root.rglob("*"))
        if "__pycache__" not in p.parts
    }


def test_at_least_300_cases() -> None:
    assert len(CASES) >= 300, len(CASES)
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_ends_in_one_line(
    case: Case, fx: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    (tmp_path / ".env").write_bytes(FOREIGN)
    if case.prepare:
        case.prepare(tmp_path, fx)
    before = _tree(tmp_path)
    argv = [a.format(**{k: str(v) for k, v in fx.items()}) for a in case.args]
    monkeypatch.setattr(sys, "argv", ["eulc", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    for needle in case.needles:
        assert needle in lines[0], lines[0]
    after = _tree(tmp_path)
    for name, content in before.items():  # nothing that was there is changed or gone
        assert after.get(name) == content, f"{name} was changed or removed"
    new = [n for n in after if n not in before]
    out = case.out or "out"
    outside = [n for n in new if not (n == out or n.startswith(out + "/"))]
    assert outside == [], f"written outside --out: {outside}"
    partial = [n for n in new if not Path(n).name.startswith(".") and after[n] != b"<dir>"]
    assert partial == [], f"partial output: {partial}"


def test_regression_map_keeps_hidden_files_in_out(fx: dict[str, Path], tmp_path: Path) -> None:
    """`eulc map --out DIR` deleted every hidden file in DIR (the lock's clean-up): .env survives."""
    from tiles.mapping.runner import run_map

    out = tmp_path / "maps"
    out.mkdir()
    (out / ".env").write_bytes(FOREIGN)
    (out / ".gitignore").write_bytes(FOREIGN)
    s = run_map(None, BUNDLE, out, features_files=[fx["features"]], scheduler="sync", overwrite=True)
    assert s.ok and (out / ".env").read_bytes() == FOREIGN and (out / ".gitignore").read_bytes() == FOREIGN


def test_regression_train_never_deletes_a_package(fx: dict[str, Path], tmp_path: Path) -> None:
    """`eulc train t.parquet --out model` from the repository root deleted the `model/` package."""
    from model.api import train_from_table
    from model.train import TrainConfig
    from pipeline.core.errors import BundleError
    from pipeline.core.selection import FeatureSelection
    from pipeline.core.spec import load_spec

    pkg = tmp_path / "model"
    pkg.mkdir()
    (pkg / "__init__.py").write_bytes(FOREIGN)
    sel = FeatureSelection.of(load_spec("elc10"), NDVI_FEATURES, "names")
    for overwrite in (False, True):
        with pytest.raises(BundleError, match="did not write"):
            train_from_table(fx["table"], pkg, sel, TrainConfig(epochs=1), overwrite=overwrite)
    assert (pkg / "__init__.py").read_bytes() == FOREIGN and sorted(p.name for p in pkg.iterdir()) == ["__init__.py"]


def test_regression_inf_in_a_table_is_left_out_not_trained_on(fx: dict[str, Path], tmp_path: Path) -> None:
    """±inf in an export passed `eulc table`, then training wrote a bundle of NaN weights."""
    import pandas as pd

    from pipeline.core.spec import load_spec
    from pipeline.table import build_feature_table

    df = pd.read_csv(fx["sample_csv"])
    df.loc[:9, "ndvi_p50"] = np.inf
    df.loc[10:14, "ndvi_p5"] = -np.inf
    df.to_csv(tmp_path / "inf.csv", index=False)
    gdf, rep = build_feature_table([tmp_path / "inf.csv"], load_spec("elc10"))
    assert rep.nonfinite_values == {"ndvi_p50": 10, "ndvi_p5": 5}
    assert np.isfinite(gdf["ndvi_p50"].dropna()).all() and gdf["ndvi_p50"].isna().sum() >= 10


def test_regression_evaluate_keeps_earlier_runs(full_table: Path, tmp_path: Path) -> None:
    """`eulc evaluate --scenario` rerun with other settings dropped the earlier rows of runs.csv."""
    import pandas as pd

    from model.evaluate import run_scenario
    from model.train import TrainConfig

    run_scenario(
        full_table,
        NDVI_FEATURES,
        "extrap",
        tmp_path,
        models=("rf",),
        seeds=(0,),
        cfg=TrainConfig(epochs=1),
        max_rows=3000,
    )
    first = pd.read_csv(tmp_path / "extrap_runs.csv")
    run_scenario(
        full_table,
        NDVI_FEATURES[:5],
        "extrap",
        tmp_path,
        models=("rf",),
        seeds=(0,),
        cfg=TrainConfig(epochs=1),
        max_rows=3000,
    )
    both = pd.read_csv(tmp_path / "extrap_runs.csv")
    assert len(both) == 2 * len(first) and set(first["settings"]) <= set(both["settings"])


def test_regression_bundle_edit_changes_the_resume_key(tmp_path: Path) -> None:
    """Only the weights were hashed: an edit of bundle.json left tiles 'up to date'."""
    from model.bundle import load_bundle

    shutil.copytree(BUNDLE, tmp_path / "b")
    d0 = load_bundle(tmp_path / "b").digest
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    meta["architecture"]["temperature"] = 2.0
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(meta))
    assert load_bundle(tmp_path / "b").digest != d0


def test_nan_weights_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from model.bundle import load_bundle
    from pipeline.core.errors import BundleError
    from pipeline.core.hashing import file_sha256

    shutil.copytree(BUNDLE, tmp_path / "b")
    w = load_file(str(tmp_path / "b" / "weights.safetensors"))
    k = next(k for k, v in w.items() if v.is_floating_point())
    w[k] = w[k] * float("nan")
    save_file(w, str(tmp_path / "b" / "weights.safetensors"))
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    meta["weights_sha256"] = file_sha256(tmp_path / "b" / "weights.safetensors")
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="non-finite"):
        load_bundle(tmp_path / "b")


def test_the_dashboard_and_scheduler_listen_on_loopback(fx: dict[str, Path], tmp_path: Path) -> None:
    """The default `eulc map` started the dask dashboard on 0.0.0.0:8787 while printing 127.0.0.1:
    the listening sockets of the run (seen while it runs) are all on loopback."""
    from urllib.parse import urlparse

    import psutil

    from tiles.mapping.runner import run_map

    seen: dict[str, list[str]] = {}

    def on_event(kind: str, info: dict) -> None:
        if kind == "dashboard":
            port = urlparse(info["link"]).port
            seen["dashboard"] = [
                c.laddr.ip
                for c in psutil.net_connections("tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr.port == port
            ]

    s = run_map(
        None, BUNDLE, tmp_path / "m", features_files=[fx["features"]], scheduler="local", workers=1, on_event=on_event
    )
    assert s.ok and seen["dashboard"] and set(seen["dashboard"]) == {"127.0.0.1"}


@pytest.mark.parametrize("scheduler", ["threads", "local"])
def test_the_printed_dashboard_link_answers(scheduler: str, fx: dict[str, Path], tmp_path: Path) -> None:
    """With `--scheduler threads` the link named the machine's network address, where an
    in-process cluster does not listen (issue #27): the link printed is fetched while the run goes."""
    import urllib.request

    from tiles.mapping.runner import run_map

    status: dict[str, int] = {}

    def on_event(kind: str, info: dict) -> None:
        if kind == "dashboard":
            with urllib.request.urlopen(info["link"], timeout=10) as r:
                status[info["link"]] = r.status

    s = run_map(
        None,
        BUNDLE,
        tmp_path / "m",
        features_files=[fx["features"]],
        scheduler=scheduler,
        workers=1,
        on_event=on_event,
        dashboard="127.0.0.1:0",
    )
    assert s.ok and list(status.values()) == [200]


def test_a_tile_outside_the_features_says_so(fx: dict[str, Path], tmp_path: Path) -> None:
    """A bbox away from the data failed as 'every pixel nodata ... cloud-free observations' (issue
    #27): it now says the tile lies outside the file, and gives the file's own lon/lat box, which
    maps when given back."""
    import re

    from tiles.mapping.runner import run_map

    from .test_cli import eulc

    p = eulc(
        "map",
        "--tiles",
        "bbox:15.553,45.867,15.562,45.873",
        "--tile-size",
        "1km",
        "--mosaic",
        str(fx["features"]),
        "--bundle",
        str(BUNDLE),
        "--out",
        str(tmp_path / "m"),
        "--scheduler",
        "sync",
    )
    said = " ".join(p.stderr.split())
    assert p.returncode == 1 and "lies outside the file's extent" in said and "cloud-free" not in said
    assert "needs features" not in said  # the file has every feature of the bundle: no bundle hint
    box = re.search(r"bbox:([-\d.]+),([-\d.]+),([-\d.]+),([-\d.]+)", said)
    assert box is not None
    w, s, e, n = map(float, box.groups())
    assert w < 14.56 < e and s < 45.87 < n  # the Slovenia patch near Ljubljana
    inside = run_map(None, BUNDLE, tmp_path / "m2", features_files=[fx["features"]], scheduler="sync")
    assert inside.ok


def test_missing_bands_name_the_default_bundle_and_one_that_fits(fx: dict[str, Path], tmp_path: Path) -> None:
    """`eulc map FEATURES.tif` without `--bundle` failed listing 25 missing bands (issue #27): the
    warning names the default bundle and the shipped bundle whose features the file has."""
    from .test_cli import eulc

    p = eulc("map", str(fx["features"]), "--out", str(tmp_path / "m"), "--scheduler", "sync")
    said = " ".join(p.stderr.split())
    assert p.returncode == 1
    assert "--bundle elc10-l1 (the default) needs features" in said and "--bundle elc10-ndvi-l1" in said
    p = eulc(
        "map", str(fx["features"]), "--out", str(tmp_path / "m2"), "--scheduler", "sync", "--bundle", "elc10-ndvi-l1"
    )
    assert p.returncode == 0, p.stderr[-2000:]
