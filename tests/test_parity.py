"""Parity of the two engines (issue #7): for the same spec, the local engine's feature names,
order, scaling and mask thresholds equal what the serialized GEE graph contains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from gee_scripts.images import export_image, feature_image
from pipeline.spec import load_spec
from tiles.featurecog import write_feature_cog
from tiles.features import _mask_tests
from tiles.grid import TileId

from .test_gee import _find, _region, _value, gee  # noqa: F401 - the offline ee fixture


@pytest.mark.parametrize("spec_name", ["elc10", "bridge-lc-196"])
def test_names_order_and_scaling(gee, spec_name: str, tmp_path: Path) -> None:  # noqa: F811
    spec = load_spec(spec_name)
    spec = spec.subset([f.name for f in spec.features  # texture and derived features: not built for GEE yet
                        if f.stat != "texture_sd" and not f.derived])
    img = export_image(spec, 2018, _region())
    gee_names = _value(_find(img, "Image.select")[0].args["bandSelectors"])
    mult = [m for m in _find(img, "Image.multiply") if "image2" in m.args]
    consts = [_value(c.args["value"]) for m in mult for c in _find(m.args["image2"], "Image.constant")]
    gee_scales = next(c for c in consts if isinstance(c, list) and len(c) == len(spec.features))
    # the local engine's output: a feature COG written for the same spec
    w = TileId.parse("1kmE4674N2539").window()
    cog = write_feature_cog(tmp_path / "f.tif", np.zeros((len(spec.features), *w.shape), np.float32), spec, w,
                            2018, "L2A", [])
    with rasterio.open(cog) as s:
        local_names = list(s.descriptions)
        local_scales = [float(s.tags(i + 1)["scale"]) for i in range(s.count)]
    assert local_names == gee_names == spec.names
    assert local_scales == pytest.approx([float(v) for v in gee_scales])


def test_cloud_and_scl_thresholds(gee) -> None:  # noqa: F811
    spec = load_spec("bridge-lc-196")
    s2 = spec.subset([f.name for f in spec.features if f.sensor == "s2"])
    img = feature_image(s2, 2022, _region())
    (gee_limit,) = [_value(o.args["image2"].args["value"]) for o in _find(img, "Image.lte")]  # keep prob <= limit
    gee_scl = {_value(o.args["image2"].args["value"]) for o in _find(img, "Image.neq")}  # keep SCL != c
    sensor = spec.sensors["s2"]
    tests = dict(_mask_tests(sensor.cloud_probability, sensor.scl_mask))
    probs = np.array([gee_limit - 1, gee_limit, gee_limit + 0.5, gee_limit + 1], np.float32)
    np.testing.assert_array_equal(~tests["CLP"](probs), probs <= gee_limit)  # local keeps what GEE keeps
    scl = np.arange(12)
    np.testing.assert_array_equal(~tests["SCL"](scl), ~np.isin(scl, sorted(gee_scl)))
    pct = {tuple(_value(o.args["percentiles"])) for o in _find(img, "Reducer.percentile")}
    assert pct == {tuple(sorted({int(f.percentile) for f in s2.features if f.percentile is not None}))}
