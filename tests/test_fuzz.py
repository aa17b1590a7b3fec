"""Fuzzed readers of user files (issue #26): each reader, fed a real file with random damage
(bytes flipped, truncated, JSON values replaced), either returns a valid result or raises an
error the CLI turns into exit status 2 with one line (:func:`pipeline.app.cli.classify`), never
an unexpected exception (exit 3, "a bug in eulc").

Readers: CSV exports and GeoParquet FeatureTables, bundle JSON, feature selections, the map's
SQLite manifest, stack manifests (YAML), static STAC items, and feature COG tags.

In CI each target runs a few derandomized examples (``EULC_FUZZ_EXAMPLES`` unset: 12 each); a
longer, random run on demand::

    EULC_FUZZ_EXAMPLES=2000 python -m pytest -q -p no:cacheprovider tests/test_fuzz.py
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipeline.app.cli import classify

from .conftest import NDVI_FEATURES, SAMPLE

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "models" / "elc10-ndvi-l1"
LONG = "EULC_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(
    max_examples=int(os.environ.get("EULC_FUZZ_EXAMPLES", "12")),
    deadline=None,
    derandomize=not LONG,
    suppress_health_check=list(HealthCheck),
    database=None,
    phases=list(Phase) if LONG else [Phase.explicit, Phase.generate],
)  # shrinking only in the long run


def _ends_in_exit_2_or_returns(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except Exception as e:  # noqa: BLE001 - the point: which exceptions come out
        known = classify(e)
        assert known is not None and known[0] == 2, f"{type(e).__name__}: {e}"
        assert "\n" not in known[1].strip(), known[1]
        return None


@st.composite
def damaged(draw: st.DrawFn, good: bytes) -> bytes:
    """``good`` with a few bytes replaced, a slice removed or duplicated, or cut short."""
    b = bytearray(good)
    for _ in range(draw(st.integers(0, 6))):
        if not b:
            break
        i = draw(st.integers(0, len(b) - 1))
        op = draw(st.sampled_from(["flip", "cut", "dup", "ins"]))
        if op == "flip":
            b[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del b[i : i + draw(st.integers(1, 64))]
        elif op == "dup":
            b[i:i] = b[i : i + draw(st.integers(1, 64))]
        else:
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
    if draw(st.booleans()):
        b = b[: draw(st.integers(0, len(b)))]
    return bytes(b)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
    max_leaves=6,
)


@st.composite
def edited_json(draw: st.DrawFn, good: Any) -> Any:
    """``good`` with a few values (at any depth) replaced by random JSON, or keys dropped."""
    doc = json.loads(json.dumps(good))
    for _ in range(draw(st.integers(1, 3))):
        node = doc
        for _ in range(draw(st.integers(0, 4))):
            kids = (
                list(node.items())
                if isinstance(node, dict)
                else list(enumerate(node))
                if isinstance(node, list)
                else []
            )
            conts = [(k, v) for k, v in kids if isinstance(v, (dict, list)) and v]
            if not conts:
                break
            node = draw(st.sampled_from(conts))[1]
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if draw(st.booleans()):
                node[key] = draw(JSON_VALUES)
            else:
                del node[key]
        elif isinstance(node, list) and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(JSON_VALUES)
    return doc


@pytest.fixture(scope="module")
def sample_csv_head(data: Path) -> bytes:
    """The header and first 40 rows of the real LUCAS ELC10 sample export."""
    return b"".join((data / SAMPLE).read_bytes().splitlines(keepends=True)[:41])


@FUZZ
@given(st.data())
def test_fuzz_csv_export(sample_csv_head: bytes, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    from pipeline.core.spec import load_spec
    from pipeline.table import build_feature_table

    p = tmp_path_factory.mktemp("csv") / "x.csv"
    p.write_bytes(data.draw(damaged(sample_csv_head)))
    _ends_in_exit_2_or_returns(lambda: build_feature_table([p], load_spec("elc10")))


@FUZZ
@given(st.data())
def test_fuzz_feature_table_parquet(
    sample_table: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    from pipeline.table import read_feature_table

    p = tmp_path_factory.mktemp("pq") / "t.parquet"
    p.write_bytes(data.draw(damaged(sample_table.read_bytes())))
    _ends_in_exit_2_or_returns(lambda: read_feature_table(p))


def _bundle_with_damaged(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, name: str, raw_bytes: bool = False
) -> Path:
    """A copy of the shipped bundle whose JSON file ``name`` has values replaced (or, with
    ``raw_bytes``, its bytes damaged)."""
    b = tmp_path_factory.mktemp("b") / "b"
    shutil.copytree(BUNDLE, b)
    if raw_bytes:
        (b / name).write_bytes(data.draw(damaged((BUNDLE / name).read_bytes())))
    else:
        (b / name).write_text(json.dumps(data.draw(edited_json(json.loads((BUNDLE / name).read_text())))))
    return b


@FUZZ
@given(st.data())
def test_fuzz_bundle_json(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    from model.bundle import load_bundle

    b = _bundle_with_damaged(tmp_path_factory, data, "bundle.json", raw_bytes=data.draw(st.booleans()))
    got = _ends_in_exit_2_or_returns(lambda: load_bundle(b))
    if got is not None:  # a bundle that loads predicts finite probabilities that sum to 1
        import numpy as np

        from model.infer import predict_proba

        x = np.random.default_rng(0).normal(size=(8, len(got.features))).astype(np.float32)
        prob = predict_proba(got.model, got.normalizer.transform(x), np.zeros((8, 2), np.float32))
        assert np.isfinite(prob).all() and np.allclose(prob.sum(1), 1, atol=1e-4)


@FUZZ
@given(st.data())
def test_fuzz_ood_json(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    from model.bundle import load_bundle

    b = _bundle_with_damaged(tmp_path_factory, data, "ood.json")
    _ends_in_exit_2_or_returns(lambda: load_bundle(b).ood())


@FUZZ
@given(st.data())
def test_fuzz_feature_selection(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    from pipeline.core.selection import resolve_selection

    good = {"spec": "elc10", "names": NDVI_FEATURES, "method": "names"}
    p = tmp_path_factory.mktemp("s") / "sel.json"
    p.write_text(json.dumps(data.draw(edited_json(good))))
    _ends_in_exit_2_or_returns(lambda: resolve_selection(None, str(p), "elc10"))


@pytest.fixture(scope="module")
def manifest_bytes(slovenia_features: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from tiles.mapping.runner import run_map

    out = tmp_path_factory.mktemp("m")
    assert run_map(None, BUNDLE, out, features_files=[slovenia_features], scheduler="sync").ok
    return (out / "manifest.sqlite").read_bytes()


@FUZZ
@given(st.data())
def test_fuzz_map_manifest(
    manifest_bytes: bytes, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    from tiles.mapping.manifest import Manifest

    p = tmp_path_factory.mktemp("db") / "manifest.sqlite"
    p.write_bytes(data.draw(damaged(manifest_bytes)))

    def read() -> Any:
        m = Manifest(p)
        try:
            return [m.entry(r.tile_id) for r in m.rows()]
        finally:
            m.close()

    _ends_in_exit_2_or_returns(read)


@FUZZ
@given(st.data())
def test_fuzz_stack_manifest(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    import yaml

    from tiles.engine.stack import load_manifest

    good = yaml.safe_load((ROOT / "tiles" / "stacks" / "eolearn_slovenia.yaml").read_text())
    p = tmp_path_factory.mktemp("y") / "m.yaml"
    p.write_text(yaml.safe_dump(data.draw(edited_json(good))))
    _ends_in_exit_2_or_returns(lambda: load_manifest(p))


@FUZZ
@given(st.data())
def test_fuzz_static_stac_item(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    import datetime as dt

    import pystac

    from tiles.engine.stac_load import items_from_catalog

    root = tmp_path_factory.mktemp("c")
    cat = pystac.Catalog("c", "fuzzed")
    it = pystac.Item(
        "i",
        {"type": "Point", "coordinates": [14.5, 46.0]},
        [14.5, 46.0, 14.5, 46.0],
        dt.datetime(2017, 6, 1, tzinfo=dt.UTC),
        {"eo:cloud_cover": 3},
    )
    it.add_asset("B04", pystac.Asset("./b04.tif", media_type=pystac.MediaType.GEOTIFF))
    cat.add_item(it)
    cat.normalize_hrefs(str(root / "cat"))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    item = next((root / "cat").rglob("i.json"))
    item.write_text(json.dumps(data.draw(edited_json(json.loads(item.read_text())))))
    _ends_in_exit_2_or_returns(lambda: items_from_catalog(root / "cat" / "catalog.json"))


@FUZZ
@given(st.data())
def test_fuzz_feature_cog_tags(
    slovenia_features: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """A feature COG whose eulc tags were edited (by hand or by another program): the map's
    contract check either accepts it or refuses it in one line."""
    import rasterio

    from model.bundle import load_bundle
    from pipeline.core.reader import FeatureReader
    from tiles.mapping.predict import Predictor

    p = tmp_path_factory.mktemp("t") / "f.tif"
    shutil.copy(slovenia_features, p)
    with rasterio.open(p, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        tags = ds.tags()
        key = data.draw(st.sampled_from(sorted(tags)))
        value = data.draw(
            st.one_of(st.text(max_size=20), JSON_VALUES.map(json.dumps), st.just(tags[key][: len(tags[key]) // 2]))
        )
        ds.update_tags(**{key: value})
    pred = Predictor(load_bundle(BUNDLE))

    def read() -> Any:
        with FeatureReader(p, pred.features) as r:
            return pred.check_features(r)

    _ends_in_exit_2_or_returns(read)
