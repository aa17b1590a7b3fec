"""Bundles as STAC MLM items (issue #30 part 2): every bundle folder holds an ``item.json`` that
stac-model validates and that agrees with the files beside it; map runs link it."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
from safetensors.numpy import load_file
from stac_model.schema import MLModelProperties

from model.bundle import load_bundle
from model.mlm import bundle_item, item_dict, validate_item
from pipeline.core.errors import BundleError
from pipeline.stages.pretrained import models_dir

SHIPPED = sorted(p.name for p in models_dir().iterdir() if (p / "bundle.json").is_file())


def _mlm(d: dict) -> MLModelProperties:
    """stac-model's own parse of the item's ``mlm:`` fields."""
    return MLModelProperties.model_validate(
        {k.removeprefix("mlm:"): v for k, v in d["properties"].items() if k.startswith("mlm:")}
    )


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_bundle_items_validate_and_agree_with_their_files(name: str) -> None:
    """The committed item is what eulc writes today (not stale), stac-model parses it, and each
    field matches its source read here without eulc: band order and normaliser statistics from
    bundle.json, units and scales from its embedded spec, the classes and colours of its legend,
    the weights' SHA-256 and parameter count from the safetensors file itself."""
    folder = models_dir() / name
    d = json.loads((folder / "item.json").read_text(encoding="utf-8"))
    assert d == item_dict(bundle_item(folder)), "item.json is stale: rerun scripts/train_pretrained.py --cards-only"
    mlm = _mlm(d)
    meta = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))
    feats = meta["features"]
    assert mlm.name == d["id"] == name
    assert [b["name"] for b in d["properties"]["bands"]] == feats == list(mlm.input[0].bands or [])
    assert mlm.input[0].input.shape == [-1, len(feats)]
    scaling = [s.model_dump() for s in mlm.input[0].value_scaling or []]
    assert [s["mean"] for s in scaling] == meta["normalizer"]["center"]
    assert [s["stddev"] for s in scaling] == meta["normalizer"]["scale"]
    spec = {f["name"]: f for f in meta["spec"]["feature_spec"]["features"]}
    sensors = meta["spec"]["feature_spec"]["sensors"]
    for band in d["properties"]["bands"]:
        f = spec[band["name"]]
        assert band["raster:scale"] * f["scale"] == pytest.approx(1.0)
        kind = sensors[f["sensor"]]["kind"]
        if kind == "s1" and not f.get("derived"):  # a statistic of σ⁰ in dB
            assert band["unit"] == "dB", band
        else:  # reflectances, indices and ratios of dB values are unitless
            assert "unit" not in band, band
    classes = [
        (c.properties["value"], c.properties["name"], c.properties["color_hint"]) for c in mlm.output[0].classes or []
    ]
    assert classes == [(c["id"], c["name"], c["colour"].lstrip("#").upper()) for c in meta["legend"]["classes"]]
    assert mlm.output[0].result.shape == [-1, len(classes)]
    wfile = folder / "weights.safetensors"
    assert d["assets"]["weights"]["file:checksum"] == "1220" + hashlib.sha256(wfile.read_bytes()).hexdigest()
    assert d["assets"]["weights"]["href"] == "./weights.safetensors"
    assert mlm.total_parameters == sum(a.size for a in load_file(str(wfile)).values())
    assert d["properties"]["eulc:model_digest"] == load_bundle(folder).digest
    assert d["properties"]["start_datetime"].startswith(str(meta["spec"]["feature_spec"]["year"]))
    for asset in d["assets"].values():  # every asset is a file of the bundle
        assert (folder / asset["href"]).is_file(), asset["href"]
    assert {"model_card", "ood", "bundle"} <= set(d["assets"])


def test_validation_refuses_what_the_mlm_extension_forbids() -> None:
    """validate_item: an unknown task, an input band the item does not define, a model asset
    without its artifact type, and a missing schema each fail, naming the file."""
    folder = models_dir() / SHIPPED[0]
    good = item_dict(bundle_item(folder))
    where = folder / "item.json"
    assert validate_item(good, where).name == SHIPPED[0]
    bad = copy.deepcopy(good)
    bad["properties"]["mlm:tasks"] = ["land-cover-ish"]
    with pytest.raises(BundleError, match="not a valid STAC MLM item"):
        validate_item(bad, where)
    bad = copy.deepcopy(good)
    bad["properties"]["bands"] = bad["properties"]["bands"][1:]
    with pytest.raises(BundleError, match="names bands the item does not define"):
        validate_item(bad, where)
    bad = copy.deepcopy(good)
    del bad["assets"]["weights"]["mlm:artifact_type"]
    with pytest.raises(BundleError, match="mlm:artifact_type"):
        validate_item(bad, where)
    bad = copy.deepcopy(good)
    bad["stac_extensions"] = bad["stac_extensions"][1:]
    with pytest.raises(BundleError, match="does not declare"):
        validate_item(bad, where)


def test_a_trained_bundle_and_its_maps_carry_the_item(
    small_bundle: Path, slovenia_features: Path, tmp_path: Path
) -> None:
    """`train_from_table` writes item.json with the bundle (its id the folder's name, its OOD
    assets listed); a map run copies it as model.json with absolute hrefs to the very weights,
    and each tile item links it as derived_from with its mlm:name."""
    from tiles.mapping.runner import run_map

    d = json.loads((small_bundle / "item.json").read_text(encoding="utf-8"))
    assert _mlm(d).name == small_bundle.name and "ood" in d["assets"]
    assert d == item_dict(bundle_item(small_bundle))
    out = tmp_path / "run"
    s = run_map(None, small_bundle, out, features_files=[slovenia_features], scheduler="sync")
    assert s.ok and s.done == 1
    copy_ = json.loads((out / "model.json").read_text(encoding="utf-8"))
    weights = Path(copy_["assets"]["weights"]["href"])
    assert weights.is_absolute() and weights == (small_bundle / "weights.safetensors").resolve()
    assert copy_["assets"]["weights"]["file:checksum"] == "1220" + hashlib.sha256(weights.read_bytes()).hexdigest()
    tiles = [p for p in out.glob("*.json") if p.name not in {"model.json", "catalog.json"}]
    assert len(tiles) == 1
    item = json.loads(tiles[0].read_text(encoding="utf-8"))
    links = [ln for ln in item["links"] if ln["rel"] == "derived_from"]
    assert links == [
        {
            "rel": "derived_from",
            "href": "./model.json",
            "type": "application/geo+json",
            "mlm:name": small_bundle.name,
            "processing:level": "L4",
        }
    ]
    assert {ln["rel"] for ln in item["links"]} == {"root", "parent", "derived_from"}
    again = run_map(None, small_bundle, out, features_files=[slovenia_features], scheduler="sync")
    assert again.ok and again.skipped == 1  # model.json is the run's own file: a rerun resumes
