"""Every hand-over between stages, end to end, through the CLI as a user runs it (issue #13).

Each test feeds the next stage the files the previous one writes, named and laid out exactly as
it writes them. The commit before issue #13 fails each of these where the seam was broken:

- GEE tile export → map: `eulc map --features-dir` did not find `<spec>_<year>_<tile>.tif`, and the
  GEE engine refused the elc10 NDVI selection (texture), so the tile could not be planned at all;
- local features → sample → table → train → map: `eulc sample` wanted lon/lat (LUCAS files have
  TH_LAT/TH_LONG), `eulc features --files` wrote a file `eulc map --features-dir` did not look for;
- a feature COG made with another cloud mask, scale or orbit than the bundle's was mapped anyway;
- `eulc select` → `eulc gee export-tiles` fell back to `bridge-lc-196` and refused the selection.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer

from pipeline.core.contract import features_digest
from pipeline.core.grid import TileId
from pipeline.core.lucas import read_points, shards
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import load_spec
from pipeline.table import table_metadata

from .conftest import NDVI_FEATURES, SAMPLE, SURVEY, lucas_points
from .test_cli import eulc

SLO_CELL = "10kmE467N253"  # the 10 km cell holding the real Slovenia stack


def _ok(p) -> None:  # noqa: ANN001
    assert p.returncode == 0, (p.stdout[-1500:], p.stderr[-3000:])


def _class(path: Path) -> np.ndarray:
    with rasterio.open(path) as s:
        return s.read(1)


def _tags(path: Path) -> dict[str, str]:
    with rasterio.open(path) as s:
        return dict(s.tags())


@pytest.fixture(scope="module")
def cli_features(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`eulc features --files` with a bundle's selection and no --spec: the folder it writes."""
    out = tmp_path_factory.mktemp("feats")
    _ok(
        eulc(
            "features",
            "--files",
            "eolearn_slovenia",
            "--year",
            "2017",
            "--features",
            "models/elc10-ndvi-l1",
            "--out",
            str(out),
        )
    )
    return out


def test_gee_tile_export_is_found_and_mapped(cli_features: Path, tmp_path: Path) -> None:
    """Plan the export offline, then lay out the tile exactly as Earth Engine would deliver it:
    `<prefix>.tif` from tasks.csv, int16 with nodata -32768 on the plan's crsTransform and
    dimensions, no band names, the plan's bands.json beside it."""
    sel = FeatureSelection.of(load_spec("elc10"), NDVI_FEATURES, "names")
    sel.save(tmp_path / "sel.json")
    plan = tmp_path / "plan"
    _ok(
        eulc(
            "gee",
            "export-tiles",
            "--tiles",
            SLO_CELL,
            "--features",
            str(tmp_path / "sel.json"),
            "--year",
            "2017",
            "--out",
            str(plan),
        )
    )
    with (plan / "tasks.csv").open() as f:
        (task,) = list(csv.DictReader(f))
    name = task["output_uri"].rsplit("/", 1)[-1]
    graph = json.loads((plan / "graphs" / f"{SLO_CELL}.json").read_text())
    a, b, c, d, e, f_ = _find_arg(graph, "crsTransform")  # Image.reproject(crs, crsTransform)
    top = graph["expression"]["values"][graph["expression"]["result"]]["functionInvocationValue"]
    assert top["functionName"] == "Image.clipToBoundsAndScale"  # the export's pixel box, in pixel coordinates
    _, _, w_px, h_px = _find_arg(top["arguments"]["geometry"], "coordinates")
    width, height = int(w_px), int(h_px)
    # the Earth Engine values: the local engine's features of the same stack, rounded to int16
    (local,) = list(cli_features.glob("*.tif"))
    with rasterio.open(local) as s:
        vals, t = s.read(), s.transform
    tile = np.full((len(NDVI_FEATURES), height, width), -32768, np.int16)
    r0, c0 = int(round((f_ - t.f) / 10)), int(round((t.c - c) / 10))
    block = np.where(np.isfinite(vals), np.rint(vals), -32768).astype(np.int16)
    bands_local = [json.loads(_tags(local)["features"]).index(n) for n in NDVI_FEATURES]
    # the stack overhangs the cell by a row: keep what lies inside it (tile rows r0.., stack rows sr..)
    sr, sc = max(0, -r0), max(0, -c0)
    r0, c0 = max(r0, 0), max(c0, 0)
    vals = vals[:, sr : sr + height - r0, sc : sc + width - c0]
    tile[:, r0 : r0 + vals.shape[1], c0 : c0 + vals.shape[2]] = block[bands_local][
        :, sr : sr + vals.shape[1], sc : sc + vals.shape[2]
    ]
    gee = tmp_path / "downloads"
    gee.mkdir()
    with rasterio.open(
        gee / name,
        "w",
        driver="GTiff",
        dtype="int16",
        count=len(NDVI_FEATURES),
        width=width,
        height=height,
        crs="EPSG:3035",
        transform=Affine(a, b, c, d, e, f_),
        nodata=-32768,
        tiled=True,
        compress="deflate",
    ) as dst:
        dst.write(tile)
    (gee / "bands.json").write_text((plan / "bands.json").read_text())
    assert name == f"elc10_2017_{SLO_CELL}.tif"
    maps = tmp_path / "maps"
    _ok(
        eulc(
            "map",
            "--tiles",
            SLO_CELL,
            "--features-dir",
            str(gee),
            "--bundle",
            "models/elc10-ndvi-l1",
            "--out",
            str(maps),
            "--scheduler",
            "sync",
        )
    )
    cls = _class(maps / f"{SLO_CELL}_class.tif")
    inside = cls[r0 : r0 + vals.shape[1], c0 : c0 + vals.shape[2]]
    has = np.isfinite(vals).all(0)
    assert (inside[has] != 255).all() and (np.delete(cls, np.s_[r0 : r0 + vals.shape[1]], 0) == 255).all()
    tags = _tags(maps / f"{SLO_CELL}_class.tif")
    assert tags["contract"] == "checked" and tags["features_digest"] == features_digest(
        load_spec("elc10"), NDVI_FEATURES
    )
    # the same classes as the local feature COG (which holds the unrounded values) on >= 99 % of pixels
    local_maps = tmp_path / "local_maps"
    _ok(
        eulc(
            "map",
            "--features-dir",
            str(cli_features),
            "--bundle",
            "models/elc10-ndvi-l1",
            "--out",
            str(local_maps),
            "--scheduler",
            "sync",
        )
    )
    ref = _class(local_maps / f"{local.stem}_class.tif")[sr : sr + vals.shape[1], sc : sc + vals.shape[2]]
    assert (inside[has] == ref[has]).mean() > 0.99


def _find_arg(graph: object, key: str) -> list[float]:
    """The constant value of the first argument called ``key`` anywhere in a task graph."""
    if isinstance(graph, dict):
        if key in graph and isinstance(graph[key], dict) and "constantValue" in graph[key]:
            return [float(v) for v in graph[key]["constantValue"]]
        for v in graph.values():
            try:
                return _find_arg(v, key)
            except KeyError:
                pass
    if isinstance(graph, list):
        for v in graph:
            try:
                return _find_arg(v, key)
            except KeyError:
                pass
    raise KeyError(key)


def test_local_features_sample_table_train_map(cli_features: Path, tmp_path: Path) -> None:
    """The local engine's training path: LUCAS-style points (TH_LAT/TH_LONG, LC/LU codes) →
    `eulc sample` → `eulc table` → `eulc train` → `eulc map` on the same feature folder."""
    (cog,) = list(cli_features.glob("*.tif"))
    with rasterio.open(cog) as s:
        t, h, w = s.transform, s.height, s.width
        ndvi = s.read(json.loads(s.tags()["features"]).index("ndvi_p50") + 1)
        has = np.isfinite(s.read()).all(0)
    rng = np.random.default_rng(7)
    rows, cols = rng.integers(0, h, 300), rng.integers(0, w, 300)
    x, y = t.c + (cols + 0.5) * 10, t.f - (rows + 0.5) * 10
    lon, lat = Transformer.from_crs(3035, 4326, always_xy=True).transform(x, y)
    green = ndvi[rows, cols] > np.nanmedian(ndvi)  # labels from the data: woodland where greener
    pts = pd.DataFrame(
        {
            "POINT_ID": 46742538 + np.arange(300),
            "TH_LAT": lat,
            "TH_LONG": lon,
            "LC": np.where(green, "C10", "E20"),
            "LU": "U120",
        }
    )
    pts.to_csv(tmp_path / "lucas.csv", index=False)
    _ok(
        eulc(
            "sample",
            "--points",
            str(tmp_path / "lucas.csv"),
            "--features-dir",
            str(cli_features),
            "--out",
            str(tmp_path / "export.csv"),
        )
    )
    _ok(
        eulc(
            "table",
            str(tmp_path / "export.csv"),
            "--spec",
            str(_ndvi_spec(tmp_path)),
            "--out",
            str(tmp_path / "t.parquet"),
        )
    )
    meta = table_metadata(tmp_path / "t.parquet")
    assert meta["report"]["rows_written"] == 300
    _ok(
        eulc(
            "train",
            str(tmp_path / "t.parquet"),
            "--out",
            str(tmp_path / "model"),
            "--epochs",
            "40",
            "--lr",
            "3e-3",
            "--preset",
            "mlp",
        )
    )
    bundle = json.loads((tmp_path / "model" / "bundle.json").read_text())
    assert bundle["spec"]["features_digest"] == meta["features_digest"]
    _ok(
        eulc(
            "map",
            "--features-dir",
            str(cli_features),
            "--bundle",
            str(tmp_path / "model"),
            "--out",
            str(tmp_path / "maps"),
            "--scheduler",
            "sync",
        )
    )
    cls = _class(tmp_path / "maps" / f"{cog.stem}_class.tif")
    assert _tags(tmp_path / "maps" / f"{cog.stem}_class.tif")["contract"] == "checked"
    table = pd.read_parquet(tmp_path / "t.parquet", columns=["level1"])["level1"]
    wood, grass = int(table[green].iloc[0]), int(table[~green].iloc[0])
    rule = np.where(ndvi > np.nanmedian(ndvi), wood, grass)  # the labelling rule, on every pixel
    np.testing.assert_array_equal(cls != 255, has)  # every pixel with features is mapped
    assert (cls[has] == rule[has]).mean() > 0.85


def _ndvi_spec(tmp_path: Path) -> Path:
    """A spec given as a YAML path (the elc10 NDVI features): bundles trained from it must map."""
    import yaml

    sub = load_spec("elc10").subset(NDVI_FEATURES).model_dump(mode="json")
    sub["name"] = "elc10-ndvi"
    path = tmp_path / "elc10-ndvi.yaml"
    path.write_text(yaml.safe_dump(sub))
    return path


def test_the_shipped_lucas_points_file_is_read_by_sample(data: Path, cli_features: Path, tmp_path: Path) -> None:
    p = eulc(
        "sample", "--points", str(data / SURVEY), "--features-dir", str(cli_features), "--out", str(tmp_path / "x.csv")
    )
    n = len(pd.read_csv(data / SURVEY))
    assert p.returncode == 2 and f"none of the {n} points" in p.stderr  # read (TH_LAT/TH_LONG), all outside 1 km²


def _retag(src: Path, dst: Path, edit) -> None:  # noqa: ANN001
    """Copy a feature COG, changing its embedded spec (and band scales) with ``edit(spec_json)``."""
    with rasterio.open(src) as s:
        prof, arr, tags = s.profile, s.read(), s.tags()
        btags = [s.tags(i + 1) for i in range(s.count)]
        desc = s.descriptions
    spec = json.loads(tags["feature_spec"])
    edit(spec)
    from pipeline.core.contract import embedded_spec

    new = embedded_spec(spec, "test")
    tags.update(feature_spec=json.dumps(spec), features_digest=features_digest(new))
    prof.update(driver="GTiff")
    with rasterio.open(dst, "w", **prof) as d:
        d.write(arr)
        d.update_tags(**tags)
        for i, bt in enumerate(btags):
            sc = next(f["scale"] for f in spec["features"] if f["name"] == desc[i])
            d.update_tags(i + 1, **{**bt, "scale": str(sc)})
            d.set_band_description(i + 1, desc[i])


@pytest.mark.parametrize(
    ("field", "edit", "accept"),
    [
        (
            "cloud_probability",
            lambda s: s["sensors"]["s2"].update(cloud_probability={"op": ">=", "value": 60}),
            "cloud_mask",
        ),
        ("scale", lambda s: s["features"][0].update(scale=100.0), None),
        ("level", lambda s: s["sensors"]["s2"].update(level="L2A"), "level"),
    ],
)
def test_features_made_otherwise_are_refused_at_map_time(
    cli_features: Path,
    tmp_path: Path,
    field: str,
    edit,  # noqa: ANN001
    accept: str | None,
) -> None:
    (cog,) = list(cli_features.glob("*.tif"))
    bad = tmp_path / "feats" / cog.name
    bad.parent.mkdir()
    _retag(cog, bad, edit)
    p = eulc(
        "map",
        "--features-dir",
        str(bad.parent),
        "--bundle",
        "models/elc10-ndvi-l1",
        "--out",
        str(tmp_path / "m"),
        "--scheduler",
        "sync",
    )
    assert p.returncode == 1 and field in p.stdout + p.stderr, p.stdout + p.stderr
    assert not (tmp_path / "m" / f"{cog.stem}_class.tif").exists()
    if accept:
        _ok(
            eulc(
                "map",
                "--features-dir",
                str(bad.parent),
                "--bundle",
                "models/elc10-ndvi-l1",
                "--out",
                str(tmp_path / "m2"),
                "--scheduler",
                "sync",
                "--accept",
                accept,
            )
        )
        assert _tags(tmp_path / "m2" / f"{cog.stem}_class.tif")["contract"].startswith("checked; accepted:")


def test_an_orbit_swap_is_refused_at_map_time(tmp_path: Path) -> None:
    """ascending features computed from descending passes: the elc10-l1 bundle refuses them."""
    from pipeline.core.featurecog import write_feature_cog

    spec = load_spec("elc10")
    raw = spec.model_dump(mode="json")
    for f in raw["features"]:
        if f.get("orbit") == "ASCENDING":
            f["orbit"] = "DESCENDING"
    from pipeline.core.contract import embedded_spec

    swapped = embedded_spec(raw, "test")
    w = TileId.parse("1kmE4674N2539").window()
    write_feature_cog(
        tmp_path / "f" / "1kmE4674N2539.tif", np.ones((35, *w.shape), np.float32), swapped, w, 2018, "L1C", []
    )
    p = eulc(
        "map",
        "--tiles",
        "1kmE4674N2539",
        "--tile-size",
        "1km",
        "--features-dir",
        str(tmp_path / "f"),
        "--bundle",
        "models/elc10-l1",
        "--out",
        str(tmp_path / "m"),
        "--scheduler",
        "sync",
    )
    assert p.returncode == 1 and "asc_vv_median" in p.stdout + p.stderr and "orbit" in p.stdout + p.stderr


# `eulc select` -> `eulc gee export-tiles --features selection.json` (no --spec; a disagreeing --spec refused):
# tests/test_readme.py::test_the_gee_plans, on the README's own commands


def test_gee_table_export_to_table_to_train(data: Path, tmp_path: Path) -> None:
    """Plan `eulc gee export-table` for real LUCAS points, write each task's CSV as sampleRegions
    does (`system:index`, the feature columns, the point properties `LC1`, `LU1`, `POINT_ID`,
    `.geo`; one file per task, named by the plan), then `eulc table` and `eulc train` on them."""
    src = pd.read_csv(data / SAMPLE)
    pts = lucas_points(src)
    pts.to_csv(tmp_path / "all.csv", index=False)
    # the 40 EEA 100 km cells with most points (about 500 of them): one task each, several classes;
    # all 384 cells' graphs took a minute to build and showed nothing more
    read = read_points(tmp_path / "all.csv")
    top = read["eea_cell_100km"].value_counts().index[:40]
    keep = pts["POINT_ID"].isin(read.loc[read["eea_cell_100km"].isin(top), "POINT_ID"]).to_numpy()
    pts, src = pts[keep], src[keep].reset_index(drop=True)
    assert 400 < len(pts) < 700 and src["LUCAS_LC1"].str[0].nunique() >= 4
    pts.to_csv(tmp_path / "points.csv", index=False)
    plan = tmp_path / "plan"
    _ok(
        eulc(
            "gee",
            "export-table",
            "--points",
            str(tmp_path / "points.csv"),
            "--spec",
            "elc10",
            "--year",
            "2018",
            "--shard-size",
            "500",
            "--out",
            str(plan),
        )
    )
    bands = json.loads((plan / "bands.json").read_text())
    with (plan / "tasks.csv").open() as f:
        tasks = list(csv.DictReader(f))
    assert len(tasks) == 40  # sharded by EEA 100 km cell and size

    by_key = dict(shards(read_points(tmp_path / "points.csv"), 500))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for task in tasks:
        shard = src.set_index("POINT_ID").loc[by_key[task["key"]]["POINT_ID"].to_numpy()].reset_index()
        out = pd.DataFrame({"system:index": [f"{i}_0" for i in range(len(shard))]})
        for name in sorted(bands["bands"]):  # GEE writes the image bands, then the properties
            out[name] = shard[name]
        out["LC1"], out["LU1"], out["POINT_ID"] = shard["LUCAS_LC1"], shard["LUCAS_LU1"], shard["POINT_ID"]
        out[".geo"] = [
            json.dumps({"geodesic": False, "type": "Point", "coordinates": [lo, la]})
            for lo, la in zip(shard["lon"], shard["lat"], strict=True)
        ]
        out.to_csv(downloads / (task["output_uri"].rsplit("/", 1)[-1]), index=False)
    files = sorted(str(p) for p in downloads.glob("*.csv"))
    assert len(files) == len(tasks)
    _ok(eulc("table", *files, "--spec", "elc10", "--out", str(tmp_path / "t.parquet")))
    meta = table_metadata(tmp_path / "t.parquet")
    assert meta["features_digest"] == bands["features_digest"]  # the plan's features are the table's
    table = pd.read_parquet(tmp_path / "t.parquet")
    assert len(table) == len(src) and table["lc1"].notna().all()
    merged = table.set_index("point_id").loc[src["POINT_ID"]]
    np.testing.assert_allclose(merged["ndvi_p50"].to_numpy(float), src["ndvi_p50"].to_numpy(float))
    sel = FeatureSelection.of(load_spec("elc10"), NDVI_FEATURES, "names")
    sel.save(tmp_path / "sel.json")
    _ok(
        eulc(
            "train",
            str(tmp_path / "t.parquet"),
            "--out",
            str(tmp_path / "model"),
            "--features",
            str(tmp_path / "sel.json"),
            "--epochs",
            "2",
            "--preset",
            "mlp",
        )
    )
    bundle = json.loads((tmp_path / "model" / "bundle.json").read_text())
    assert bundle["spec"]["features_digest"] == sel.features_digest


def test_feature_resume_checks_the_file_and_the_inputs(cli_features: Path, tmp_path: Path) -> None:
    """`eulc features` kept a feature COG with corrupted pixels, or one built from older inputs, as
    up to date (issue #14): both are recomputed; an intact one is skipped."""
    import shutil

    out = tmp_path / "f"
    shutil.copytree(cli_features, out)
    (cog,) = list(out.glob("*.tif"))
    good = cog.read_bytes()
    args = [
        "features",
        "--files",
        "eolearn_slovenia",
        "--year",
        "2017",
        "--features",
        "models/elc10-ndvi-l1",
        "--out",
        str(out),
    ]
    p = eulc(*args)
    assert p.returncode == 0 and "up to date" in p.stdout, p.stdout + p.stderr
    damaged = bytearray(good)
    damaged[len(good) // 2 : len(good) // 2 + 64] = bytes(64)  # pixels changed, header intact
    cog.write_bytes(bytes(damaged))
    p = eulc(*args)
    assert p.returncode == 0 and "wrote" in p.stdout and cog.read_bytes() == good
    log = json.loads((out / ".eulc-features.json").read_text())
    log[cog.name]["key"] = "an-older-catalogue"  # what a change of the inputs does to the key
    (out / ".eulc-features.json").write_text(json.dumps(log))
    p = eulc(*args)
    assert p.returncode == 0 and "wrote" in p.stdout
