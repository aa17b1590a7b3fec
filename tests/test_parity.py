"""Parity of the two engines (issue #7): for the same spec, the local engine's feature names,
order, scaling and mask thresholds equal what the serialized GEE graph contains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from gee_scripts.images import export_image, feature_image
from pipeline.core.spec import load_spec
from tiles.engine.features import _mask_tests

from .conftest import NDVI_FEATURES
from .test_features import _on_grid, _source
from .test_gee import _find, _region, _value, gee  # noqa: F401 - the offline ee fixture


def _gee_names_and_scales(spec) -> tuple[list[str], list[float]]:  # noqa: ANN001
    img = export_image(spec, 2018, _region())
    gee_names = _value(_find(img, "Image.select")[0].args["bandSelectors"])
    mult = [m for m in _find(img, "Image.multiply") if "image2" in m.args]
    consts = [_value(c.args["value"]) for m in mult for c in _find(m.args["image2"], "Image.constant")]
    gee_scales = next(c for c in consts if isinstance(c, list) and len(c) == len(spec.features))
    return gee_names, [float(v) for v in gee_scales]


@pytest.mark.parametrize("spec_name", ["elc10", "bridge-lc-196"])
def test_gee_builds_every_feature_in_spec_order_and_scale(gee, spec_name: str) -> None:  # noqa: F811
    spec = load_spec(spec_name)  # whole: texture and derived features build on GEE too
    names, scales = _gee_names_and_scales(spec)
    assert names == spec.names and scales == pytest.approx([f.scale for f in spec.features])


def test_local_engine_output_matches_the_gee_graph(gee, data: Path, slovenia_features: Path) -> None:  # noqa: F811
    """The local engine's real output (the Slovenia NDVI features), not a file written from the spec:
    its bands are the GEE image's bands, and its values are physical NDVI times GEE's scale.
    Mutation: storing NDVI unscaled (or x100) in `tiles.engine.features` fails the last assert."""
    spec = load_spec("elc10").subset(NDVI_FEATURES)
    names, scales = _gee_names_and_scales(spec)
    with rasterio.open(slovenia_features) as s:
        local = {n: s.read(i + 1) for i, n in enumerate(s.descriptions)}
    assert list(local) == names
    times, ndvi, clp, valid, profile = _source(data)
    keep = times.year == 2017
    v = np.where((clp[keep] < 40) & (valid[keep] == 1), ndvi[keep], np.nan)
    physical = _on_grid(np.nanpercentile(v, 50, axis=0), profile, slovenia_features)  # NDVI, unitless
    ok = np.isfinite(physical)
    np.testing.assert_allclose(local["ndvi_p50"][ok], physical[ok] * scales[names.index("ndvi_p50")], rtol=1e-5)


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
