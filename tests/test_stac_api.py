"""The STAC API path offline: a real STAC API server (rustac's in-memory backend) serves
collections over the real Slovenia L1C bands (with a seeded SCL layer: L1C has none), seeded
Sentinel-1 σ⁰ rasters (no S1 raster is in the shared data) and the real Slovenia DEM; the
engine searches it with pystac-client and reads the assets, exactly as against Earth Search
or Planetary Computer."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.warp import Resampling

from pipeline.core.cloud_mask import SCL_FALLBACK
from pipeline.core.errors import RasterError
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import load_spec
from tiles.engine.run import features_from_stac
from tiles.engine.stac_search import StacApi
from tiles.engine.stack import load_manifest, load_stack

from .oracles import reproject_exact
from .test_stac_load import _catalog, _s1_catalog

CLOUDY_ITEM = "s2l1c_toa_13bands_20150820"  # given eo:cloud_cover 90 %: above elc10's 60 % scene filter


def _scl(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Seeded Sen2Cor classes: mostly vegetation (4), some cloud (8, 9), cirrus (10), shadow (3)."""
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([4, 4, 4, 4, 5, 3, 8, 9, 10], np.uint8), size=shape)


def _collection(cid: str, items: list[pystac.Item], root: Path) -> Path:
    from pystac import Collection, Extent, SpatialExtent, TemporalExtent

    coll = Collection(
        cid, f"test collection {cid}", Extent(SpatialExtent([[13.0, 45.0, 16.0, 47.0]]), TemporalExtent([[None, None]]))
    )
    for it in items:
        c = it.clone()
        for a in c.assets.values():
            a.href = a.get_absolute_href() or a.href
        coll.add_item(c)
    coll.normalize_hrefs(str(root / cid))
    coll.save(pystac.CatalogType.ABSOLUTE_PUBLISHED)
    return root / cid / "collection.json"


def _ndvi_items(data: Path, tmp: Path) -> list[pystac.Item]:
    """The real 68-date Slovenia NDVI series as one item per date, assets ``ndvi`` (unitless) and
    ``CLP`` (s2cloudless probability in percent); eo-learn's IS_VALID = 0 is written as nodata."""
    import datetime as dt

    from pyproj import Transformer

    root = data / "eolearn_testeopatch_slovenia"
    with (
        rasterio.open(root / "ndvi_68dates.tif") as nd,
        rasterio.open(root / "is_valid_68dates.tif") as va,
        rasterio.open(root / "cloud_probability_s2cloudless_68dates.tif") as cp,
    ):
        lon, lat = Transformer.from_crs(nd.crs, 4326, always_xy=True).transform(
            [nd.bounds.left, nd.bounds.right], [nd.bounds.bottom, nd.bounds.top]
        )
        geom = {
            "type": "Polygon",
            "coordinates": [[[lon[0], lat[0]], [lon[1], lat[0]], [lon[1], lat[1]], [lon[0], lat[1]], [lon[0], lat[0]]]],
        }
        prof = nd.profile | {"count": 1, "dtype": "float32", "nodata": float("nan"), "driver": "GTiff"}
        items = []
        for b in range(1, nd.count + 1):
            when = dt.datetime.fromisoformat(nd.descriptions[b - 1]).replace(tzinfo=dt.UTC)
            it = pystac.Item(f"ndvi_{when:%Y%m%dT%H%M%S}", geom, [lon[0], lat[0], lon[1], lat[1]], when, {})
            ndvi = nd.read(b).astype(np.float32)
            ndvi[va.read(b) == 0] = np.nan
            for key, arr in (("ndvi", ndvi), ("CLP", cp.read(b).astype(np.float32) * 100)):
                path = tmp / f"{it.id}_{key}.tif"
                with rasterio.open(path, "w", **prof) as dst:
                    dst.write(arr, 1)
                it.add_asset(key, pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
            items.append(it)
    return items


@pytest.fixture(scope="module")
def api(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, object]]]:
    """Serve sentinel-2-l1c (+SCL), sentinel-1-rtc and cop-dem-glo-30 on a free local port."""
    tmp = tmp_path_factory.mktemp("stacapi")
    s2_items = list(pystac.read_file(str(_catalog(data, tmp))).get_items(recursive=True))
    scl: dict[str, Path] = {}
    for i, it in enumerate(s2_items):
        it.properties["eo:cloud_cover"] = 90.0 if it.id == CLOUDY_ITEM else 10.0
        b2 = Path(it.assets["B2"].get_absolute_href() or "")
        with rasterio.open(b2) as src:
            prof = src.profile | {"dtype": "uint8", "nodata": 0}
            path = tmp / f"{it.id}_SCL.tif"
            with rasterio.open(path, "w", **prof) as dst:
                dst.write(_scl(src.shape, i), 1)
        it.add_asset("scl", pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
        scl[it.id] = path
    man, root = load_manifest("eolearn_slovenia")
    window = load_stack(man, root, variables={"B2"}).window
    s1_cat, _ = _s1_catalog(tmp, window)
    s1_items = list(pystac.read_file(str(s1_cat)).get_items(recursive=True))
    dem = data / "eolearn_testeopatch_slovenia" / "dem.tif"
    with rasterio.open(dem) as d:
        from pyproj import Transformer

        lon, lat = Transformer.from_crs(d.crs, 4326, always_xy=True).transform(
            [d.bounds.left, d.bounds.right], [d.bounds.bottom, d.bounds.top]
        )
    import datetime as dt

    dem_item = pystac.Item(
        "dem_slovenia",
        {
            "type": "Polygon",
            "coordinates": [[[lon[0], lat[0]], [lon[1], lat[0]], [lon[1], lat[1]], [lon[0], lat[1]], [lon[0], lat[0]]]],
        },
        [lon[0], lat[0], lon[1], lat[1]],
        dt.datetime(2021, 4, 22, tzinfo=dt.UTC),
        {},
    )
    dem_item.add_asset("data", pystac.Asset(str(dem), media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
    served = tmp / "served"
    hrefs = [
        _collection("sentinel-2-l1c", s2_items, served),
        _collection("sentinel-1-rtc", s1_items, served),
        _collection("cop-dem-glo-30", [dem_item], served),
        _collection("slovenia-ndvi", _ndvi_items(data, tmp), served),
    ]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "rustac"
    proc = subprocess.Popen(
        [str(exe), "serve", "--addr", f"127.0.0.1:{port}", "--load-collection-items", *map(str, hrefs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(url + "/collections/cop-dem-glo-30/items", timeout=1) as r:
                    if b"dem_slovenia" in r.read():
                        break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"rustac serve exited: {proc.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.1)
        else:
            raise RuntimeError("rustac serve did not come up in 30 s")
        yield url, {"window": window, "scl": scl, "s1_catalog": s1_cat, "dem": dem}
    finally:
        proc.terminate()
        proc.wait(10)


def test_s2_from_the_api_with_the_scl_fallback_and_the_scene_filter(
    data: Path, api: tuple[str, dict], tmp_path: Path
) -> None:
    """elc10 masks by s2cloudless CLP >= 40; the items carry SCL only: SCL 1/8/9/10 is applied
    and recorded. The 90 % cloudy scene is dropped by the spec's 60 % scene filter (the server
    has no Query extension: the filter is applied to the returned items). Values equal an
    independent numpy computation on the real bands."""
    url, ctx = api
    sp = load_spec("elc10")
    names = ["ndvi_p50", "ndvi_p95"]
    out = features_from_stac(
        StacApi(url, {"s2": "sentinel-2-l1c"}),
        sp,
        FeatureSelection.of(sp, names, "names"),
        2015,
        ctx["window"],
        tmp_path / "api.tif",
        level="L1C",
    )
    with rasterio.open(out) as s:
        got = s.read()
        tags = s.tags()
        scales = [float(s.tags(i + 1)["scale"]) for i in range(s.count)]
    assert "SCL 1,8,9,10 (fallback" in tags["cloud_mask"] and "CLP >= 40" in tags["cloud_mask"]
    assert CLOUDY_ITEM not in tags["sources"] and "20150711" in tags["sources"]
    man, root = load_manifest("eolearn_slovenia")
    local = load_stack(man, root, variables={"B4", "B8"})
    t4, b4 = local.variables["B4"]
    _, b8 = local.variables["B8"]
    days = [str(t)[:10].replace("-", "") for t in t4.astype("datetime64[D]")]
    keep = [i for i, d in enumerate(days) if not CLOUDY_ITEM.endswith(d)]
    assert len(keep) == 4
    ndvi = (b8 - b4) / (b8 + b4)
    for i, d in enumerate(days):
        item = f"s2l1c_toa_13bands_{d}"
        with rasterio.open(ctx["scl"][item]) as src:
            cls = np.full(local.window.shape, 0, np.float32)
            reproject_exact(
                src.read(1).astype(np.float32),
                cls,
                src_transform=src.transform,
                src_crs=src.crs,
                dst_transform=local.window.transform,
                dst_crs=local.window.grid.crs,
                resampling=Resampling.nearest,
            )
        ndvi[i][np.isin(cls, SCL_FALLBACK)] = np.nan
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.stack([np.nanpercentile(ndvi[keep], q, axis=0) for q in (50, 95)])
    want *= np.array(scales, np.float32)[:, None, None]
    ok = np.isfinite(want) & np.isfinite(got)
    assert ok.mean() > 0.7
    np.testing.assert_array_equal(np.isnan(got[ok]), np.isnan(want[ok]))
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-4, atol=0.05)


def test_s1_and_dem_from_the_api(api: tuple[str, dict], tmp_path: Path) -> None:
    """S1 σ⁰ from sentinel-1-rtc = the static-catalogue path (itself checked against scipy in
    test_stac_load); dem_elevation from cop-dem-glo-30's ``data`` asset = the real DEM, metres."""
    url, ctx = api
    sp = load_spec("bridge-lc-196")
    window = ctx["window"]
    names = ["s1_vv_p50", "s1_vh_m03", "dem_elevation"]
    source = StacApi(url, {"s2": "sentinel-2-l1c", "s1": "sentinel-1-rtc", "dem": "cop-dem-glo-30"})
    out = features_from_stac(source, sp, FeatureSelection.of(sp, names, "names"), 2019, window, tmp_path / "a.tif")
    ref = features_from_stac(
        ctx["s1_catalog"], sp, FeatureSelection.of(sp, names[:2], "names"), 2019, window, tmp_path / "b.tif"
    )
    with rasterio.open(out) as a, rasterio.open(ref) as b, rasterio.open(ctx["dem"]) as d:
        assert list(a.descriptions) == names
        np.testing.assert_array_equal(a.read([1, 2]), b.read())
        got = a.read(3) / float(a.tags(3)["scale"])
        want = np.full(got.shape, np.nan, np.float32)
        reproject_exact(
            d.read(1),
            want,
            src_transform=d.transform,
            src_crs=d.crs,
            dst_transform=a.transform,
            dst_crs=a.crs,
            dst_nodata=np.nan,
            resampling=Resampling.nearest,
        )
    ok = np.isfinite(want)
    assert ok.mean() > 0.8 and 200 < np.nanmedian(got) < 1000
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-6)


def test_api_errors_name_the_collection_and_the_option(api: tuple[str, dict], tmp_path: Path) -> None:
    url, ctx = api
    sp = load_spec("bridge-lc-196")
    sel = FeatureSelection.of(sp, ["s1_vv_p50"], "names")
    with pytest.raises(RasterError, match="need S1 items .* Give `s1_collection`"):
        features_from_stac(StacApi(url, {"s2": "sentinel-2-l1c"}), sp, sel, 2019, ctx["window"], tmp_path / "x.tif")
    with pytest.raises(RasterError, match="'sentinel-1-grd' .* uncalibrated amplitude digital numbers"):
        features_from_stac(
            StacApi(url, {"s2": "sentinel-2-l1c", "s1": "sentinel-1-grd"}),
            sp,
            sel,
            2019,
            ctx["window"],
            tmp_path / "x.tif",
        )
    lst = FeatureSelection.of(sp, ["lst_m07"], "names")
    with pytest.raises(RasterError, match="MOD21C3 LST, which no public STAC collection carries"):
        features_from_stac(StacApi(url, {"s2": "sentinel-2-l1c"}), sp, lst, 2019, ctx["window"], tmp_path / "x.tif")
    elc = load_spec("elc10")
    with pytest.raises(RasterError, match="no scene in the window"):
        features_from_stac(
            StacApi(url, {"s2": "sentinel-2-l1c"}),
            elc,
            FeatureSelection.of(elc, ["ndvi_p50"], "names"),
            2016,
            ctx["window"],
            tmp_path / "x.tif",
            level="L1C",
        )
    assert not (tmp_path / "x.tif").exists()


def test_features_command_against_the_api(api: tuple[str, dict], tmp_path: Path) -> None:
    """`eulc features --stac URL --s1-collection --dem-collection` on a real 1 km cell writes the
    feature COG on the cell's grid; a rerun skips it, a rerun with other features replaces it."""
    from pipeline.core.grid import TileId

    from .test_cli import eulc

    url, _ = api
    args = [
        "features",
        "--stac",
        url,
        "--s1-collection",
        "sentinel-1-rtc",
        "--dem-collection",
        "cop-dem-glo-30",
        "--tiles",
        "1kmE4674N2539",
        "--tile-size",
        "1km",
        "--year",
        "2019",
        "--spec",
        "bridge-lc-196",
        "--features",
        "s1_vv_p50,dem_elevation",
        "--out",
        str(tmp_path / "f"),
    ]
    p = eulc(*args)
    assert p.returncode == 0, p.stderr[-2000:]
    with rasterio.open(tmp_path / "f" / "1kmE4674N2539_2019.tif") as s:
        assert list(s.descriptions) == ["s1_vv_p50", "dem_elevation"]
        assert s.transform == TileId.parse("1kmE4674N2539").window().transform
        v = s.read()
    assert np.isfinite(v).mean() > 0.5 and -30 < np.nanmedian(v[0]) / 100 < 0  # σ⁰ VV in dB (x100 stored)
    again = eulc(*args)
    assert again.returncode == 0 and "wrote 0 feature COG(s)" in " ".join(again.stdout.split())
    assert "(1 up to date)" in " ".join(again.stdout.split())
    other = [a if a != "s1_vv_p50,dem_elevation" else "s1_vh_p50,dem_elevation" for a in args]
    changed = eulc(*other)  # another selection: the tile is recomputed, not skipped
    assert changed.returncode == 0 and "wrote 1 feature COG(s)" in " ".join(changed.stdout.split())
    with rasterio.open(tmp_path / "f" / "1kmE4674N2539_2019.tif") as s:
        assert list(s.descriptions) == ["s1_vh_p50", "dem_elevation"]


def test_the_readme_one_command_maps_from_a_stac_api(api: tuple[str, dict], tmp_path: Path) -> None:
    """`eulc map --stac URL --year --tiles --bundle` (the README's command without a GEE account)
    on the real 68-date Slovenia NDVI series with its s2cloudless CLP: the features equal the
    local engine's on the same real data (the demo's path), and the map is written."""
    from pipeline.core.grid import TileId
    from pipeline.core.reader import FeatureReader
    from pipeline.stages.pretrained import models_dir
    from tiles.engine.run import features_from_stack

    from .test_cli import eulc

    url, _ = api
    out = tmp_path / "maps"
    bundle = models_dir() / "elc10-ndvi-l1"
    p = eulc(
        "map",
        "--stac",
        url,
        "--collection",
        "slovenia-ndvi",
        "--processing-level",
        "L1C",
        "--year",
        "2017",
        "--tiles",
        "1kmE4674N2539",
        "--tile-size",
        "1km",
        "--bundle",
        str(bundle),
        "--out",
        str(out),
        "--scheduler",
        "sync",
    )
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    feats = out / "features" / "1kmE4674N2539_2017.tif"
    with rasterio.open(feats) as s:
        assert s.tags()["cloud_mask"] == "s2: s2cloudless CLP >= 40"
        names = list(s.descriptions)
    maps = sorted(out.rglob("*1kmE4674N2539*class*.tif")) or sorted(out.rglob("*1kmE4674N2539*.tif"))
    maps = [m for m in maps if "features" not in m.parts]
    assert maps, sorted(str(x) for x in out.rglob("*"))
    with rasterio.open(maps[0]) as m:
        assert m.transform == TileId.parse("1kmE4674N2539").window().transform
        mapped = m.read(1) != m.nodata
    sp = load_spec("elc10")
    ref = features_from_stack(
        "eolearn_slovenia", sp, FeatureSelection.of(sp, names, "names"), 2017, tmp_path / "ref.tif"
    )
    cell = TileId.parse("1kmE4674N2539").window()
    with FeatureReader(feats, names) as a, FeatureReader(ref, names) as b:
        got, want = a.read(cell), b.read(cell)
    np.testing.assert_array_equal(mapped, np.isfinite(got).all(0))  # every pixel with features is mapped
    assert mapped.sum() > 3000  # the 1 km² patch is rotated (UTM) and covers part of the cell
    pct = [i for i, n in enumerate(names) if "texture" not in n]  # texture_sd differs at the stack's edge
    g, w = got[pct], want[pct]
    both = np.isfinite(g) & np.isfinite(w)
    assert both.sum() > 0.35 * g.size  # ~3,850 of the 10,000 cell pixels have data
    assert (np.isclose(g, w, rtol=1e-5, atol=1e-3) | ~both).mean() > 0.999
