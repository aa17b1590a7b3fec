"""The STAC path offline: a static STAC catalogue over the real Slovenia L1C bands, read by the
asset reader, equals the local-file loader; the L2A harmonization offset; bad catalogues."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

from pipeline.core.errors import RasterError
from tiles.engine.stac_load import _offset, items_from_catalog, load_stac_stack
from tiles.engine.stack import load_manifest, load_stack

BANDS = ["B2", "B4", "B8"]


def _catalog(
    data: Path,
    tmp: Path,
    baseline: str = "02.01",
    add_dn: float = 0.0,
    props: dict | None = None,
    dtype: str = "float32",
) -> Path:
    """One STAC item per real acquisition; one DN COG per band (reflectance × 10,000 + ``add_dn``,
    float32 by default so that no rounding hides a difference; ``uint16`` rounds the DN as real
    catalogues hold them, nodata 0)."""
    man, root = load_manifest("eolearn_slovenia")
    cat = pystac.Catalog("slovenia-l1c", "the eo-learn Slovenia L1C bands as a static catalogue")
    for item in (i for i in man.items if i.kind == "bands"):
        src_path = root / item.path
        with rasterio.open(src_path) as src:
            desc = [d.replace("B0", "B") for d in src.descriptions]
            prof = src.profile | {"count": 1, "dtype": dtype, "nodata": 0, "driver": "GTiff"}
            bounds, crs = src.bounds, src.crs
            assets = {}
            for b in BANDS:
                dest = tmp / f"{src_path.stem}_{b}.tif"
                with rasterio.open(dest, "w", **prof) as d:
                    dn = src.read(desc.index(b) + 1).astype(np.float64) * 10_000 + add_dn
                    d.write(np.round(dn).astype(dtype) if dtype != "float32" else dn.astype(np.float32), 1)
                assets[b] = pystac.Asset(dest.name, media_type=pystac.MediaType.GEOTIFF, roles=["data"])
        from pyproj import Transformer

        lon, lat = Transformer.from_crs(crs, 4326, always_xy=True).transform(
            [bounds.left, bounds.right], [bounds.bottom, bounds.top]
        )
        when = dt.datetime.fromisoformat(str(item.time)).replace(tzinfo=dt.UTC)
        it = pystac.Item(
            src_path.stem,
            {
                "type": "Polygon",
                "coordinates": [
                    [[lon[0], lat[0]], [lon[1], lat[0]], [lon[1], lat[1]], [lon[0], lat[1]], [lon[0], lat[0]]]
                ],
            },
            [lon[0], lat[0], lon[1], lat[1]],
            when,
            {"s2:processing_baseline": baseline, **(props or {})},
        )
        for k, a in assets.items():
            a.href = str(tmp / a.href)
            it.add_asset(k, a)
        cat.add_item(it)
    cat.normalize_hrefs(str(tmp))  # the assets lie inside the catalogue's folder tree
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    return tmp / "catalog.json"


def test_static_catalogue_equals_the_local_loader(data: Path, tmp_path: Path) -> None:
    cat = _catalog(data, tmp_path)
    man, root = load_manifest("eolearn_slovenia")
    local = load_stack(man, root, variables=set(BANDS))
    items = items_from_catalog(cat)
    assert len(items) == 5
    stac = load_stac_stack(items, local.window, BANDS, year=2015, level="L1C")
    for b in BANDS:
        t1, v1 = local.variables[b]
        t2, v2 = stac.variables[b]
        np.testing.assert_array_equal(t1.astype("datetime64[s]"), t2.astype("datetime64[s]"))
        ok = np.isfinite(v1)
        np.testing.assert_array_equal(ok, np.isfinite(v2) | (v1 == 0))
        np.testing.assert_allclose(v2[ok & np.isfinite(v2)], v1[ok & np.isfinite(v2)], rtol=1e-6, atol=1e-7)


def test_l2a_harmonization_offset() -> None:
    def item(day: str, baseline: str | None) -> pystac.Item:
        props = {"s2:processing_baseline": baseline} if baseline else {}
        return pystac.Item("x", None, None, dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC), props)

    assert _offset(item("2022-06-01", "04.00"), "L2A") == -1000
    assert _offset(item("2021-06-01", "03.00"), "L2A") == 0
    assert _offset(item("2022-06-01", None), "L2A") == -1000  # from the date when no baseline
    assert _offset(item("2022-01-24", None), "L2A") == 0
    assert _offset(item("2022-06-01", "04.00"), "L1C") == 0


def test_offset_from_metadata_and_data(data: Path, tmp_path: Path) -> None:
    """Baseline 04.00 items: DN with the +1000 get the offset; items the provider harmonized
    (earthsearch:boa_offset_applied) do not; items whose metadata wrongly call for the offset
    (Element84/earth-search#71) are detected from their values, with a warning. All three equal
    the real reflectance."""
    import warnings

    man, root = load_manifest("eolearn_slovenia")
    local = load_stack(man, root, variables=set(BANDS))
    cases = {
        "offset in the DN": (1000.0, None),
        "flag set": (0.0, {"earthsearch:boa_offset_applied": True}),
        "metadata wrong": (0.0, {"earthsearch:boa_offset_applied": False}),
    }
    for label, (add, props) in cases.items():
        sub = tmp_path / label.replace(" ", "_")
        sub.mkdir()
        items = items_from_catalog(_catalog(data, sub, "04.00", add, props))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            st = load_stac_stack(items, local.window, BANDS, year=2015, level="L2A")
        said = [str(w.message) for w in caught if "already harmonized" in str(w.message)]
        # the 2015-08-20 scene is cloud everywhere (no value below 1000 DN in any band): it cannot be told
        # apart and keeps the metadata's offset; the four scenes with clear land are detected
        assert len(said) == (4 if label == "metadata wrong" else 0), (label, said)
        assert not any("20150820" in m for m in said)
        keep = [0, 1, 3, 4] if label == "metadata wrong" else list(range(5))
        for b in BANDS:
            v1, v2 = local.variables[b][1][keep], st.variables[b][1][keep]
            ok = np.isfinite(v1) & np.isfinite(v2)
            assert ok.mean() > 0.8, label
            np.testing.assert_allclose(v2[ok], v1[ok], rtol=1e-5, atol=2e-5, err_msg=label)


@pytest.mark.parametrize(
    ("level", "add", "props", "warned"),
    [
        ("L2A", 1000.0, None, 0),
        ("L2A", 0.0, {"earthsearch:boa_offset_applied": False}, 4),
        ("L1C", 0.0, None, 0),
    ],
    ids=["offset in the DN", "metadata wrong", "L1C"],
)
def test_an_encoded_stack_is_the_float_stack_bit_for_bit(
    data: Path, tmp_path: Path, level: str, add: float, props: dict | None, warned: int
) -> None:
    """uint16 DN (baseline 04.00) held as stored (issue #28) decode to exactly the float32
    loader's reflectance (its gather, offset, scaling and, for L2A, <= 0 rule, computed there in
    place; for L1C only nodata is NaN), the wrongly flagged items are found the same way, and the
    features of both stacks are equal."""
    import warnings

    from pipeline.core.spec import load_spec
    from tiles.engine.features import compute_features

    man, root = load_manifest("eolearn_slovenia")
    window = load_stack(man, root, variables={"B2"}).window
    items = items_from_catalog(_catalog(data, tmp_path, "04.00", add, props, dtype="uint16"))
    stacks, said = [], []
    for encoded in (False, True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stacks.append(load_stac_stack(items, window, BANDS, year=2015, level=level, encoded=encoded))
        said.append(sorted(str(w.message) for w in caught if "already harmonized" in str(w.message)))
    plain, held = stacks
    assert said[0] == said[1] and len(said[0]) == warned
    assert not plain.encodings and set(held.encodings) == set(BANDS)
    for b in BANDS:
        assert held.variables[b][1].dtype == np.uint16 and plain.variables[b][1].dtype == np.float32
        np.testing.assert_array_equal(held.values(b), plain.variables[b][1])  # NaN where NaN
        keep = np.array([True, False, True, True, False])
        np.testing.assert_array_equal(held.values(b, (3, 17), keep), plain.variables[b][1][keep, 3:17])
    assert np.isnan(plain.variables["B4"][1]).any()  # nodata (and the <= 0 rule) are exercised
    sp = load_spec("elc10").subset(["ndvi_p5", "ndvi_p50", "ndvi_p95", "ndvi_texture_sd", "blue_median"])
    np.testing.assert_array_equal(compute_features(sp, held, 2015), compute_features(sp, plain, 2015))


def test_the_offset_check_does_not_count_a_non_zero_nodata_as_valid() -> None:
    """Held as stored, a band's nodata value (here 65535) is not a valid DN: 8 % of the valid
    values below 1000 DN (more than NOT_OFFSET_SHARE) mark the item as already harmonized, though
    half the pixels are nodata."""
    import warnings

    from tiles.engine.stac_load import _drop_offsets_the_data_lack

    dn = np.full((1, 10, 100), 65535, np.uint16)
    dn[0, :5] = 3000
    dn[0, :5, :8] = 500  # 40 of 500 valid values
    item = pystac.Item("S2_x", None, None, dt.datetime(2023, 6, 1, tzinfo=dt.UTC), {})
    offsets = np.array([-1000.0], np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _drop_offsets_the_data_lack(offsets, [item], {"B4": dn}, {"B4": 65535})
    assert offsets[0] == 0 and any("8% of its valid B4 values" in str(w.message) for w in caught)


def test_bad_catalogues(data: Path, tmp_path: Path) -> None:
    with pytest.raises(RasterError, match="does not exist"):
        items_from_catalog(tmp_path / "nope.json")
    cat = _catalog(data, tmp_path)
    man, root = load_manifest("eolearn_slovenia")
    local = load_stack(man, root, variables={"B2"})
    items = items_from_catalog(cat)
    with pytest.raises(RasterError, match=r"band\(s\) \['B11'\] are missing from the STAC items"):
        load_stac_stack(items, local.window, ["B11"], year=2015, level="L1C")
    with pytest.raises(RasterError, match="no scene in the window"):
        load_stac_stack(items, local.window, ["B2"], year=2020, level="L1C")


def test_features_command_from_the_catalogue(data: Path, tmp_path: Path) -> None:
    """`eulc features --catalog` writes the feature COG of a cell; its values equal the local
    engine's on the same bands (B4, B8 on the 5 real dates of 2015)."""
    from pipeline.core.grid import TileId
    from pipeline.core.spec import load_spec
    from tiles.engine.features import compute_features

    from .test_cli import eulc

    cat = _catalog(data, tmp_path)
    names = ["ndvi_p50", "ndvi_p95"]
    out = tmp_path / "feat"
    args = [
        "features",
        "--catalog",
        str(cat),
        "--tiles",
        "1kmE4674N2539",
        "--tile-size",
        "1km",
        "--year",
        "2015",
        "--processing-level",
        "L1C",
        "--spec",
        "elc10",
        "--features",
        ",".join(names),
        "--out",
        str(out),
        "--cloud-mask",
        "none",
    ]
    p = eulc(*args)
    assert p.returncode == 0, p.stderr[-2000:]
    cog = out / "1kmE4674N2539_2015.tif"
    with rasterio.open(cog) as s:
        assert list(s.descriptions) == names and s.crs.to_epsg() == 3035
        t = s.transform
        assert s.tags()["processing_level"] == "L1C"
        assert s.tags()["cloud_mask"] == "s2: none (--cloud-mask none)"  # L1C items: no SCL, no CLP
    assert t == TileId.parse("1kmE4674N2539").window().transform
    # values: on the same window, the STAC path equals the local engine on the same bands
    from pipeline.core.selection import FeatureSelection
    from tiles.engine.run import features_from_stac

    man, root = load_manifest("eolearn_slovenia")
    local = load_stack(man, root, variables={"B4", "B8"})
    local.variables = {k: local.variables[k] for k in ("B4", "B8")}  # the catalogue has no CLP/VALID masks
    sp = load_spec("elc10")
    want = compute_features(sp.subset(names), local, 2015)
    with pytest.raises(RasterError, match="carry neither a CLP nor an SCL asset"):  # no silent unmasked run
        features_from_stac(
            cat, sp, FeatureSelection.of(sp, names, "names"), 2015, local.window, tmp_path / "same.tif", level="L1C"
        )
    same = features_from_stac(
        cat,
        sp,
        FeatureSelection.of(sp, names, "names"),
        2015,
        local.window,
        tmp_path / "same.tif",
        level="L1C",
        cloud_mask="none",
    )
    with rasterio.open(same) as s:
        got_same = s.read()
    ok = np.isfinite(want) & np.isfinite(got_same)
    assert ok.sum() > 0.8 * want.size
    np.testing.assert_allclose(got_same[ok], want[ok], rtol=1e-4, atol=0.05)  # NDVI x 10,000
    again = eulc(*args)  # resume: the tile is there, nothing is recomputed
    said = " ".join(again.stdout.split())
    assert again.returncode == 0 and "wrote 0 feature COG(s)" in said and "(1 up to date)" in said


def test_stac_api_errors_and_common_names(tmp_path: Path) -> None:
    from tiles.engine.stack import canonical_band

    from .test_cli import _one_line_error, eulc

    assert [canonical_band(k) for k in ("red", "nir", "nir08", "swir16", "scl", "B04", "B8A")] == [
        "B4",
        "B8",
        "B8A",
        "B11",
        "SCL",
        "B4",
        "B8A",
    ]  # Earth Search asset keys → band names
    p = eulc(
        "features",
        "--stac",
        "http://127.0.0.1:9/v1",
        "--tiles",
        "1kmE4674N2539",
        "--tile-size",
        "1km",
        "--year",
        "2021",
        "--spec",
        "elc10",
        "--features",
        "ndvi_p50",
        "--out",
        str(tmp_path / "f"),
    )
    _one_line_error(p, "http://127.0.0.1:9/v1", "could not be searched")
    both = eulc(
        "features", "--stac", "http://x", "--files", "eolearn_slovenia", "--year", "2017", "--out", str(tmp_path / "g")
    )
    _one_line_error(both, "give one of --files")


def test_map_from_a_stac_api_in_one_command_records_unreachable_tiles(tmp_path: Path) -> None:
    """`eulc map --stac`: features first (into OUT/features), then the map; offline the API is
    unreachable, so each tile is reported and recorded as failed, and the exit status is 1."""
    from pipeline.stages.pretrained import models_dir

    from .test_cli import eulc

    out = tmp_path / "maps"
    p = eulc(
        "map",
        "--stac",
        "http://127.0.0.1:9/v1",
        "--year",
        "2021",
        "--tiles",
        "1kmE4674N2539,1kmE4675N2539",
        "--tile-size",
        "1km",
        "--bundle",
        str(models_dir() / "elc10-ndvi-l1"),
        "--out",
        str(out),
        "--scheduler",
        "sync",
    )
    said = " ".join((p.stdout + p.stderr).split())
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "could not be searched" in said and "2 failed tile(s)" in said
    assert said.count("could not be searched") >= 2  # each tile's own reason, from the worker that tried


def test_a_spec_that_masks_by_scl_needs_the_scl_asset(data: Path, tmp_path: Path) -> None:
    """bridge-lc-196 masks S2 by SCL 1/9/10/11: the STAC path loads SCL, and says so when missing."""
    from pipeline.core.selection import FeatureSelection
    from pipeline.core.spec import load_spec
    from tiles.engine.run import features_from_stac

    cat = _catalog(data, tmp_path)
    sp = load_spec("bridge-lc-196")
    name = next(f.name for f in sp.features if f.sensor == "s2" and sp.inputs(f) <= {"B4", "B8"})
    man, root = load_manifest("eolearn_slovenia")
    local = load_stack(man, root, variables={"B4"})
    with pytest.raises(RasterError, match=r"\(CLP\) and Sen2Cor SCL, and the S2 items carry neither"):
        features_from_stac(
            cat, sp, FeatureSelection.of(sp, [name], "names"), 2015, local.window, tmp_path / "x.tif", level="L1C"
        )


def _s1_catalog(tmp: Path, window: object) -> tuple[Path, dict[str, np.ndarray]]:
    """A static catalogue of 6 Sentinel-1 dates of 2019 (linear σ⁰ VV/VH, EPSG:32633, 10 m) over
    the Slovenia window. No Sentinel-1 raster is in the shared data: seeded gamma speckle."""
    from pyproj import Transformer
    from rasterio.transform import from_origin

    rng = np.random.default_rng(11)
    lon, lat = Transformer.from_crs(3035, 4326, always_xy=True).transform(
        [window.bounds[0] - 200, window.bounds[2] + 200], [window.bounds[1] - 200, window.bounds[3] + 200]
    )  # type: ignore[attr-defined]
    x0, y1 = Transformer.from_crs(4326, 32633, always_xy=True).transform(lon[0], lat[1])
    t = from_origin(round(x0, -1), round(y1, -1), 10, 10)
    cat = pystac.Catalog("s1", "synthetic S1 RTC over the Slovenia patch")
    truth: dict[str, np.ndarray] = {"VV": [], "VH": []}  # type: ignore[dict-item]
    for d in range(6):
        when = dt.datetime(2019, 1 + 2 * d, 10, 5, 0, tzinfo=dt.UTC)
        it = pystac.Item(
            f"s1_{d}",
            {
                "type": "Polygon",
                "coordinates": [
                    [[lon[0], lat[0]], [lon[1], lat[0]], [lon[1], lat[1]], [lon[0], lat[1]], [lon[0], lat[0]]]
                ],
            },
            [lon[0], lat[0], lon[1], lat[1]],
            when,
            {},
        )
        for pol, mean in (("VV", 0.08), ("VH", 0.02)):
            arr = rng.gamma(4.0, mean / 4.0, (160, 160)).astype(np.float32)
            path = tmp / f"s1_{d}_{pol}.tif"
            with rasterio.open(
                path,
                "w",
                driver="GTiff",
                width=160,
                height=160,
                count=1,
                dtype="float32",
                crs="EPSG:32633",
                transform=t,
                nodata=0,
            ) as dst:
                dst.write(arr, 1)
            truth[pol].append(path)  # type: ignore[attr-defined]
            it.add_asset(pol.lower(), pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
        cat.add_item(it)
    cat.normalize_hrefs(str(tmp))  # the assets lie inside the catalogue's folder tree
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    return tmp / "catalog.json", truth


def test_sentinel1_from_a_static_catalogue(data: Path, tmp_path: Path) -> None:
    """S1 σ⁰ through STAC: 30 m focal median, then 10·log10, then the annual p50, as GEE does."""
    import warnings

    from rasterio.warp import Resampling, reproject
    from scipy.ndimage import generic_filter

    from pipeline.core.selection import FeatureSelection
    from pipeline.core.spec import load_spec
    from tiles.engine.run import features_from_stac

    man, root = load_manifest("eolearn_slovenia")
    window = load_stack(man, root, variables={"B2"}).window
    cat, truth = _s1_catalog(tmp_path, window)
    sp = load_spec("bridge-lc-196")
    name = "s1_vv_p50"
    out = features_from_stac(cat, sp, FeatureSelection.of(sp, [name], "names"), 2019, window, tmp_path / "s1.tif")
    with rasterio.open(out) as s:
        got = s.read(1)
        scale = float(s.tags(1)["scale"])
    fp = np.array([[dy * dy + dx * dx <= 9 for dx in range(-3, 4)] for dy in range(-3, 4)])
    layers = []
    for path in truth["VV"]:
        with rasterio.open(path) as src:
            v = np.full(window.shape, np.nan, np.float32)
            reproject(
                src.read(1),
                v,
                src_transform=src.transform,
                src_crs=src.crs,
                src_nodata=0,
                dst_transform=window.transform,
                dst_crs=window.grid.crs,
                dst_nodata=np.nan,
                resampling=Resampling.nearest,
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            layers.append(generic_filter(v, np.nanmedian, footprint=fp, mode="constant", cval=np.nan))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.nanpercentile(10 * np.log10(np.stack(layers)), 50, axis=0) * scale
    ok = np.isfinite(want)
    assert ok.mean() > 0.95
    # bridge-lc-196 exports int16 (issue #16): the stored value rounded, as Earth Engine's toInt16
    assert got.dtype == np.int16
    np.testing.assert_array_less(np.abs(got[ok] - want[ok]), 0.5 + 1e-3)


@pytest.mark.parametrize("rows", [1, 4])
def test_s1_row_chunks_read_a_halo_for_the_focal_median(data: Path, tmp_path: Path, rows: int) -> None:
    """The 30 m focal median of a row chunk reads the kernel's radius of rows around it, cut at the
    window's edges: chunks of any height give the whole window's S1 features bit for bit."""
    from pipeline.core.spec import load_spec
    from tiles.engine.features import compute_features

    man, root = load_manifest("eolearn_slovenia")
    window = load_stack(man, root, variables={"B2"}).window
    cat, _ = _s1_catalog(tmp_path, window)
    stack = load_stac_stack(items_from_catalog(cat), window, ["VV", "VH"], year=2019, level="GRD", kind="s1")
    sp = load_spec("bridge-lc-196").subset(["s1_vv_p50", "s1_vh_p5"])
    whole = compute_features(sp, stack, 2019, chunk_rows=window.height)
    assert np.isfinite(whole).mean() > 0.95
    np.testing.assert_array_equal(compute_features(sp, stack, 2019, chunk_rows=rows), whole)


def test_mixed_crs_items_go_onto_the_eea_grid(data: Path, tmp_path: Path) -> None:
    """Items in different UTM zones (a scene re-projected to EPSG:32632, as S2 tiles straddling a
    zone border are): the target grid is always EPSG:3035, so they load together, and the moved
    scene's values are warped from its own CRS (= rasterio's nearest warp of that file)."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    cat = _catalog(data, tmp_path)
    items = items_from_catalog(cat)
    moved = items[2]
    for key, asset in moved.assets.items():
        src_path = Path(asset.get_absolute_href() or "")
        dest = tmp_path / f"utm32_{src_path.name}"
        with rasterio.open(src_path) as src:
            t, w, h = calculate_default_transform(
                src.crs, "EPSG:32632", src.width, src.height, *src.bounds, resolution=10
            )
            prof = src.profile | {"crs": "EPSG:32632", "transform": t, "width": w, "height": h}
            with rasterio.open(dest, "w", **prof) as d:
                reproject(rasterio.band(src, 1), rasterio.band(d, 1), resampling=Resampling.nearest)
        moved.assets[key].href = str(dest)
    man, root = load_manifest("eolearn_slovenia")
    local = load_stack(man, root, variables={"B2"})
    st = load_stac_stack(items, local.window, ["B2"], year=2015, level="L1C")
    assert st.window.grid.crs == "EPSG:3035" and st.variables["B2"][1].shape[0] == 5
    got = st.variables["B2"][1][2]
    with rasterio.open(moved.assets["B2"].href) as src:
        want = np.full(got.shape, np.nan, np.float32)
        reproject(
            src.read(1),
            want,
            src_transform=src.transform,
            src_crs=src.crs,
            src_nodata=0,
            dst_transform=local.window.transform,
            dst_crs="EPSG:3035",
            dst_nodata=np.nan,
            resampling=Resampling.nearest,
        )
    ok = np.isfinite(want)
    assert ok.mean() > 0.8
    assert (np.isclose(got[ok], want[ok] * 1e-4, rtol=1e-6)).mean() > 0.999
    others = [0, 1, 3, 4]
    np.testing.assert_array_equal(
        st.variables["B2"][1][others][np.isfinite(local.variables["B2"][1][others])] > 0, True
    )


def test_blocks_without_a_scene_stay_nodata(data: Path, tmp_path: Path) -> None:
    """A tile whose upper blocks no item covers (sea, a border strip): those rows are nodata and
    counted; the covered rows equal the computation on the covered window alone."""
    from affine import Affine

    from pipeline.core.grid import GridWindow
    from pipeline.core.selection import FeatureSelection
    from pipeline.core.spec import load_spec
    from tiles.engine.run import features_from_stac

    cat = _catalog(data, tmp_path)
    man, root = load_manifest("eolearn_slovenia")
    w = load_stack(man, root, variables={"B2"}).window
    extra = 450  # rows of the tall window north of the patch: 4 of its 100-row blocks hold no scene
    tall = GridWindow(
        w.grid,
        Affine(w.transform.a, 0, w.transform.c, 0, w.transform.e, w.transform.f + extra * w.grid.res_m),
        w.height + extra,
        w.width,
    )
    sp = load_spec("elc10")
    sel = FeatureSelection.of(sp, ["ndvi_p50"], "names")
    a = features_from_stac(
        cat, sp, sel, 2015, tall, tmp_path / "tall.tif", level="L1C", cloud_mask="none", block_rows=100
    )
    b = features_from_stac(cat, sp, sel, 2015, w, tmp_path / "patch.tif", level="L1C", cloud_mask="none")
    with rasterio.open(a) as ta, rasterio.open(b) as tb:
        va, vb = ta.read(1), tb.read(1)
        assert int(ta.tags(1)["nodata_pixels"]) >= 400 * w.width
    assert np.isnan(va[:400]).all()
    np.testing.assert_array_equal(va[extra:], vb)
    far = GridWindow(
        w.grid, Affine(w.transform.a, 0, w.transform.c, 0, w.transform.e, w.transform.f + 50_000), 100, 100
    )
    with pytest.raises(RasterError, match="no scene in the window"):
        features_from_stac(cat, sp, sel, 2015, far, tmp_path / "far.tif", level="L1C", cloud_mask="none")


def test_the_asset_reader_keeps_files_open_or_not_with_the_same_values(data: Path, tmp_path: Path) -> None:
    """Datasets kept open across blocks (the default) or opened per read (past the open-file
    limit) give the same stack, on one thread or two; a truncated asset is named (issue #28)."""
    from tiles.engine.asset_reader import AssetReader

    cat = _catalog(data, tmp_path)
    man, root = load_manifest("eolearn_slovenia")
    window = load_stack(man, root, variables={"B2"}).window
    items = items_from_catalog(cat)
    stacks = []
    for threads, max_open in ((2, None), (1, 0), (2, 3)):
        with AssetReader(threads, max_open) as reader:
            stacks.append(load_stac_stack(items, window, BANDS, year=2015, level="L1C", reader=reader))
            assert len(reader._open) <= (max_open if max_open is not None else 10**6)
    for st in stacks[1:]:
        for b in BANDS:
            np.testing.assert_array_equal(st.variables[b][1], stacks[0].variables[b][1])
    href = Path(items[1].assets["B4"].get_absolute_href() or "")
    href.write_bytes(href.read_bytes()[:300])  # truncated
    with pytest.raises(RasterError, match=rf"asset {items[1].id}/B4 cannot be read"):
        load_stac_stack(items, window, BANDS, year=2015, level="L1C")


def test_block_rows_follow_the_sources_a_block_holds() -> None:
    """A block's stack stays within the budget (issue #28): 256 rows for a 10 km tile of the NDVI
    bundle (140 uint16 + 70 uint8 slices) and of elc10-l1 held as stored (1,810 bytes a pixel);
    its 820 slices as float32 (3,280 bytes) take 163; never below the floor."""
    from tiles.engine.run import BLOCK_STACK_BYTES, MIN_BLOCK_ROWS, block_rows_for

    assert block_rows_for(140 * 2 + 70, 1000) == 256 and block_rows_for(1810, 1000) == 256
    assert block_rows_for(820 * 4, 1000) == 163
    assert 820 * 4 * 163 * 1000 <= BLOCK_STACK_BYTES < 820 * 4 * 164 * 1000
    assert block_rows_for(400_000, 1000) == MIN_BLOCK_ROWS and block_rows_for(0, 1000) == 256


def test_held_bytes_are_what_the_encoded_stack_holds(data: Path, tmp_path: Path) -> None:
    """The block budget's bytes per pixel are those of the stack the loader builds: 2 per date for a
    uint16 band held as stored, 4 for a float32 one (the float32 DN catalogue)."""
    from tiles.engine.asset_reader import AssetReader
    from tiles.engine.stac_load import held_bytes

    man, root = load_manifest("eolearn_slovenia")
    window = load_stack(man, root, variables={"B2"}).window
    for dtype, size in (("uint16", 2), ("float32", 4)):
        sub = tmp_path / dtype
        sub.mkdir()
        items = items_from_catalog(_catalog(data, sub, dtype=dtype))
        with AssetReader() as reader:
            got = held_bytes(items, BANDS, "s2", reader)
            st = load_stac_stack(items, window, BANDS, year=2015, level="L1C", reader=reader, encoded=True)
        assert got == len(BANDS) * size
        assert sum(v.nbytes for _, v in st.variables.values()) == got * len(items) * window.height * window.width
