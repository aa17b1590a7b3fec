"""The windowed comparison (issue #16) on the real reference tiles: the same confusion,
exclusions, crosswalk counts, blocks, disagreement COG and thumbnails whatever the window size
(25-px windows against one window holding the whole grid), each output equal to its definition
computed from whole arrays, the reference equal to independent whole-array reprojections
(rasterio ``reproject`` of the whole file; exact nearest neighbour by pyproj), and the same
results from a VRT mosaic of map tiles as from one COG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from pipeline.assess.compare import compare, summary
from pipeline.core.legend import Crosswalk, level1_legend
from tests.test_compare import METHOD, TILES, _aligned_l1, _write_map


def _map_and_oracle(name: str, data: Path) -> tuple[np.ndarray, np.ndarray, object]:
    """A perturbed copy of the crosswalked tile on a grid 20 px wider on every side, whose 3 top
    rows are grassland everywhere (so some map pixels face no reference: nodata or outside it),
    and the reference ids on that grid (255 = none)."""
    pad = 20
    ids, t = _aligned_l1(data / TILES[name], name, pad=pad)
    rng = np.random.default_rng(11)
    valid = ids != 255
    flip = valid & (rng.random(ids.shape) < 0.07)
    mp = ids.copy()
    mp[flip] = (mp[flip] + 3) % 7
    mp[: pad + 3, :] = 1
    return mp, ids, t


def _oracle_blocks(mp: np.ndarray, ids: np.ndarray, step: int) -> dict[tuple[int, int], tuple[int, int]]:
    out = {}
    both = (mp != 255) & (ids != 255)
    agree = both & (mp == ids)
    for r in range(0, mp.shape[0], step):
        for c in range(0, mp.shape[1], step):
            n = int(both[r : r + step, c : c + step].sum())
            if n:
                out[(r // step, c // step)] = (n, int(agree[r : r + step, c : c + step].sum()))
    return out


# pixels where the oracle (rasterio.warp.reproject: GDAL's approximate transformer, 0.125 px) and
# eulc's exact coordinates may pick another source pixel: none where both grids are in EPSG:3035
# or the pixels coincide, a few per thousand where the reference is reprojected
ORACLE_SHARE = {"osm_clcplus": 0.0, "eolearn_lulc": 0.0, "corine_l3": 3e-3, "eucropmap": 3e-3}


@pytest.mark.parametrize("name", ["osm_clcplus", "corine_l3", "eucropmap", "eolearn_lulc"])
def test_windows_equal_the_whole_grid(name: str, data: Path, tmp_path: Path) -> None:
    mp, ids, t = _map_and_oracle(name, data)
    path = _write_map(mp, t, tmp_path / "map.tif")
    ref, cw, leg = data / TILES[name], Crosswalk.shipped(name), level1_legend()
    seen = []
    small = compare(
        path,
        ref,
        cw,
        leg,
        window_px=25,
        thumb_px=10**6,
        disagreement=tmp_path / "d_small.tif",
        on_window=lambda i, n: seen.append((i, n)),
    )
    whole = compare(path, ref, cw, leg, window_px=10**6, thumb_px=10**6, disagreement=tmp_path / "d_whole.tif")
    n_win = -(-mp.shape[0] // 25) * -(-mp.shape[1] // 25)
    assert seen[-1] == (n_win, n_win) and len(seen) == n_win > 15  # many windows, edges included
    for field in ("confusion", "thumb_map", "thumb_ref"):
        np.testing.assert_array_equal(getattr(small, field), getattr(whole, field))
    assert (small.map_nodata, small.reference_excluded, small.crosswalk_report, small.resampling) == (
        whole.map_nodata,
        whole.reference_excluded,
        whole.crosswalk_report,
        whole.resampling,
    )
    assert small.blocks.equals(whole.blocks)
    with rasterio.open(tmp_path / "d_small.tif") as a, rasterio.open(tmp_path / "d_whole.tif") as b:
        da, db = a.read(1), b.read(1)
        assert a.overviews(1) == b.overviews(1) and a.profile["blockxsize"] == 256
    np.testing.assert_array_equal(da, db)

    # each output is what its definition gives from the windowed map and reference
    c = small
    r = np.where(c.thumb_ref >= 0, c.thumb_ref, 255).astype(np.uint8)
    both = (mp != 255) & (r != 255)
    cm = np.zeros((7, 7), np.int64)
    np.add.at(cm, (mp[both], r[both]), 1)
    np.testing.assert_array_equal(c.confusion, cm)
    np.testing.assert_array_equal(c.thumb_map, mp)
    assert c.map_nodata == int((mp == 255).sum())
    assert c.reference_excluded == int(((mp != 255) & (r == 255)).sum()) > 0
    np.testing.assert_array_equal(da, np.where(both, (mp != r).astype(np.uint8), 255))
    top, left = t.f, t.c  # type: ignore[attr-defined]
    got = {
        (int((top - y) // 250), int((x - left) // 250)): (n, a)
        for x, y, n, a in c.blocks[["x_m", "y_m", "n_pixels", "n_agree"]].itertuples(index=False)
    }
    assert got == _oracle_blocks(mp, r, 25)
    rep = c.crosswalk_report
    assert rep["n_mapped"] + sum(rep["dropped"].values()) == rep["n_in"] and rep["n_mapped"] == int((r != 255).sum())
    assert summary(c, leg)["overall_agreement"] == pytest.approx(np.trace(cm) / cm.sum())

    # and the reference on the map's grid is the independent whole-array reprojection
    assert c.resampling == METHOD[name]
    assert (r != ids).mean() <= ORACLE_SHARE[name]


@pytest.mark.parametrize("name", ["corine_l3", "eolearn_lulc"])
def test_nearest_takes_the_source_pixel_under_each_centre(name: str, data: Path, tmp_path: Path) -> None:
    """Exact nearest neighbour: every target pixel centre transformed by pyproj, the source pixel
    it falls in read from the file; eulc differs only where the centre is within 10⁻⁴ px of a
    source pixel edge (the two PROJ pipelines round differently there)."""
    from pyproj import Transformer

    mp, _, t = _map_and_oracle(name, data)
    path = _write_map(mp, t, tmp_path / "map.tif")
    c = compare(path, data / TILES[name], Crosswalk.shipped(name), level1_legend(), window_px=100, thumb_px=10**6)
    with rasterio.open(data / TILES[name]) as s:
        src, st, crs, nod = s.read(1), s.transform, s.crs, s.nodata
    h, w = mp.shape
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x, y = Transformer.from_crs("EPSG:3035", crs, always_xy=True).transform(t.c + cols * t.a, t.f + rows * t.e)  # type: ignore[attr-defined]
    fx, fy = (x - st.c) / st.a, (y - st.f) / st.e
    ci, ri = np.floor(fx).astype(int), np.floor(fy).astype(int)
    inside = (ci >= 0) & (ci < src.shape[1]) & (ri >= 0) & (ri < src.shape[0])
    codes = np.full(mp.shape, -1, np.int64)
    codes[inside] = src[ri[inside], ci[inside]]
    codes[codes == nod] = -1
    ok = codes >= 0
    want = np.full(mp.shape, -1, np.int16)
    want[ok], _ = Crosswalk.shipped(name).apply(codes[ok])
    differ = c.thumb_ref != want
    edge = np.minimum(np.abs(fx - np.round(fx)), np.abs(fy - np.round(fy)))
    assert differ.sum() <= 1e-5 * ok.sum() and (edge[differ] < 1e-4).all()


def test_thumbnails_are_decimated_pixels(data: Path, tmp_path: Path) -> None:
    mp, ids, t = _map_and_oracle("eolearn_lulc", data)
    path = _write_map(mp, t, tmp_path / "map.tif")
    c = compare(
        path,
        data / TILES["eolearn_lulc"],
        Crosswalk.shipped("eolearn_lulc"),
        level1_legend(),
        window_px=75,
        thumb_px=100,
    )
    ts = c.thumb_step
    assert ts == -(-max(mp.shape) // 100) > 1
    np.testing.assert_array_equal(c.thumb_map, mp[::ts, ::ts])
    np.testing.assert_array_equal(np.where(c.thumb_ref >= 0, c.thumb_ref, 255), ids[::ts, ::ts])


def _vrt(tiles: list[Path], dest: Path) -> Path:
    """A GDAL VRT mosaic of same-grid uint8 tiles (what `gdalbuildvrt` writes, by hand: the test
    machine has no GDAL command-line tools)."""
    metas = []
    for p in tiles:
        with rasterio.open(p) as s:
            metas.append((p, s.transform, s.width, s.height, s.crs))
    res = metas[0][1].a
    left = min(m[1].c for m in metas)
    top = max(m[1].f for m in metas)
    right = max(m[1].c + m[2] * res for m in metas)
    bottom = min(m[1].f - m[3] * res for m in metas)
    w, h = round((right - left) / res), round((top - bottom) / res)
    src = "".join(
        f"<SimpleSource><SourceFilename relativeToVRT='0'>{p}</SourceFilename><SourceBand>1</SourceBand>"
        f"<SrcRect xOff='0' yOff='0' xSize='{sw}' ySize='{sh}'/>"
        f"<DstRect xOff='{round((tr.c - left) / res)}' yOff='{round((top - tr.f) / res)}' xSize='{sw}' ySize='{sh}'/>"
        "</SimpleSource>"
        for p, tr, sw, sh, _ in metas
    )
    dest.write_text(
        f"<VRTDataset rasterXSize='{w}' rasterYSize='{h}'><SRS>{metas[0][4].to_wkt()}</SRS>"
        f"<GeoTransform>{left}, {res}, 0, {top}, 0, {-res}</GeoTransform>"
        f"<VRTRasterBand dataType='Byte' band='1'><NoDataValue>255</NoDataValue>{src}</VRTRasterBand></VRTDataset>"
    )
    return dest


def test_a_vrt_mosaic_of_map_tiles_compares_like_one_cog(data: Path, tmp_path: Path) -> None:
    mp, ids, t = _map_and_oracle("osm_clcplus", data)
    one = _write_map(mp, t, tmp_path / "one.tif")
    h2, w2 = mp.shape[0] // 2, mp.shape[1] // 2
    parts = []
    for i, (r0, r1) in enumerate(((0, h2), (h2, mp.shape[0]))):
        for j, (c0, c1) in enumerate(((0, w2), (w2, mp.shape[1]))):
            parts.append(
                _write_map(
                    np.ascontiguousarray(mp[r0:r1, c0:c1]),
                    t @ t.translation(c0, r0),  # type: ignore[operator]
                    tmp_path / f"tile_{i}{j}.tif",
                )
            )
    vrt = _vrt(parts, tmp_path / "mosaic.vrt")
    ref, cw, leg = data / TILES["osm_clcplus"], Crosswalk.shipped("osm_clcplus"), level1_legend()
    a = compare(one, ref, cw, leg, window_px=100)
    b = compare(vrt, ref, cw, leg, window_px=100)
    np.testing.assert_array_equal(a.confusion, b.confusion)
    assert a.confusion.sum() > 10_000 and (a.map_nodata, a.reference_excluded) == (b.map_nodata, b.reference_excluded)
    assert a.blocks.equals(b.blocks)
