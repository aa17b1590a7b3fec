from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.core.errors import SpecError
from pipeline.core.spec import load_spec, shipped_specs

from .conftest import ELC10


def test_elc10_describes_the_real_table_columns(data: Path) -> None:
    spec = load_spec("elc10")
    cols = set(pd.read_csv(data / ELC10, nrows=1).columns)
    assert len(spec.names) == 35
    assert set(spec.names) <= cols
    # every numeric feature column of the real export is described
    meta = {
        "POINT_ID",
        "LC",
        "LC_num",
        "source",
        "votes",
        "x_3035",
        "y_3035",
        "lon",
        "lat",
        "eea_cell_100km",
        "eea_cell_10km",
        "biogeo_10km",
        "s2_source_file",
        "s1_source_file",
    }
    assert cols - meta == set(spec.names)


def test_elc10_facts_from_sources() -> None:
    spec = load_spec("elc10")
    s2 = spec.sensors["s2"]
    assert s2.level == "L1C" and s2.cloud_probability is not None
    assert s2.cloud_probability.model_dump() == {"op": ">=", "value": 40}
    assert spec.feature("blue_median").scale == 1e7  # DN (x1e4) x 1000
    assert spec.feature("ndvi_p50").scale == 1000
    assert spec.feature("ndvi_spring").window.months == (9, 10, 11)  # swapped names in ELC10
    assert spec.feature("ndvi_fall").window.months == (3, 4, 5)
    assert spec.expression(spec.feature("ndsi_p5")) == "(B3 - B11) / (B3 + B11)"
    assert spec.inputs(spec.feature("asc_dpol_median")) == {"VH", "VV"}
    assert spec.feature("ndvi_texture_sd").kernel_radius_px == 3


def _write(tmp_path: Path, raw: dict) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    raw = load_spec("elc10").model_dump(mode="json")
    raw["features"][0]["statistic"] = "median"
    p = _write(tmp_path, raw)
    with pytest.raises(SpecError) as e:
        load_spec(p)
    assert "features.0.statistic" in str(e.value) and str(p) in str(e.value)


def test_bad_stat_and_unknown_sensor_are_rejected(tmp_path: Path) -> None:
    raw = load_spec("elc10").model_dump(mode="json")
    raw["features"][0]["stat"] = "p101"
    with pytest.raises(SpecError, match="stat"):
        load_spec(_write(tmp_path, raw))
    raw = load_spec("elc10").model_dump(mode="json")
    raw["features"][0]["sensor"] = "s3"
    with pytest.raises(SpecError, match="s3"):
        load_spec(_write(tmp_path, raw))


def test_subset_keeps_given_order_and_rejects_unknown() -> None:
    spec = load_spec("elc10")
    sub = spec.subset(["ndvi_p95", "blue_median"])
    assert sub.names == ["ndvi_p95", "blue_median"]
    assert sub.digest() != spec.digest()
    with pytest.raises(SpecError, match="ndvi_p99"):
        spec.subset(["ndvi_p99"])


def test_unknown_shipped_name() -> None:
    assert "elc10" in shipped_specs()
    with pytest.raises(SpecError, match="elc10"):
        load_spec("elc11")


def test_fields_no_engine_honours_are_refused() -> None:
    """A spec field works in both engines or is refused at load (issue #13)."""
    import json

    from pipeline.core.spec import FeatureSpec

    base = load_spec("elc10").model_dump(mode="json")
    for edit, msg in [
        (lambda s: s["features"][0].update(orbit="ASCENDING"), "orbit ASCENDING is for Sentinel-1"),
        (lambda s: s["features"][0].update(stat="value"), "stat 'value' is for DEM"),
        (lambda s: s["sensors"]["s1"].update(units="reflectance"), "s1 sensor's units must be one of"),
    ]:
        raw = json.loads(json.dumps(base))
        edit(raw)
        with pytest.raises(ValueError, match=msg):
            FeatureSpec.model_validate(raw)
