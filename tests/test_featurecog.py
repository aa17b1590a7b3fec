"""Compact feature COGs (issue #16): int16 with the spec's scale as GDAL band metadata, nodata
−32768 (the GEE export's layout), read back in stored units; float32 COGs still map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from pipeline.core.reader import FeatureReader
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import FeatureSpec, load_spec
from tiles.engine.run import features_from_stack

from .conftest import NDVI_FEATURES


def _int16_spec() -> FeatureSpec:
    raw = load_spec("elc10").subset(NDVI_FEATURES).model_dump(mode="json")
    raw["export_dtype"] = "int16"  # NDVI x 1000 fits 16 bits
    return FeatureSpec.model_validate(raw)


def test_int16_feature_cog_reads_back_as_the_float_one_rounded(
    data: Path, slovenia_features: Path, tmp_path: Path
) -> None:
    spec = _int16_spec()
    out = features_from_stack(
        "eolearn_slovenia", spec, FeatureSelection.of(spec, NDVI_FEATURES, "names"), 2017, tmp_path / "i16.tif"
    )
    with rasterio.open(out) as s:
        assert s.dtypes[0] == "int16" and s.nodata == -32768
        assert s.scales == tuple(1 / f.scale for f in spec.features)  # what gdalinfo prints as Scale
        physical = s.read(1, masked=True).astype(float) * s.scales[0]  # a GIS reads physical NDVI
        assert -1 <= physical.min() and physical.max() <= 1
    with FeatureReader(slovenia_features, NDVI_FEATURES) as f32, FeatureReader(out, NDVI_FEATURES) as i16:
        a, b = f32.read(), i16.read()
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    ok = np.isfinite(a)
    np.testing.assert_array_equal(b[ok], np.rint(a[ok]))  # stored units, rounded as Earth Engine does
    assert out.stat().st_size < 0.6 * slovenia_features.stat().st_size


def test_int16_maps_like_float32(data: Path, slovenia_features: Path, tmp_path: Path) -> None:
    from model.bundle import load_bundle
    from tiles.mapping.predict import predict_tile

    spec = _int16_spec()
    out = features_from_stack(
        "eolearn_slovenia", spec, FeatureSelection.of(spec, NDVI_FEATURES, "names"), 2017, tmp_path / "i16.tif"
    )
    b = load_bundle(Path("models/elc10-ndvi-l1"))
    r16 = predict_tile(b, out, tmp_path / "m16", "t")
    r32 = predict_tile(b, slovenia_features, tmp_path / "m32", "t")
    with rasterio.open(r16.class_path) as s16, rasterio.open(r32.class_path) as s32:
        c16, c32 = s16.read(1), s32.read(1)
    assert (c16 == c32).mean() > 0.995  # NDVI rounded to 0.001 changes a handful of border pixels
    assert r16.tags["contract"] == "checked"


def test_values_beyond_int16_saturate_and_are_counted(tmp_path: Path) -> None:
    from pipeline.core.featurecog import write_feature_cog
    from pipeline.core.grid import TileId

    spec = _int16_spec().subset(["ndvi_p50"])
    w = TileId.parse("100mE46740N25390").window()
    vals = np.full((1, *w.shape), 500.0, np.float32)
    vals[0, 0, :3] = [40000.0, -40000.0, np.nan]
    out = write_feature_cog(tmp_path / "x.tif", vals, spec, w, 2017, "L1C", [])
    with rasterio.open(out) as s:
        assert s.tags(1)["clipped_pixels"] == "2" and s.tags(1)["nodata_pixels"] == "1"
        assert list(s.read(1)[0, :3]) == [32767, -32767, -32768]
