"""Crosswalks on the real reference tiles; map-vs-reference comparison whose agreement is known
(a crosswalked copy of each tile, perturbed or shifted); change, zones, points; the report."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject
from shapely.geometry import box

from pipeline.assess.compare import compare, summary
from pipeline.core.cog import write_cog
from pipeline.core.errors import RasterError
from pipeline.core.legend import Crosswalk, level1_legend, level2_legend

from .conftest import SURVEY

TILES = {  # real reference tiles (SOURCES.md §4, §5, §7, §8) and their crosswalks
    "osm_clcplus": "osm_clcplus_netherlands/netherlands_osm_clcplus_14580_sample.tif",
    "corine_l3": "clc2018_lanjaron_spain/clc2018_lanjaron_25m.tif",
    "eucropmap": "eucropmap2018_jrc/eucropmap2018_example_map_denmark.tif",
    "eolearn_lulc": "eolearn_testeopatch_slovenia/lulc_reference.tif",
}


@pytest.mark.parametrize("name", list(TILES))
def test_every_code_of_the_real_tile_is_in_its_crosswalk(name: str, data: Path) -> None:
    with rasterio.open(data / TILES[name]) as s:
        codes = s.read(1)
        nod = s.nodata
    vals = np.unique(codes[codes != nod] if nod is not None else codes)
    ids, rep = Crosswalk.shipped(name).apply(vals)
    assert not rep.unknown, rep.unknown
    assert (ids[ids >= 0] < 7).all() and (ids >= 0).sum() >= len(vals) - 1


def test_clcplus_backbone_follows_the_paper() -> None:
    cw = Crosswalk.shipped("clcplus_backbone").mapping
    l1 = {c.name: c.id for c in level1_legend().classes}
    assert [cw[str(c)] for c in (2, 3, 4, 5)] == [l1["Woodland/Shrubland"]] * 4  # trees, low woody
    assert cw["6"] == l1["Grassland"] and cw["7"] == l1["Cropland"]  # permanent / periodically herbaceous
    assert cw["1"] == l1["Artificial land"] and cw["10"] == l1["Water"]
    assert cw["8"] == cw["9"] == l1["Bare land and lichens/moss"]
    assert cw["255"] is None and len([k for k, v in cw.items() if v is not None]) == 11


def test_eu_crop_map_level2(data: Path) -> None:
    with rasterio.open(data / TILES["eucropmap"]) as s:
        codes = np.unique(s.read(1))
    l2, rep = Crosswalk.shipped("eucropmap").apply(codes, level="level2")
    names = level2_legend().names
    got = {int(c): names[i] for c, i in zip(codes, l2, strict=True) if i >= 0}
    assert got[211] == "Common wheat" and got[216] == "Maize" and got[290] == "Bare arable land"
    assert set(got) == {int(c) for c in codes if 200 < c < 300}  # every crop code, nothing else


# how each tile must be aligned to 10 m: finer pixels by mode (NL 2 m; the EU crop map's 8.98e-5°
# is 5.7 m east-west at 55° N), coarser by nearest (CORINE 25 m)
METHOD = {"osm_clcplus": "mode", "corine_l3": "nearest", "eucropmap": "mode", "eolearn_lulc": "nearest"}


def _aligned_l1(
    ref: Path, crosswalk: str, dest_crs: str = "EPSG:3035", res_m: float = 10.0, pad: int = 0
) -> tuple[np.ndarray, object]:
    """The reference on a 10 m EPSG:3035 grid (widened by ``pad`` pixels on every side),
    crosswalked: an independent rasterio pipeline reading the whole reference at once."""
    with rasterio.open(ref) as s:
        t, w, h = calculate_default_transform(s.crs, dest_crs, s.width, s.height, *s.bounds, resolution=res_m)
        t, w, h = t @ t.translation(-pad, -pad), w + 2 * pad, h + 2 * pad
        codes = s.read(1).astype(np.float64)
        if s.nodata is not None:
            codes[codes == s.nodata] = np.nan
        finer = METHOD[crosswalk] == "mode"
        out = np.full((h, w), np.nan)
        reproject(
            codes,
            out,
            src_transform=s.transform,
            src_crs=s.crs,
            src_nodata=np.nan,
            dst_transform=t,
            dst_crs=dest_crs,
            dst_nodata=np.nan,
            resampling=Resampling.mode if finer else Resampling.nearest,
        )
    ids = np.full(out.shape, 255, np.uint8)
    ok = np.isfinite(out)
    got, _ = Crosswalk.shipped(crosswalk).apply(out[ok].astype(np.int64))
    ids[ok] = np.where(got >= 0, got, 255)
    return ids, t


def _write_map(ids: np.ndarray, t: object, dest: Path) -> Path:
    leg = level1_legend()
    return write_cog(
        dest,
        ids,
        t,
        "EPSG:3035",
        255,
        tags={"legend": leg.to_json()},
        colormap=leg.colormap(),  # type: ignore[arg-type]
        resampling="mode",
    )


@pytest.mark.parametrize("name", ["osm_clcplus", "corine_l3", "eucropmap", "eolearn_lulc"])
def test_agreement_with_a_perturbed_copy_is_known(name: str, data: Path, tmp_path: Path) -> None:
    ref = data / TILES[name]
    ids, t = _aligned_l1(ref, name)
    valid = ids != 255
    rng = np.random.default_rng(7)
    flip = valid & (rng.random(ids.shape) < 0.05)
    pert = ids.copy()
    pert[flip] = (pert[flip] + 1) % 7
    c = compare(_write_map(pert, t, tmp_path / "map.tif"), ref, Crosswalk.shipped(name), level1_legend())
    assert c.resampling == METHOD[name]
    s = summary(c, level1_legend())
    # exact where no reprojection approximates; the oracle's GDAL approximate transformer (0.125 px)
    # picks another source pixel than eulc's exact one for a few pixels per thousand otherwise
    tol = 1e-12 if name in ("osm_clcplus", "eolearn_lulc") else 3e-3
    assert abs(s["n_pixels"] - int(valid.sum())) <= tol * valid.sum()
    assert s["overall_agreement"] == pytest.approx(1 - flip.sum() / valid.sum(), abs=tol)
    # shifted by one pixel east: agreement = share of pixels equal to their west neighbour
    shifted = np.full_like(ids, 255)
    shifted[:, 1:] = ids[:, :-1]
    c2 = compare(_write_map(shifted, t, tmp_path / "shift.tif"), ref, Crosswalk.shipped(name), level1_legend())
    both = (shifted != 255) & valid
    assert summary(c2, level1_legend())["overall_agreement"] == pytest.approx((shifted == ids)[both].mean(), abs=tol)


def test_report_on_the_netherlands_tile(data: Path, tmp_path: Path) -> None:
    from pipeline.assess.report import write_report

    ref = data / TILES["osm_clcplus"]
    ids, t = _aligned_l1(ref, "osm_clcplus")
    before = _write_map(ids, t, tmp_path / "before.tif")
    after_ids = ids.copy()
    after_ids[:20, :] = np.where(after_ids[:20, :] != 255, 6, 255)  # 20 rows become cropland
    after = _write_map(after_ids, t, tmp_path / "after.tif")
    zones = tmp_path / "zones.geojson"
    with rasterio.open(after) as s:
        b = s.bounds
    mid = (b.left + b.right) / 2
    gpd.GeoDataFrame(
        {"name": ["west", "east"]},
        geometry=[box(b.left, b.bottom, mid, b.top), box(mid, b.bottom, b.right, b.top)],
        crs="EPSG:3035",
    ).to_file(zones)
    out = tmp_path / "report"
    m = write_report(
        after,
        ref,
        "osm_clcplus",
        out,
        points=data / "osm_clcplus_netherlands/sample_points.gpkg",
        zones=zones,
        previous=before,
    )
    assert m["crosswalk"]["name"] == "osm_clcplus" and m["resampling"] == "mode"
    assert [r["tile"] for r in m["by_tile"]] == ["10kmE402N322"]  # the 1 km tile's EEA cell
    assert m["by_bioregion"][0]["bioregion"] == "Atlantic"
    assert m["by_tile"][0]["agreement"] == pytest.approx(m["overall_agreement"])
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6 and "<script" not in html
    js = json.loads((out / "metrics.json").read_text())
    assert set(js) >= {"overall_agreement", "per_class", "confusion", "reference_sample", "transitions_ha"}
    assert js["reference_sample"]["n_points"] == 1  # the one real LUCAS point (LC1 C10, woodland)
    trans = np.array(js["transitions_ha"]["matrix"])
    changed = ((ids != 255) & (after_ids != ids)).sum() * 0.01
    assert trans.sum() - np.trace(trans) == pytest.approx(changed)
    import pandas as pd

    z = pd.read_csv(out / "zones.csv")
    assert z["map_ha"].sum() == pytest.approx((after_ids != 255).sum() * 0.01)
    assert z.query("`class` == 'Cropland'")["change_ha"].sum() > 0
    for f in ("confusion_ha.csv", "per_class.csv", "area_estimates.csv", "disagreement.tif"):
        assert (out / f).is_file()


def test_two_eulc_maps_compare_with_the_identity_crosswalk(data: Path, tmp_path: Path) -> None:
    ids, t = _aligned_l1(data / TILES["corine_l3"], "corine_l3")
    a = _write_map(ids, t, tmp_path / "a.tif")
    b_ids = ids.copy()
    b_ids[ids == 0] = 1  # every woodland pixel becomes grassland in map b
    b = _write_map(b_ids, t, tmp_path / "b.tif")
    c = compare(a, b, Crosswalk.shipped("eulc_level1"), level1_legend())
    valid = ids != 255
    assert summary(c, level1_legend())["overall_agreement"] == pytest.approx(1 - (ids[valid] == 0).mean())
    assert c.confusion[0, 1] == (ids == 0).sum()  # map a woodland = reference b grassland


def test_bad_inputs(data: Path, tmp_path: Path) -> None:
    nl = data / TILES["osm_clcplus"]
    ids, t = _aligned_l1(nl, "osm_clcplus")
    m = _write_map(ids, t, tmp_path / "nl.tif")
    with pytest.raises(RasterError, match="does not overlap"):
        compare(m, data / TILES["corine_l3"], Crosswalk.shipped("corine_l3"), level1_legend())
    with pytest.raises(RasterError, match=r"missing from the crosswalk 'corine_l3': 10 \("):
        compare(m, nl, Crosswalk.shipped("corine_l3"), level1_legend())
    bare = tmp_path / "no_transform.tif"
    with rasterio.open(bare, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8", crs="EPSG:3035") as d:
        d.write(np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(RasterError, match="no geotransform"):
        compare(m, bare, Crosswalk.shipped("osm_clcplus"), level1_legend())
    from pipeline.assess.refpoints import read_points, sample_accuracy

    far = read_points(data / "osm_clcplus_netherlands/sample_points.gpkg")
    far.geometry = far.geometry.translate(50_000, 0)
    with pytest.raises(RasterError, match="none of the 1 reference points"):
        sample_accuracy(m, far, level1_legend())


def test_lucas_survey_points_are_reference_points(data: Path) -> None:
    """The LUCAS 2018 topsoil survey CSV (TH_LONG/TH_LAT, LC/LU codes), as `eulc sample` and
    `eulc gee export-table` read it, is also a reference sample for `eulc report --points`."""
    from pipeline.assess.refpoints import read_points
    from pipeline.core.legend import lucas_to_levels

    raw = pd.read_csv(data / SURVEY)
    pts = read_points(data / SURVEY)
    assert len(pts) == len(raw) and pts.crs.to_epsg() == 4326
    np.testing.assert_allclose(pts.geometry.x, raw["TH_LONG"])
    np.testing.assert_allclose(pts.geometry.y, raw["TH_LAT"])
    want, _, _ = lucas_to_levels(raw["LC"].astype("string"), raw["LU"])
    assert (pts["level1"].astype("Int64") == pd.array(want, dtype="Int64")).all()
    assert pts["level1"].notna().mean() > 0.95
