import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rio_cogeo.cogeo import cog_validate

from model.bundle import load_bundle
from pipeline.core.cog import write_cog
from pipeline.core.errors import RasterError
from pipeline.core.legend import level1_legend
from tiles.mapping.predict import NODATA, predict_tile


@pytest.fixture(scope="module")
def tile(small_bundle: Path, slovenia_features: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("maps")
    return predict_tile(load_bundle(small_bundle), slovenia_features, out, "slo"), out


def test_class_and_confidence_cogs(tile, slovenia_features: Path, small_bundle: Path) -> None:
    res, _ = tile
    for p in (res.class_path, res.confidence_path):
        valid, errors, _ = cog_validate(str(p))
        assert valid, errors
    with rasterio.open(slovenia_features) as f:
        feats = f.read()
        ftransform = f.transform
    nodata_expected = ~np.isfinite(feats).all(axis=0)
    with rasterio.open(res.class_path) as c, rasterio.open(res.confidence_path) as q:
        assert c.dtypes[0] == "uint8" and c.nodata == NODATA and c.crs.to_epsg() == 3035
        assert c.transform == ftransform
        cls, conf = c.read(1), q.read(1)
        assert c.colormap(1)[6][:3] == level1_legend().colormap()[6][:3]
        tags = c.tags()
        assert tags["model_hash"] == load_bundle(small_bundle).digest and tags["tile_id"] == "slo"
        assert json.loads(tags["legend"])[0]["name"] == "Woodland/Shrubland"
    np.testing.assert_array_equal(cls == NODATA, nodata_expected)
    assert res.n_nodata == nodata_expected.sum() > 0
    assert set(np.unique(cls[~nodata_expected])) <= set(range(7))
    assert conf[~nodata_expected].min() >= 14 and conf[~nodata_expected].max() <= 100  # >= 1/7
    assert (conf[nodata_expected] == NODATA).all()


def _rewrite(src_path: Path, dst: Path, order: list[int]) -> None:
    with rasterio.open(src_path) as s:
        prof, desc, data = s.profile, s.descriptions, s.read()
    prof.update(count=len(order), driver="GTiff")
    with rasterio.open(dst, "w", **prof) as d:
        d.write(data[order])
        d.descriptions = tuple(desc[i] for i in order)


def test_bands_are_matched_by_name(tile, slovenia_features: Path, small_bundle: Path, tmp_path: Path) -> None:
    res, _ = tile
    rev = tmp_path / "reversed.tif"
    _rewrite(slovenia_features, rev, list(range(9, -1, -1)))
    res2 = predict_tile(load_bundle(small_bundle), rev, tmp_path, "rev")
    with rasterio.open(res.class_path) as a, rasterio.open(res2.class_path) as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))
    short = tmp_path / "short.tif"
    _rewrite(slovenia_features, short, list(range(9)))  # drops ndvi_texture_sd
    with pytest.raises(RasterError, match=r"short.tif: band\(s\) \['ndvi_texture_sd'\] are missing"):
        predict_tile(load_bundle(small_bundle), short, tmp_path, "short")
    assert not (tmp_path / "short_class.tif").exists()


def test_corrupt_feature_cog(small_bundle: Path, slovenia_features: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(slovenia_features.read_bytes()[:2000])
    with pytest.raises(RasterError, match="bad.tif"):
        predict_tile(load_bundle(small_bundle), bad, tmp_path, "bad")


def test_prefetch_thread_gives_the_same_map_and_raises_read_errors(
    small_bundle: Path, slovenia_features: Path, tmp_path: Path
) -> None:
    """The CUDA path's reader thread, run on CPU: same bytes, and a truncated file still fails."""
    b = load_bundle(small_bundle)
    plain = predict_tile(b, slovenia_features, tmp_path / "a", "slo", prefetch=False, probabilities=True)
    ahead = predict_tile(b, slovenia_features, tmp_path / "b", "slo", prefetch=True, probabilities=True)
    for p, q in zip(plain.outputs, ahead.outputs, strict=True):
        assert p.read_bytes() == q.read_bytes()
    with rasterio.open(plain.extra_paths[0]) as src:  # per-class probabilities, percent
        assert src.count == 7 and src.descriptions[0] == "Woodland/Shrubland"
        total = src.read().astype(int).sum(0)
        with rasterio.open(plain.class_path) as c:
            ok = c.read(1) != NODATA
        assert (abs(total[ok] - 100) <= 4).all()
    data = slovenia_features.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) * 3 // 4])  # header intact, tiles missing
    with pytest.raises(RasterError, match="cut.tif"):
        predict_tile(b, cut, tmp_path / "c", "cut", prefetch=True)
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").glob("*.tif"))


def test_level2_is_filled_inside_cropland_only(small_bundle: Path, slovenia_features: Path, tmp_path: Path) -> None:
    """The Level-2 pass runs on the pixels mapped as Cropland. With the same network as the
    "crop" model its class equals the Level-1 class there, and nodata elsewhere.
    """
    from tiles.mapping.predict import Predictor

    b = load_bundle(small_bundle)
    res = predict_tile(
        Predictor(b, level2=load_bundle(small_bundle), device="cpu"),
        slovenia_features,
        tmp_path,
        "slo",
        compress="ZSTD",
    )
    l2_path = res.extra_paths[0]
    assert l2_path.name == "slo_level2.tif" and cog_validate(str(l2_path))[0]
    with rasterio.open(res.class_path) as c, rasterio.open(l2_path) as l2:
        cls, lev2 = c.read(1), l2.read(1)
        assert l2.profile["compress"].upper() == "ZSTD" and "+" in l2.tags()["model_hash"]
    crop = cls == b.legend.names.index("Cropland")
    assert crop.sum() > 0  # the patch is mostly forest and grass; a few fields are mapped
    np.testing.assert_array_equal(lev2[crop], cls[crop])
    assert (lev2[~crop] == NODATA).all()


def test_mode_overviews_keep_class_values(data: Path, tmp_path: Path) -> None:
    with rasterio.open(data / "eucropmap2018_jrc" / "eucropmap2018_example_map_denmark.tif") as s:
        codes = s.read(1)
    _, cls = np.unique(codes, return_inverse=True)
    cls = cls.reshape(codes.shape).astype(np.uint8)
    out = write_cog(
        tmp_path / "c.tif",
        cls,
        Affine(10, 0, 4_200_000, 0, -10, 3_600_000),
        "EPSG:3035",
        255,
        colormap=level1_legend().colormap(),
        resampling="mode",
    )
    assert cog_validate(str(out))[0]
    with rasterio.open(out) as s:
        assert s.overviews(1)[0] == 2
        ov = s.read(1, out_shape=(s.height // 2, s.width // 2))
        assert s.tags()["overview_resampling"] == "mode"
    assert set(np.unique(ov)) <= set(np.unique(cls))
    # the mode of a 2x2 block is one of its values; check one block independently
    block = cls[:2, :2].ravel()
    assert ov[0, 0] in block


def test_prior_adaptation_shifts_the_map_toward_the_tiles_priors(
    tile, small_bundle: Path, slovenia_features: Path, tmp_path: Path
) -> None:
    """--adapt-priors on the real Slovenia tile, unguarded (strength 3): the tile priors are
    tagged, and the classes whose priors rose gain pixels while those whose priors fell lose them
    (Saerens et al. 2002); the Dirichlet pull keeps the estimate nearer the training prior than
    plain EM's. Guarded below the tile's likelihood gain, the map is the unadapted map, pixel for
    pixel, and the tag says so. A bundle without training priors is refused with a message naming
    the option. Mutations caught: a bias with the wrong sign moves the shares the other way; a
    guard compared the wrong way round adapts the guarded tile."""
    import shutil

    from model.bundle import META
    from model.priors import Adaptation
    from pipeline.core.errors import EulcError

    plain, _ = tile
    bundle = load_bundle(small_bundle)
    res = predict_tile(bundle, slovenia_features, tmp_path, "slo", adapt_priors=True, adaptation=Adaptation(3.0))
    ml = predict_tile(bundle, slovenia_features, tmp_path / "ml", "slo", adapt_priors=True, adaptation=Adaptation(0.0))
    with rasterio.open(res.class_path) as c, rasterio.open(plain.class_path) as p, rasterio.open(ml.class_path) as m:
        tags = json.loads(c.tags()["prior_adaptation"])
        tags_ml = json.loads(m.tags()["prior_adaptation"])
        adapted, before = c.read(1), p.read(1)
    names = level1_legend().names
    train = np.array([tags["train_prior"][n] for n in names])
    target = np.array([tags["tile_prior"][n] for n in names])
    target_ml = np.array([tags_ml["tile_prior"][n] for n in names])
    assert target.sum() == pytest.approx(1, abs=1e-3) and tags["pixels"] > 5_000
    assert tags["applied"] and tags["setting"] == "map-em s=3" and tags["gain"] > 0
    assert 0 < np.abs(target - train).sum() < np.abs(target_ml - train).sum()  # the pull toward π
    ok = before != NODATA
    ratio = np.where(train > 0, target / np.where(train > 0, train, 1), 1.0)  # classes seen in training
    rose, fell = np.flatnonzero(ratio > 1), np.flatnonzero(ratio < 1)
    assert len(rose) and len(fell)
    assert np.isin(adapted[ok], rose).mean() > np.isin(before[ok], rose).mean()  # priors up: more pixels
    assert np.isin(adapted[ok], fell).mean() < np.isin(before[ok], fell).mean()
    guard = Adaptation(3.0, tags["gain"] / 2)
    held = predict_tile(bundle, slovenia_features, tmp_path / "g", "slo", adapt_priors=True, adaptation=guard)
    with rasterio.open(held.class_path) as g:
        g_tags = json.loads(g.tags()["prior_adaptation"])
        np.testing.assert_array_equal(g.read(1), before)
    assert not g_tags["applied"] and g_tags["gain"] == tags["gain"]
    old = tmp_path / "old"
    shutil.copytree(small_bundle, old)
    meta = json.loads((old / META).read_text())
    del meta["metrics"]["class_prior"]
    (old / META).write_text(json.dumps(meta))
    with pytest.raises(EulcError, match="training class priors"):
        predict_tile(load_bundle(old), slovenia_features, tmp_path / "o", "slo", adapt_priors=True)


def test_tile_pixels_equal_a_direct_prediction(small_bundle: Path, slovenia_features: Path, tmp_path: Path) -> None:
    """The tile path (row blocks, band-major views for whole-valid blocks, gathers for the rest)
    gives each pixel what :meth:`Predictor.predict` gives its feature row directly."""
    from pipeline.core.grid import pixel_centres_lonlat
    from tiles.mapping.predict import Predictor

    pred = Predictor(load_bundle(small_bundle), device="cpu")
    with rasterio.open(slovenia_features) as s:
        vals = s.read()
        prof = {k: s.profile[k] for k in ("transform", "crs")}
        tags, names = s.tags(), list(s.descriptions)
        band_tags = [s.tags(i) for i in range(1, s.count + 1)]
    vals = np.where(np.isfinite(vals), vals, np.nanmedian(vals, axis=(1, 2), keepdims=True))  # real edges had NaN
    big = np.tile(vals, (1, 3, 3))  # 324 × 324 px: two row blocks of the reader (256 + 68 rows)
    big[:, 300:310, 10:20] = np.nan  # the second block has nodata, the first none
    big[0, 5, 5] = 1e20  # a huge but finite value stays a pixel
    path = write_cog(
        tmp_path / "big.tif",
        big.astype(np.float32),
        prof["transform"],
        str(prof["crs"]),
        np.nan,
        descriptions=names,
        tags=tags,
        band_tags=band_tags,
    )
    assert np.isfinite(big[:, :256]).all() and not np.isfinite(big[:, 256:]).all()
    res = predict_tile(pred, path, tmp_path, "big")
    with rasterio.open(res.class_path) as c, rasterio.open(res.confidence_path) as q:
        cls, conf = c.read(1).ravel(), q.read(1).ravel()
    x = big[[names.index(n) for n in pred.features]].reshape(len(pred.features), -1).T
    ok = np.isfinite(x).all(1)
    lon, lat = pixel_centres_lonlat(prof["transform"], 324, 324, "EPSG:3035")
    ll = np.stack([lon.ravel(), lat.ravel()], 1).astype(np.float32)
    want = pred.predict(np.ascontiguousarray(x[ok]), ll[ok])
    assert (~ok).sum() == 100 and (cls == NODATA).sum() == 100
    np.testing.assert_array_equal(cls[ok], want["class"])
    np.testing.assert_array_equal(conf[ok], want["confidence"])
    assert len(np.unique(want["class"])) >= 3
