"""The EEA grid and AOI → tiles: property tests (Hypothesis) and real AOIs."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import box

from pipeline.core.aoi import parse_tiles, tiles_for_bounds_3035, tiles_for_geometry
from pipeline.core.errors import RasterError
from pipeline.core.grid import EEA_10M, TileId

SIZES_M = st.sampled_from([100, 250, 1000, 10_000, 100_000])
tile_ids = st.builds(TileId, SIZES_M, st.integers(0, 8_000), st.integers(0, 6_000))


@settings(deadline=None)  # a loaded 2-core machine: no per-example deadline
@given(tile_ids)
def test_code_round_trip(t: TileId) -> None:
    assert TileId.parse(str(t)) == t
    assert TileId.parse(str(t).lower().replace("km", "km")) == t


@settings(deadline=None)  # a loaded 2-core machine: no per-example deadline
@given(tile_ids)
def test_window_matches_bounds_and_grid(t: TileId) -> None:
    w = t.window()
    assert w.shape == (t.size_m // 10, t.size_m // 10)
    assert w.bounds == pytest.approx(t.bounds)
    assert w.transform.c % EEA_10M.res_m == 0 and w.transform.f % EEA_10M.res_m == 0
    assert TileId.containing(w.transform.c + 5, w.transform.f - 5, t.size_m) == t


@settings(deadline=None)  # a loaded 2-core machine: no per-example deadline
@given(tile_ids)
def test_neighbours_share_exactly_one_edge_or_corner(t: TileId) -> None:
    me = box(*t.bounds)
    nb = t.neighbours()
    assert len(set(nb)) == 8 and t not in nb
    for other in nb:
        o = box(*other.bounds)
        assert me.intersection(o).area == 0 and me.touches(o)
    east = TileId(t.size_m, t.e + 1, t.n).window()
    assert east.transform.c == t.window().transform.c + t.size_m


rects = st.tuples(st.floats(4.0e6, 4.2e6), st.floats(2.5e6, 2.7e6), st.floats(1.0, 3.0e4), st.floats(1.0, 3.0e4))


@settings(max_examples=60, deadline=None)  # a loaded 2-core machine: no per-example deadline
@given(rects, st.sampled_from([1000, 10_000]))
def test_tiles_cover_a_rectangle_without_gaps_or_overlaps(r: tuple[float, float, float, float], size_m: int) -> None:
    x, y, dx, dy = r
    rect = box(x, y, x + dx, y + dy)
    tiles = tiles_for_bounds_3035((x, y, x + dx, y + dy), size_m)
    parts = [box(*t.bounds).intersection(rect).area for t in tiles]
    assert sum(parts) == pytest.approx(rect.area, rel=1e-9)  # no gaps, no overlaps
    assert all(p > 0 for p in parts)  # no cell outside the area
    assert len(set(tiles)) == len(tiles)
    assert tiles_for_geometry(rect, size_m) == tiles


def test_frozen_grid_and_its_tiles() -> None:
    import dataclasses

    from pipeline.core.grid import EEA_10M_100KM

    with pytest.raises(dataclasses.FrozenInstanceError):
        EEA_10M.res_m = 20.0  # type: ignore[misc]
    assert str(EEA_10M.tile_at(4_675_100, 2_539_470)) == "10kmE467N253"  # the Slovenia stack
    assert str(EEA_10M_100KM.tile_at(4_675_100, 2_539_470)) == "100kmE46N25"
    assert TileId.parse("100kmE46N25").window().shape == (10_000, 10_000)


def test_edge_aligned_bbox_takes_no_extra_row() -> None:
    assert [str(t) for t in tiles_for_bounds_3035((4.32e6, 3.21e6, 4.34e6, 3.22e6), 10_000)] == [
        "10kmE432N321",
        "10kmE433N321",
    ]


def test_parse_forms(tmp_path: Path) -> None:
    # the lon/lat bbox of the real Slovenia stack (45.866–45.875 N) lies in one 10 km cell,
    # the cell the GEE tests export
    codes = parse_tiles("bbox:14.5505,45.8659,14.5651,45.8749")
    assert codes == [TileId(10_000, 467, 253)]
    assert len(parse_tiles("bbox:14.5505,45.8659,14.5651,45.8749", size_m=250)) == 25
    assert parse_tiles("10kmE467N253, 10kmE468N253,10kmE467N253") == [
        TileId(10_000, 467, 253),
        TileId(10_000, 468, 253),
    ]
    lst = tmp_path / "tiles.txt"
    lst.write_text("# my tiles\n1kmE4674N2538\n1kmE4675N2539  # second\n", encoding="utf-8")
    assert [str(t) for t in parse_tiles(str(lst))] == ["1kmE4674N2538", "1kmE4675N2539"]
    aoi = tmp_path / "aoi.geojson"
    gpd.GeoDataFrame(geometry=[box(14.5505, 45.8659, 14.5651, 45.8749)], crs="EPSG:4326").to_file(aoi)
    assert parse_tiles(str(aoi)) == codes


@pytest.mark.parametrize(
    "bad, words",
    [
        ("10kmE467", "not an EEA grid cell code"),
        ("bbox:14.5,46.0,14.6", "four numbers"),
        ("bbox:46.0,14.5,14.6,46.1", "west,south,east,north"),
        ("missing.geojson", "does not exist"),
        ("0kmE1N1", "not an EEA grid cell code"),
    ],
)
def test_bad_tiles_argument(bad: str, words: str) -> None:
    with pytest.raises(RasterError, match=words):
        parse_tiles(bad)
