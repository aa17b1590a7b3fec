"""AlphaEarth embeddings as a feature source (issue #30 part 4).

The Earth Engine graphs are built offline against earthengine-api's real algorithm signatures;
the exports are laid out as Earth Engine writes them (a `sampleRegions` CSV per task, a GeoTIFF
per tile with the plan's `bands.json`). The embedding values are synthetic (no export exists in
the shared data): each point's vector is its Level-1 class's direction plus seeded noise, made
unit-length as AlphaEarth's are, so the map's classes can be predicted from the tile's layout.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import ee
import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine

from gee_scripts.images import feature_image
from gee_scripts.session import offline
from pipeline.core.contract import compare_features, feature_semantics, features_digest
from pipeline.core.errors import ContractError, SpecError
from pipeline.core.lucas import read_points, shards
from pipeline.core.spec import FeatureSpec, load_spec
from pipeline.table import table_metadata

from .conftest import SAMPLE, lucas_points
from .test_cli import eulc
from .test_gee import GOLDEN, _find, _golden, _region, _value
from .test_seams import _find_arg

CATALOGUE_BANDS = [f"A{i:02d}" for i in range(64)]
"""The bands of GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL as the Earth Engine catalogue lists them."""
CELL = "1kmE4670N2530"
LEVEL1 = {"A": 4, "B": 6, "C": 0, "D": 0, "E": 1, "F": 2, "G": 5, "H": 3}
"""LC1 section → Level-1 id, from pipeline/legends/level1.csv and FEATURES.md's grouping."""


def _ok(p) -> None:  # noqa: ANN001
    assert p.returncode == 0, (p.stdout[-1500:], p.stderr[-3000:])


def _directions(seed: int = 30) -> np.ndarray:
    """One unit vector (64,) per Level-1 id 0..6, seeded."""
    d = np.random.default_rng(seed).normal(size=(7, 64))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _embed(ids: np.ndarray, rng: np.random.Generator, noise: float = 0.35) -> np.ndarray:
    """Unit-length embeddings (N, 64) around each id's direction."""
    v = _directions()[ids] + noise * rng.normal(size=(len(ids), 64)) / 8
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_the_shipped_specs_hold_the_catalogue_bands_and_elc10_unchanged() -> None:
    alone, beside, elc10 = load_spec("alphaearth"), load_spec("elc10-alphaearth"), load_spec("elc10")
    assert [f.source for f in alone.features] == CATALOGUE_BANDS
    assert beside.names == elc10.names + alone.names
    # ELC10's 35 keep their meaning (a table or bundle of elc10 features fits either spec) ...
    assert features_digest(beside, elc10.names) == features_digest(elc10)
    # ... and an embedding band's contract entry is its own: sensor, unitless, the model version
    sem = feature_semantics(alone, "aef_a07")
    assert (sem["sensor"], sem["units"], sem["level"], sem["source"], sem["stat"]) == (
        "embedding",
        "unitless",
        "V1",
        "A07",
        "value",
    )
    v2 = alone.model_copy(update={"sensors": {"aef": alone.sensors["aef"].model_copy(update={"level": "V2"})}})
    with pytest.raises(ContractError, match="aef_a07.*level='V1'.*'V2'"):
        compare_features(alone, v2, ["aef_a07"], "bundle", "tiles")


@pytest.mark.parametrize(
    "change,match",
    [
        ({"stat": "median"}, "stat 'value' only"),
        ({"window": {"months": [6, 7, 8]}}, "no months to choose"),
    ],
)
def test_an_embedding_feature_takes_its_value_only(change: dict, match: str) -> None:
    raw = load_spec("alphaearth").model_dump()
    raw["features"][0].update(change)
    with pytest.raises(ValueError, match=match):
        FeatureSpec.model_validate(raw)
    raw = load_spec("alphaearth").model_dump()
    raw["sensors"]["aef"]["units"] = "reflectance"
    with pytest.raises(ValueError, match="embedding sensor's units must be one of \\['unitless'\\]"):
        FeatureSpec.model_validate(raw)


def test_the_earth_engine_graph_samples_the_year_of_the_annual_collection() -> None:
    spec = load_spec("alphaearth")
    with offline():
        img = feature_image(spec, 2018, _region())
        (load,) = _find(img, "ImageCollection.load")
        assert _value(load.args["id"]) == "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL"
        text = json.dumps(ee.serializer.encode(img, for_cloud_api=True))
        (rng,) = _find(img, "DateRange")  # filterDate: the calendar year, the images dated 1 January
        assert (_value(rng.args["start"]), _value(rng.args["end"])) == ("2018-01-01", "2019-01-01")
        assert "system:time_start" in text
        assert _find(img, "ImageCollection.mosaic")
        selects = [_value(s.args["bandSelectors"]) for s in _find(img, "Image.select")]
        assert CATALOGUE_BANDS in selects  # the catalogue's band names are read ...
        assert selects[0] == spec.names  # ... and the image's bands are the spec's, in order
        _golden("embedding", ee.serializer.encode(img, for_cloud_api=True))
        with pytest.raises(SpecError, match="2016 is outside GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL.*2017"):
            feature_image(spec, 2016, _region())
    assert (GOLDEN / "embedding.json").is_file()


def test_the_local_engine_refuses_embeddings_in_one_line(tmp_path: Path) -> None:
    p = eulc(
        "features", "--files", "eolearn_slovenia", "--year", "2017", "--spec", "elc10-alphaearth",
        "--out", str(tmp_path / "f"),
    )  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    line = p.stderr.strip()
    assert (
        "\n" not in line
        and "aef_a00" in line
        and "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL" in line
        and "--features-dir" in line
    )
    assert not (tmp_path / "f").exists()  # refused before anything is written


def test_an_embedding_export_becomes_a_table_a_bundle_and_a_map(data: Path, tmp_path: Path) -> None:
    """`eulc gee export-table` → CSVs laid out as sampleRegions writes them → `eulc table` →
    `eulc train` → `eulc gee export-tiles` → a GeoTIFF laid out as Export.image writes it →
    `eulc map`: the map's classes are the ones the tile's layout was drawn from."""
    src = pd.read_csv(data / SAMPLE)
    src = src[src["LUCAS_LC1"].str[0].isin(list("BCE"))]  # cropland, woodland, grassland
    pts = lucas_points(src)
    pts.to_csv(tmp_path / "all.csv", index=False)
    read = read_points(tmp_path / "all.csv")
    top = read["eea_cell_100km"].value_counts().index[:70]
    keep = pts["POINT_ID"].isin(read.loc[read["eea_cell_100km"].isin(top), "POINT_ID"]).to_numpy()
    pts = pts[keep]
    assert 500 < len(pts) < 800
    pts.to_csv(tmp_path / "points.csv", index=False)
    plan = tmp_path / "plan"
    _ok(
        eulc(
            "gee", "export-table", "--points", str(tmp_path / "points.csv"), "--spec", "alphaearth",
            "--year", "2018", "--shard-size", "500", "--out", str(plan),
        )
    )  # fmt: skip
    bands = json.loads((plan / "bands.json").read_text())
    assert bands["bands"] == load_spec("alphaearth").names
    graphs = list((plan / "graphs").glob("*.json"))
    assert graphs and all("GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL" in g.read_text() for g in graphs)
    with (plan / "tasks.csv").open() as f:
        tasks = list(csv.DictReader(f))
    rng = np.random.default_rng(7)
    by_key = dict(shards(read_points(tmp_path / "points.csv"), 500))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    truth = {}
    for task in tasks:
        shard = pts.set_index("POINT_ID").loc[by_key[task["key"]]["POINT_ID"].to_numpy()].reset_index()
        ids = shard["LC1"].str[0].map(LEVEL1).to_numpy()
        emb = _embed(ids, rng)
        out = pd.DataFrame({"system:index": [f"{i}_0" for i in range(len(shard))]})
        for j, name in enumerate(bands["bands"]):  # GEE writes the image bands, then the properties
            out[name] = emb[:, j]
        out["LC1"], out["LU1"], out["POINT_ID"] = shard["LC1"], shard["LU1"], shard["POINT_ID"]
        out[".geo"] = [
            json.dumps({"geodesic": False, "type": "Point", "coordinates": [lo, la]})
            for lo, la in zip(shard["TH_LONG"], shard["TH_LAT"], strict=True)
        ]
        out.to_csv(downloads / task["output_uri"].rsplit("/", 1)[-1], index=False)
        truth.update(dict(zip(shard["POINT_ID"], emb[:, 5], strict=True)))
    table_path = tmp_path / "t.parquet"
    _ok(
        eulc(
            "table", *sorted(str(p) for p in downloads.glob("*.csv")), "--spec", "alphaearth", "--out", str(table_path)
        )
    )
    meta = table_metadata(table_path)
    assert meta["features_digest"] == bands["features_digest"] == features_digest(load_spec("alphaearth"))
    table = pd.read_parquet(table_path)
    assert len(table) == len(pts)
    np.testing.assert_allclose(
        table.set_index("point_id")["aef_a05"].loc[list(truth)].to_numpy(float), list(truth.values()), atol=1e-6
    )
    model = tmp_path / "model"
    _ok(eulc("train", str(table_path), "--out", str(model), "--epochs", "40", "--preset", "mlp"))
    bundle = json.loads((model / "bundle.json").read_text())
    assert bundle["spec"]["features_digest"] == bands["features_digest"]

    tiles = tmp_path / "tiles_plan"
    _ok(eulc("gee", "export-tiles", "--tiles", CELL, "--spec", "alphaearth", "--year", "2018", "--out", str(tiles)))
    with (tiles / "tasks.csv").open() as f:
        (task,) = list(csv.DictReader(f))
    graph = json.loads((tiles / "graphs" / f"{CELL}.json").read_text())
    assert "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL" in json.dumps(graph["expression"])
    # the tile as Export.image writes it: float32, noData -32768 where masked, no band names
    h = w = 100
    ids = np.full((h, w), LEVEL1["C"])  # woodland on the left, cropland on the right, a masked strip
    ids[:, 50:] = LEVEL1["B"]
    tile = _embed(ids.ravel(), rng).T.reshape(64, h, w).astype(np.float32)
    tile[:, 90:, :] = -32768
    transform = _find_arg(graph, "crsTransform")  # Image.reproject(crs, crsTransform)
    assert transform[2] == 4670000 and transform[5] == 2531000  # the cell's top-left corner (EPSG:3035)
    gee = tmp_path / "gee_tiles"
    gee.mkdir()
    with rasterio.open(
        gee / task["output_uri"].rsplit("/", 1)[-1], "w", driver="GTiff", dtype="float32", count=64, width=w,
        height=h, crs="EPSG:3035", transform=Affine(*transform), nodata=-32768, tiled=True, blockxsize=64,
        blockysize=64,
    ) as dst:  # fmt: skip
        dst.write(tile)
    (gee / "bands.json").write_text((tiles / "bands.json").read_text())
    maps = tmp_path / "maps"
    _ok(
        eulc(
            "map", "--tiles", CELL, "--features-dir", str(gee), "--bundle", str(model), "--out", str(maps),
            "--scheduler", "sync",
        )
    )  # fmt: skip
    with rasterio.open(maps / f"{CELL}_class.tif") as s:
        cls, tags = s.read(1), s.tags()
    assert tags["features_digest"] == bands["features_digest"] and tags["contract"] == "checked"
    assert (cls[90:] == 255).all()
    assert (cls[:90, :50] == LEVEL1["C"]).mean() > 0.95 and (cls[:90, 50:] == LEVEL1["B"]).mean() > 0.95
