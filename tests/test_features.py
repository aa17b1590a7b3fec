import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.warp import Resampling
from rio_cogeo.cogeo import cog_validate
from scipy.ndimage import generic_filter

from pipeline.core.errors import RasterError
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import load_spec
from tiles.engine.features import computable_features, compute_features
from tiles.engine.run import features_from_stack
from tiles.engine.stack import load_manifest, load_stack

from .conftest import NDVI_FEATURES, SLO
from .oracles import reproject_exact


def _source(data: Path):
    d = data / SLO
    times = pd.to_datetime(json.loads((d / "timestamps.json").read_text()))
    with rasterio.open(d / "ndvi_68dates.tif") as s:
        ndvi, profile = s.read(), s.profile
    with rasterio.open(d / "cloud_probability_s2cloudless_68dates.tif") as s:
        clp = s.read() * 100
    with rasterio.open(d / "is_valid_68dates.tif") as s:
        valid = s.read()
    return times, ndvi, clp, valid, profile


def _on_grid(arr: np.ndarray, profile: dict, cog: Path) -> np.ndarray:
    with rasterio.open(cog) as dst_ds:
        out = np.full((dst_ds.height, dst_ds.width), np.nan, np.float32)
        reproject_exact(
            arr.astype(np.float32),
            out,
            src_transform=profile["transform"],
            src_crs=profile["crs"],
            dst_transform=dst_ds.transform,
            dst_crs=dst_ds.crs,
            resampling=Resampling.nearest,
            src_nodata=np.nan,
            dst_nodata=np.nan,
        )
    return out


def test_ndvi_percentiles_equal_independent_numpy(data: Path, slovenia_features: Path) -> None:
    times, ndvi, clp, valid, profile = _source(data)
    keep = times.year == 2017
    v = np.where((clp[keep] < 40) & (valid[keep] == 1), ndvi[keep], np.nan)
    with rasterio.open(slovenia_features) as s:
        names = list(s.descriptions)
        got = {n: s.read(i + 1) for i, n in enumerate(names)}
    assert names == NDVI_FEATURES
    for p in (5, 25, 50, 75, 95):
        want = _on_grid(np.nanpercentile(v, p, axis=0) * 1000, profile, slovenia_features)
        ok = np.isfinite(want)
        assert ok.sum() > 9000
        np.testing.assert_array_equal(np.isfinite(got[f"ndvi_p{p}"]), ok)
        np.testing.assert_allclose(got[f"ndvi_p{p}"][ok], want[ok], rtol=1e-5)
    months = times[keep].month
    winter = np.nanmedian(v[np.isin(months, [12, 1, 2])], axis=0) * 1000
    want = _on_grid(winter, profile, slovenia_features)
    ok = np.isfinite(want)
    np.testing.assert_allclose(got["ndvi_winter"][ok], want[ok], rtol=1e-5)
    # texture: population std over a 7 x 7 square of the annual median, valid pixels only
    med = got["ndvi_p50"] / 1000
    tex = generic_filter(med, np.nanstd, size=7, mode="constant", cval=np.nan) * 1000
    tex[~np.isfinite(med)] = np.nan
    ok = np.isfinite(tex)
    np.testing.assert_allclose(got["ndvi_texture_sd"][ok], tex[ok], rtol=1e-3, atol=1e-2)


def test_feature_cog_is_valid_and_named(slovenia_features: Path) -> None:
    assert cog_validate(str(slovenia_features))[0]
    with rasterio.open(slovenia_features) as s:
        assert s.crs.to_epsg() == 3035 and s.res == (10.0, 10.0)
        assert s.transform.c % 10 == 0 and s.transform.f % 10 == 0  # on the EEA grid
        assert json.loads(s.tags()["features"]) == NDVI_FEATURES
        assert s.tags()["processing_level"] == "L1C" and s.tags()["year"] == "2017"
        assert s.tags(1)["scale"] == "1000.0"
        data = s.read()
        for i in range(s.count):  # pixels without any valid observation are counted, never zero-filled
            assert int(s.tags(i + 1)["nodata_pixels"]) == int(np.isnan(data[i]).sum())
        assert int(s.tags(1)["nodata_pixels"]) > 0


def test_band_features_and_expressions_on_real_bands(data: Path) -> None:
    spec = load_spec("elc10")
    man, root = load_manifest("eolearn_slovenia")
    stack = load_stack(man, root)
    names = computable_features(spec, stack, 2015)
    assert "blue_median" in names and "asc_vv_median" not in names
    assert computable_features(spec, stack, 2017) == NDVI_FEATURES
    # the spec's NDVI expression on the real bands reproduces eo-learn's NDVI on those dates
    t_b, b4 = stack.variables["B4"]
    _, b8 = stack.variables["B8"]
    t_n, nd = stack.variables["ndvi"]
    import numexpr as ne

    expr = ne.evaluate(spec.indices["ndvi"], local_dict={"B4": b4, "B8": b8})
    idx = [int(np.flatnonzero(t_n == t)[0]) for t in t_b]
    ok = np.isfinite(expr)
    np.testing.assert_allclose(expr[ok], nd[idx][ok], atol=1e-6)
    # blue median over the clear acquisitions (CLP < 40), x1e7 (DN x 1000)
    vals = compute_features(spec.subset(["blue_median"]), stack, 2015)[0]
    _, clp = stack.variables["CLP"]
    _, valid = stack.variables["VALID"]
    _, b2 = stack.variables["B2"]
    cidx = [int(np.flatnonzero(stack.variables["CLP"][0] == t)[0]) for t in t_b]
    masked = np.where((clp[cidx] < 40) & (valid[cidx] == 1), b2, np.nan)
    with np.errstate(all="ignore"):
        import warnings

        warnings.simplefilter("ignore")
        want = np.nanmedian(masked, axis=0) * 1e7
    ok = np.isfinite(want)
    np.testing.assert_allclose(vals[ok], want[ok], rtol=1e-5)


def _manifest(tmp_path: Path, root: Path, items: list[dict]) -> Path:
    import yaml

    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump({"name": "t", "level": "L1C", "root": str(root), "items": items}))
    return p


def test_missing_band_names_the_band(data: Path, tmp_path: Path) -> None:
    """(The manifests here carry no cloud layer: `cloud_mask="none"`, else that is refused first.)"""
    m = _manifest(tmp_path, data / SLO, [{"path": "ndvi_68dates.tif", "kind": "timeseries", "variable": "ndvi"}])
    spec = load_spec("elc10")
    with pytest.raises(RasterError, match=r"\['B2'\]"):
        features_from_stack(
            m, spec, FeatureSelection.of(spec, ["blue_median"], "names"), 2015, tmp_path / "o.tif", cloud_mask="none"
        )
    with pytest.raises(RasterError, match="no acquisition.*2019"):
        features_from_stack(
            m, spec, FeatureSelection.of(spec, ["ndvi_p50"], "names"), 2019, tmp_path / "o.tif", cloud_mask="none"
        )
    assert not (tmp_path / "o.tif").exists()


def test_corrupt_and_crs_less_rasters_are_named(data: Path, tmp_path: Path) -> None:
    src = data / SLO / "ndvi_68dates.tif"
    bad = tmp_path / "trunc.tif"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    m = _manifest(tmp_path, tmp_path, [{"path": "trunc.tif", "kind": "timeseries", "variable": "ndvi"}])
    spec = load_spec("elc10")
    sel = FeatureSelection.of(spec, ["ndvi_p50"], "names")
    with pytest.raises(RasterError, match="trunc.tif"):
        features_from_stack(m, spec, sel, 2017, tmp_path / "o.tif", cloud_mask="none")
    nocrs = tmp_path / "nocrs.tif"
    shutil.copy(src, nocrs)
    with rasterio.open(src) as s:
        arr, prof, desc = s.read(), s.profile, s.descriptions
    prof.pop("crs")
    with rasterio.open(nocrs, "w", **prof) as d:
        d.write(arr)
        d.descriptions = desc
    m = _manifest(tmp_path, tmp_path, [{"path": "nocrs.tif", "kind": "timeseries", "variable": "ndvi"}])
    with pytest.raises(RasterError, match="nocrs.tif: has no CRS"):
        features_from_stack(m, spec, sel, 2017, tmp_path / "o.tif", cloud_mask="none")
    assert not (tmp_path / "o.tif").exists()


def test_sort_based_percentiles_equal_numpy_on_real_italy_series(data: Path) -> None:
    """tiles.engine.composite.nan_percentiles == numpy nanpercentile(linear) on the 60 real masked dates."""
    import warnings

    from tiles.engine.composite import nan_percentiles

    folder = data / "sen2rts_ndvi_scl_italy"
    ndvi_files = sorted((folder / "NDVI").glob("*.tif"))
    assert len(ndvi_files) == 60
    layers, dates = [], []
    for f in ndvi_files:
        scl_file = folder / "SCL" / f.name.replace("_NDVI_", "_SCL_")
        with rasterio.open(f) as s, rasterio.open(scl_file) as q:
            v = s.read(1, masked=True).astype(np.float32).filled(np.nan)
            scl = q.read(1).repeat(2, 0).repeat(2, 1)[: v.shape[0], : v.shape[1]]  # 20 m → 10 m, same origin
        v[np.isin(scl, (1, 9, 10, 11))] = np.nan  # SCL defective, cloud medium/high, cirrus, snow
        layers.append(v)
        dates.append(
            np.datetime64(f"{f.name.split('_')[1][:4]}-{f.name.split('_')[1][4:6]}-{f.name.split('_')[1][6:]}")
        )
    cube = np.stack(layers)
    times = np.array(dates, dtype="datetime64[D]")
    assert 0.05 < np.isnan(cube).mean() < 0.95  # real masking happened
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.nanpercentile(cube, [5, 50, 98], axis=0, method="linear")
    got = nan_percentiles(cube, (5.0, 50.0, 98.0))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[np.isfinite(got)], want[np.isfinite(want)], rtol=1e-5, atol=1e-6)
    march = times.astype("datetime64[M]").astype(int) % 12 == 2  # a monthly median, as a feature's window
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want_march = np.nanmedian(cube[march], axis=0)
    np.testing.assert_allclose(nan_percentiles(cube[march], (50.0,))[0], want_march, rtol=1e-5, equal_nan=True)


def test_focal_median_equals_an_independent_nanmedian() -> None:
    """The S1 30 m speckle filter (GEE focalMedian, circle): 29-pixel kernel at 10 m, NaN ignored.
    No Sentinel-1 raster is in the shared data, so the values are seeded random numbers."""
    import warnings

    from scipy.ndimage import generic_filter

    from tiles.engine.composite import circle_offsets, focal_median

    assert len(circle_offsets(3.0)) == 29
    rng = np.random.default_rng(5)
    img = rng.gamma(2.0, 0.05, (2, 23, 31)).astype(np.float32)  # linear sigma0-like speckle
    img[rng.random(img.shape) < 0.2] = np.nan
    fp = np.array([[dy * dy + dx * dx <= 9 for dx in range(-3, 4)] for dy in range(-3, 4)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.stack(
            [generic_filter(img[i], np.nanmedian, footprint=fp, mode="constant", cval=np.nan) for i in range(2)]
        )
    got = focal_median(img, 3.0)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[np.isfinite(got)], want[np.isfinite(want)], rtol=1e-6)


def test_blocked_features_equal_the_whole_tile(data: Path) -> None:
    """Row blocks with a halo (memory bounded by a block) give the whole-tile features, texture
    (a 7 x 7 neighbourhood of the annual median) included, on the real Slovenia stack."""
    from tiles.engine.features import compute_features_blocked, halo_px

    spec = load_spec("elc10").subset(NDVI_FEATURES)
    man, root = load_manifest("eolearn_slovenia")
    whole_stack = load_stack(man, root)
    whole = compute_features(spec, whole_stack, 2017)
    blocks: list[tuple[int, int]] = []
    got, first = compute_features_blocked(
        spec,
        lambda w: load_stack(man, root, window=w),
        whole_stack.window,
        2017,
        block_rows=32,
        on_block=lambda i, n: blocks.append((i, n)),
    )
    assert halo_px(spec) == 3 and blocks[-1] == (4, 4) and first.level == "L1C"
    np.testing.assert_array_equal(np.isnan(got), np.isnan(whole))
    np.testing.assert_allclose(got[np.isfinite(got)], whole[np.isfinite(whole)], rtol=1e-6, atol=1e-6)


def test_dem_elevation_from_the_real_slovenia_dem(data: Path, tmp_path: Path) -> None:
    """A DEM raster in a stack manifest gives the spec's dem_elevation (metres), whatever the year."""
    from pipeline.core.selection import FeatureSelection
    from tiles.engine.run import features_from_stack

    dem = data / "eolearn_testeopatch_slovenia" / "dem.tif"
    man = tmp_path / "dem.yaml"
    man.write_text(
        f"name: slo_dem\nsensor: dem\nlevel: DEM\nroot: {dem.parent}\nitems:\n"
        f"  - {{path: {dem.name}, kind: timeseries, variable: elevation, times: ['2000-02-11']}}\n",
        encoding="utf-8",
    )
    spec = load_spec("bridge-lc-196")
    out = features_from_stack(
        man, spec, FeatureSelection.of(spec, ["dem_elevation"], "names"), 2017, tmp_path / "dem_2017.tif"
    )
    with rasterio.open(out) as s, rasterio.open(dem) as d:
        got = s.read(1)
        want = np.full(got.shape, np.nan, np.float32)
        reproject_exact(
            d.read(1),
            want,
            src_transform=d.transform,
            src_crs=d.crs,
            dst_transform=s.transform,
            dst_crs=s.crs,
            dst_nodata=np.nan,
            resampling=Resampling.nearest,
        )
        scale = float(s.tags(1)["scale"])
    ok = np.isfinite(want)
    assert ok.mean() > 0.8 and 200 < np.nanmedian(got) / scale < 1000  # Ljubljana basin, metres (the rotated
    # UTM patch leaves EPSG:3035 corners empty)
    np.testing.assert_allclose(got[ok], want[ok] * scale, rtol=1e-6)


def test_a_stack_without_the_specs_cloud_layer_is_refused(data: Path, tmp_path: Path) -> None:
    """elc10 masks by s2cloudless probability: a stack without CLP (or SCL) is an error, not an
    unmasked composite that claims to be masked (issue #13); --cloud-mask none is recorded."""
    m = _manifest(tmp_path, data / SLO, [{"path": "ndvi_68dates.tif", "kind": "timeseries", "variable": "ndvi"}])
    spec = load_spec("elc10")
    sel = FeatureSelection.of(spec, ["ndvi_p50"], "names")
    with pytest.raises(RasterError, match="masks clouds by s2cloudless probability"):
        features_from_stack(m, spec, sel, 2017, tmp_path / "o.tif")
    out = features_from_stack(m, spec, sel, 2017, tmp_path / "o.tif", cloud_mask="none")
    with rasterio.open(out) as s:
        emb = json.loads(s.tags()["feature_spec"])
        assert "--cloud-mask none" in s.tags()["cloud_mask"]
    assert emb["sensors"]["s2"]["cloud_probability"] is None and emb["sensors"]["s2"]["level"] == "L1C"


@pytest.mark.parametrize("rows", [1, 7])
def test_row_chunks_give_the_whole_window_bit_for_bit(data: Path, rows: int) -> None:
    """The series are masked and reduced in row chunks (issue #28): any chunk height gives the
    values of one chunk over the whole window, the texture (7 x 7 around the annual median, across
    chunk edges) and the masks (CLP, VALID) included, on the real Slovenia stack."""
    spec = load_spec("elc10").subset(NDVI_FEATURES)
    man, root = load_manifest("eolearn_slovenia")
    stack = load_stack(man, root)
    whole = compute_features(spec, stack, 2017, chunk_rows=stack.window.height)
    assert np.isfinite(whole).mean() > 0.8 and "ndvi_texture_sd" in NDVI_FEATURES
    np.testing.assert_array_equal(compute_features(spec, stack, 2017, chunk_rows=rows, threads=2), whole)
    with pytest.raises(ValueError, match="chunk_rows"):
        compute_features(spec, stack, 2017, chunk_rows=0)
