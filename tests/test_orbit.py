"""Spec fields do what they say in both engines (issue #13): `orbit` picks the Sentinel-1 pass,
`units` says what the expressions read (dB or linear σ⁰), derived and texture features build on GEE.

No Sentinel-1 raster is in the shared data: the local tests use seeded gamma speckle with two
passes of different backscatter (ascending 0.08, descending 0.02 linear σ⁰), generated here.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import ee
import numpy as np
import pystac
import pytest
import rasterio
import yaml
from pyproj import Transformer
from rasterio.transform import from_origin

from gee_scripts.images import export_image, feature_image
from pipeline.core.errors import RasterError, SpecError
from pipeline.core.grid import TileId
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import FeatureSpec, load_spec

from .oracles import reproject_exact
from .test_gee import _find, _region, _value, gee  # noqa: F401 - the offline ee fixture

S1_NAMES = [
    "asc_vv_median",
    "asc_vh_median",
    "asc_dpol_median",
    "desc_vv_median",
    "desc_vh_median",
    "desc_dpol_median",
    "asc_vv_stDev",
]
WINDOW = TileId.parse("1kmE4674N2539").window()
MEANS = {"ASCENDING": {"VV": 0.08, "VH": 0.02}, "DESCENDING": {"VV": 0.02, "VH": 0.004}}


def _s1_files(tmp: Path, with_orbit: bool = True) -> tuple[Path, dict[str, list[tuple[str, Path]]]]:
    """8 dates of 2018, alternating passes, VV/VH linear σ⁰ in EPSG:32633 over WINDOW; a static
    catalogue whose items carry `sat:orbit_state` (or not)."""
    rng = np.random.default_rng(5)
    lon, lat = Transformer.from_crs(3035, 4326, always_xy=True).transform(
        [WINDOW.bounds[0] - 300, WINDOW.bounds[2] + 300], [WINDOW.bounds[1] - 300, WINDOW.bounds[3] + 300]
    )
    x0, y1 = Transformer.from_crs(4326, 32633, always_xy=True).transform(lon[0], lat[1])
    t = from_origin(round(x0, -1), round(y1, -1), 10, 10)
    cat = pystac.Catalog("s1", "synthetic S1 with both passes")
    files: dict[str, list[tuple[str, Path]]] = {"VV": [], "VH": []}
    for d in range(8):
        orbit = "ASCENDING" if d % 2 == 0 else "DESCENDING"
        when = dt.datetime(2018, 1 + d, 12, 5, 0, tzinfo=dt.UTC)
        props = {"sat:orbit_state": orbit.lower()} if with_orbit else {}
        geom = {
            "type": "Polygon",
            "coordinates": [[[lon[0], lat[0]], [lon[1], lat[0]], [lon[1], lat[1]], [lon[0], lat[1]], [lon[0], lat[0]]]],
        }
        it = pystac.Item(f"s1_{d}", geom, [lon[0], lat[0], lon[1], lat[1]], when, props)
        for pol in ("VV", "VH"):
            arr = rng.gamma(4.0, MEANS[orbit][pol] / 4.0, (140, 140)).astype(np.float32)
            path = tmp / f"s1_{d}_{pol}.tif"
            with rasterio.open(
                path,
                "w",
                driver="GTiff",
                width=140,
                height=140,
                count=1,
                dtype="float32",
                crs="EPSG:32633",
                transform=t,
                nodata=0,
            ) as dst:
                dst.write(arr, 1)
            files[pol].append((orbit, path))
            it.add_asset(pol.lower(), pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
        cat.add_item(it)
    cat.normalize_hrefs(str(tmp))  # the assets lie inside the catalogue's folder tree
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    return tmp / "catalog.json", files


def _on_window(path: Path) -> np.ndarray:
    from rasterio.warp import Resampling

    with rasterio.open(path) as src:
        v = np.full(WINDOW.shape, np.nan, np.float32)
        reproject_exact(
            src.read(1),
            v,
            src_transform=src.transform,
            src_crs=src.crs,
            src_nodata=0,
            dst_transform=WINDOW.transform,
            dst_crs=WINDOW.grid.crs,
            dst_nodata=np.nan,
            resampling=Resampling.nearest,
        )
    return v


def _read(path: Path) -> dict[str, np.ndarray]:
    with rasterio.open(path) as s:
        return {n: s.read(i + 1) for i, n in enumerate(s.descriptions)}


def test_local_engine_keeps_each_pass_apart_and_reads_db(tmp_path: Path) -> None:
    from tiles.engine.run import features_from_stac

    cat, files = _s1_files(tmp_path)
    spec = load_spec("elc10")
    out = features_from_stac(cat, spec, FeatureSelection.of(spec, S1_NAMES, "names"), 2018, WINDOW, tmp_path / "s1.tif")
    got = _read(out)
    for orbit, prefix in (("ASCENDING", "asc"), ("DESCENDING", "desc")):
        for pol in ("VV", "VH"):
            layers = np.stack([_on_window(p) for o, p in files[pol] if o == orbit])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                want = np.nanmedian(10 * np.log10(layers), axis=0) * 1000  # elc10: dB, x1000
            ok = np.isfinite(want)
            assert ok.mean() > 0.95
            np.testing.assert_allclose(got[f"{prefix}_{pol.lower()}_median"][ok], want[ok], rtol=1e-5, atol=1e-2)
    # ascending and descending differ by their backscatter (10*log10(0.08/0.02) = 6 dB)
    diff = np.nanmedian(got["asc_vv_median"] - got["desc_vv_median"]) / 1000
    assert diff == pytest.approx(6.02, abs=0.3)
    ratio = got["asc_vh_median"] / got["asc_vv_median"] * 1000  # derived: median(VH dB) / median(VV dB)
    np.testing.assert_allclose(got["asc_dpol_median"], ratio, rtol=1e-4, equal_nan=True)
    with rasterio.open(out) as s:
        emb = FeatureSpec.model_validate(json.loads(s.tags()["feature_spec"]))
    assert {f.orbit for f in emb.features if f.name.startswith("asc_") and not f.derived} == {"ASCENDING"}


def test_a_stack_without_passes_is_refused_for_orbit_features(tmp_path: Path) -> None:
    from tiles.engine.run import features_from_stac

    cat, _ = _s1_files(tmp_path, with_orbit=False)
    spec = load_spec("elc10")
    with pytest.raises(RasterError, match="asc_vv_median.*ASCENDING passes only"):
        features_from_stac(
            cat, spec, FeatureSelection.of(spec, ["asc_vv_median"], "names"), 2018, WINDOW, tmp_path / "x.tif"
        )
    assert not (tmp_path / "x.tif").exists()


def test_manifest_items_carry_their_pass(tmp_path: Path) -> None:
    """The same files through a local stack manifest (`orbit:` per item)."""
    from tiles.engine.run import features_from_stack

    _, files = _s1_files(tmp_path)
    items = [
        {"path": p.name, "kind": "bands", "bands": [pol], "time": f"2018-{1 + i:02d}-12T05:00:00", "orbit": o}
        for pol in ("VV", "VH")
        for i, (o, p) in enumerate(files[pol])
    ]
    (tmp_path / "s1.yaml").write_text(yaml.safe_dump({"name": "s1", "sensor": "s1", "level": "GRD", "items": items}))
    spec = load_spec("elc10")
    out = features_from_stack(
        tmp_path / "s1.yaml", spec, FeatureSelection.of(spec, S1_NAMES, "names"), 2018, tmp_path / "m.tif"
    )
    got = _read(out)
    assert np.nanmedian(got["asc_vv_median"]) / 1000 == pytest.approx(10 * np.log10(0.08), abs=0.5)
    assert np.nanmedian(got["desc_vv_median"]) / 1000 == pytest.approx(10 * np.log10(0.02), abs=0.5)


def _orbits_in(img: ee.Image) -> set[str]:
    enc = json.dumps(ee.serializer.encode(img, for_cloud_api=True))
    return {o for o in ("ASCENDING", "DESCENDING") if f'"{o}"' in enc} if "orbitProperties_pass" in enc else set()


def test_gee_filters_each_feature_by_its_pass(gee) -> None:  # noqa: F811
    spec = load_spec("elc10")
    asc = feature_image(spec.subset(["asc_vv_median", "asc_vh_stDev"]), 2018, _region())
    desc = feature_image(spec.subset(["desc_vv_median"]), 2018, _region())
    both = feature_image(spec.subset(S1_NAMES), 2018, _region())
    assert _orbits_in(asc) == {"ASCENDING"} and _orbits_in(desc) == {"DESCENDING"}
    assert _orbits_in(both) == {"ASCENDING", "DESCENDING"}
    assert _value(_find(both, "Image.select")[0].args["bandSelectors"]) == spec.subset(S1_NAMES).names
    # bridge-lc-196 names no pass: no pass filter at all
    b = load_spec("bridge-lc-196")
    assert (
        _orbits_in(feature_image(b.subset([f.name for f in b.features if f.sensor == "s1"][:3]), 2022, _region()))
        == set()
    )


def test_gee_converts_units_only_where_the_collection_differs(gee) -> None:  # noqa: F811
    def enc(spec: FeatureSpec) -> str:
        s1 = [f.name for f in spec.features if f.sensor == "s1"][:2]
        return json.dumps(ee.serializer.encode(feature_image(spec.subset(s1), 2022, _region()), for_cloud_api=True))

    b = load_spec("bridge-lc-196")  # S1_GRD_FLOAT, linear: as stored
    assert "Image.log10" not in enc(b) or "log10" in b.sensors["s1"].model_dump_json()
    raw = b.model_dump(mode="json")
    raw["sensors"]["s1"]["units"] = "dB"  # the same collection read in dB: converted in the graph
    assert enc(FeatureSpec.model_validate(raw)).count("Image.log10") > enc(b).count("Image.log10")
    e = load_spec("elc10")  # S1_GRD is stored in dB and elc10 reads dB: no conversion
    assert "Image.log10" not in enc(e)


def test_units_that_do_not_fit_the_sensor_are_refused() -> None:
    raw = load_spec("elc10").model_dump(mode="json")
    raw["sensors"]["s2"]["units"] = "dB"
    with pytest.raises(ValueError, match="s2 sensor's units must be one of"):
        FeatureSpec.model_validate(raw)


def test_the_whole_elc10_spec_builds_on_gee(gee) -> None:  # noqa: F811
    """Texture (focal stdDev of the NDVI median) and derived dpol features: elc10 exports whole."""
    spec = load_spec("elc10")
    img = export_image(spec, 2018, _region())
    enc = json.dumps(ee.serializer.encode(img, for_cloud_api=True))
    assert "Image.reduceNeighborhood" in enc and "Image.parseExpression" in enc
    assert _value(_find(img, "Image.select")[0].args["bandSelectors"]) == spec.names
    with pytest.raises(SpecError, match="derived"):
        spec.subset(["asc_dpol_median"])  # a derived feature without its inputs is refused
