"""Properties, not lists (issue #26): hypothesis generates the neighbours of the listed cases for
the grid, the warp, the spec/contract digest, the legend/crosswalk, the guarded writer and the
bundle bounds. Each property is checked against an independent oracle (arithmetic by hand, a
second reader, the definition), with deadlines that hold on a loaded 2-core machine
(``deadline=None``; the example counts keep the module under ~30 s).
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pipeline.core.errors import EulcError

pytestmark = pytest.mark.fast
SETTINGS = settings(
    deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


# --- grid ------------------------------------------------------------------------------------------


@SETTINGS
@given(st.floats(2_500_000, 7_400_000), st.floats(1_400_000, 5_500_000), st.sampled_from([100, 1000, 10_000, 100_000]))
def test_the_cell_containing_a_point_contains_it(x_m: float, y_m: float, size_m: int) -> None:
    from pipeline.core.grid import TileId

    t = TileId.containing(x_m, y_m, size_m)
    left, bottom, right, top = t.bounds
    assert left <= x_m < right and bottom <= y_m < top
    assert right - left == size_m == top - bottom and left % size_m == 0 == bottom % size_m
    assert TileId.parse(str(t)) == t  # the code round-trips


@SETTINGS
@given(st.floats(-9.0, 30.0), st.floats(36.0, 69.0), st.floats(0.01, 0.6), st.floats(0.01, 0.6))
def test_a_bbox_is_covered_by_exactly_the_cells_it_touches(w: float, s: float, dw: float, ds: float) -> None:
    from shapely.geometry import box

    from pipeline.core.aoi import bbox_lonlat_to_3035, parse_tiles

    geom = bbox_lonlat_to_3035((w, s, w + dw, s + ds))
    cells = parse_tiles(f"bbox:{w},{s},{w + dw},{s + ds}", 10_000)
    assert len(cells) == len(set(cells))
    covered = sum(box(*c.bounds).intersection(geom).area for c in cells)
    assert covered == pytest.approx(geom.area, rel=1e-9)  # the cells cover it, each counted once
    assert all(box(*c.bounds).intersection(geom).area > 0 for c in cells)


# --- warp --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ramp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40 × 50 float32 raster on the 10 m EEA grid whose value is its pixel index (row-major)."""
    import rasterio

    p = tmp_path_factory.mktemp("warp") / "ramp.tif"
    arr = np.arange(40 * 50, dtype=np.float32).reshape(40, 50)
    with rasterio.open(
        p,
        "w",
        driver="GTiff",
        width=50,
        height=40,
        count=1,
        dtype="float32",
        crs="EPSG:3035",
        transform=Affine(10, 0, 4_500_000, 0, -10, 2_600_000),
        nodata=np.nan,
    ) as dst:
        dst.write(arr, 1)
    return p


@SETTINGS
@given(st.integers(-10, 45), st.integers(-10, 35), st.integers(1, 20), st.integers(1, 20))
def test_reading_a_window_on_the_same_grid_is_a_slice(ramp: Path, col: int, row: int, w: int, h: int) -> None:
    from pipeline.core.warp import read_on_grid

    t = Affine(10, 0, 4_500_000 + 10 * col, 0, -10, 2_600_000 - 10 * row)
    got = read_on_grid(ramp, t, "EPSG:3035", (h, w))
    want = np.full((h, w), np.nan, np.float32)  # the oracle: index arithmetic
    for i in range(h):
        for j in range(w):
            r, c = row + i, col + j
            if 0 <= r < 40 and 0 <= c < 50:
                want[i, j] = r * 50 + c
    np.testing.assert_array_equal(got, want)


# --- spec / contract digest --------------------------------------------------------------------------


@SETTINGS
@given(st.data())
def test_the_features_digest_depends_on_the_names_and_their_order_only(data: st.DataObject) -> None:
    from pipeline.core.contract import features_digest
    from pipeline.core.spec import load_spec

    spec = load_spec("elc10")
    names = data.draw(st.lists(st.sampled_from(spec.names), min_size=1, max_size=8, unique=True))
    d = features_digest(spec, names)
    assert d == features_digest(load_spec("elc10"), list(names))  # stable across loads
    perm = data.draw(st.permutations(names))
    assert (features_digest(spec, perm) == d) == (list(perm) == names)
    other = data.draw(st.sampled_from([n for n in spec.names if n not in names] or names))
    if other not in names:
        assert features_digest(spec, [*names, other]) != d


@SETTINGS
@given(st.floats(0.001, 1000), st.sampled_from(["stat", "scale", "description"]))
def test_a_change_of_a_features_meaning_changes_its_digest_and_only_its(value: float, key: str) -> None:
    from pipeline.core.contract import features_digest
    from pipeline.core.spec import FeatureSpec, load_spec

    spec = load_spec("elc10")
    raw = spec.model_dump()
    f0 = raw["features"][0]
    new = {"stat": "p7" if f0["stat"] != "p7" else "p8", "scale": value, "description": f"text {value}"}[key]
    assume(f0[key] != new)
    f0[key] = new
    changed = FeatureSpec.model_validate(raw)
    first, rest = [spec.names[0]], spec.names[1:4]
    # what a feature means changes its digest; its description does not; other features never
    assert (features_digest(changed, first) != features_digest(spec, first)) == (key != "description")
    assert features_digest(changed, rest) == features_digest(spec, rest)


# --- legend / crosswalk --------------------------------------------------------------------------------


@SETTINGS
@given(st.data())
def test_the_crosswalk_maps_each_code_as_its_table_says(data: st.DataObject) -> None:
    from pipeline.core.legend import Crosswalk

    cw = Crosswalk.shipped(data.draw(st.sampled_from(["corine_l3", "clcplus_backbone", "eolearn_lulc"])))
    rows = cw.table.to_dict("records")
    picked = data.draw(st.lists(st.sampled_from(rows), min_size=1, max_size=40))
    unknown = data.draw(st.lists(st.integers(100_000, 200_000), max_size=5))
    codes = np.array([str(r["source_code"]) for r in picked] + [str(u) for u in unknown], dtype=object)
    out, rep = cw.apply(codes)
    for r, got in zip(picked, out, strict=False):  # the oracle: the CSV row itself
        lv = str(r["level1"])
        want = -1 if lv in ("", "nan", "None") else int(float(lv))
        assert got == want, (r, got)
    assert (out[len(picked) :] == -1).all() and sum(rep.unknown.values()) == len(unknown)
    assert rep.n_mapped == int((out >= 0).sum())


@SETTINGS
@given(st.lists(st.integers(0, 254), min_size=2, max_size=30, unique=True))
def test_class_ids_relabel_every_index_and_keep_nodata(ids: list[int]) -> None:
    from pipeline.core.legend import Legend, LegendClass
    from tiles.mapping.predict import NODATA, class_ids

    legend = Legend("level1", tuple(LegendClass(i, f"c{i}", "#000000") for i in ids))
    idx = np.array([*range(len(ids)), NODATA], np.uint8)
    got = class_ids(idx, legend)
    assert got[:-1].tolist() == ids and got[-1] == NODATA


# --- the guarded writer ----------------------------------------------------------------------------


@SETTINGS
@given(st.binary(min_size=1, max_size=2000), st.binary(min_size=1, max_size=2000), st.booleans())
def test_the_writer_leaves_the_old_or_the_new_file_never_a_mix(
    tmp_path_factory: pytest.TempPathFactory, old: bytes, new: bytes, fail: bool
) -> None:
    from pipeline.core.atomic import PREFIX, atomic_path

    folder = tmp_path_factory.mktemp("w")
    dest = folder / "x.bin"
    with atomic_path(dest) as tmp:
        tmp.write_bytes(old)
    try:
        with atomic_path(dest) as tmp:
            tmp.write_bytes(new[: len(new) // 2])
            if fail:
                raise RuntimeError("killed mid-write")
            tmp.write_bytes(new)
    except RuntimeError:
        pass
    assert dest.read_bytes() == (old if fail else new)
    assert not [p for p in folder.iterdir() if p.name.startswith(PREFIX)]


@SETTINGS
@given(
    st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=40),
        st.sampled_from([".eulc-written", ".eulc-tmp.x", ".eulc.lock"]),
    )
)
def test_any_file_name_is_written_and_recognised(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    from pipeline.core.atomic import PREFIX, WRITTEN, atomic_path, written_by_eulc

    assume(name not in (".", "..") and len(name.encode()) < 200)
    folder = tmp_path_factory.mktemp("n")
    if name == WRITTEN or name.startswith(PREFIX):  # the journal's and the temporaries' names: refused
        with pytest.raises(EulcError, match="keeps for its own"), atomic_path(folder / name) as tmp:
            tmp.write_text("x")
        return
    with atomic_path(folder / name) as tmp:
        tmp.write_text("x")
    assert written_by_eulc(folder / name) and (folder / name).read_text() == "x"
    other = folder / (name + "_user")
    other.write_text("mine")
    assert not written_by_eulc(other)


# --- bundle bounds ----------------------------------------------------------------------------------


@SETTINGS
@given(st.floats(allow_nan=True, allow_infinity=True))
@example(0.05)
@example(20.0)
@example(0.0499)
@example(20.01)
@example(1.0)
def test_a_temperature_is_accepted_exactly_in_the_calibration_range(t: float) -> None:
    from model.bounds import TEMPERATURE_MAX, TEMPERATURE_MIN, check_temperature

    ok = math.isfinite(t) and TEMPERATURE_MIN <= t <= TEMPERATURE_MAX
    if ok:
        assert check_temperature(t, Path("b.json")) == t
    else:
        with pytest.raises(EulcError, match="temperature"):
            check_temperature(t, Path("b.json"))


@SETTINGS
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True, width=32),
            st.floats(-1e3, 1e3, width=32),
            st.sampled_from([1e-6, 1e9, 0.5, 2.0, -1.0, 1.0]),
        ),
        min_size=4,
        max_size=4,
    )
)
@example([0.0, 1e9, 0.0, 1.0])
@example([0.0, 1e-6, -1.0, 1.0])
@example([0.0, 2e9, 0.0, 1.0])
@example([0.0, 5e-7, 0.0, 1.0])
@example([0.0, 1.0, 1.0, 1.0])
@example([0.0, 1.0, float("nan"), 1.0])
@example([0.0, 1.0, 0.0, float("nan")])
def test_a_normaliser_is_accepted_only_when_every_number_is_in_range(v: list[float]) -> None:
    from model.bounds import SCALE_MAX, SCALE_MIN, check_normaliser

    c, s, lo, hi = (np.array([x], np.float32) for x in v)
    ok = (
        math.isfinite(v[0])
        and math.isfinite(v[1])
        and SCALE_MIN <= v[1] <= SCALE_MAX
        and not math.isnan(v[2])
        and not math.isnan(v[3])
        and v[2] < v[3]
    )
    if ok:
        check_normaliser(c, s, lo, hi, ["f"], Path("b.json"))
    else:
        with pytest.raises(EulcError, match="normalizer"):
            check_normaliser(c, s, lo, hi, ["f"], Path("b.json"))


@SETTINGS
@given(
    st.lists(
        st.one_of(st.floats(-1, 2), st.just(float("nan")), st.sampled_from([0.0, 0.5, 1.0])), min_size=2, max_size=8
    )
)
@example([1.5, -0.5])
@example([0.5, 0.5])
@example([0.5, 0.5004])
@example([0.5, 0.4996])
@example([0.5, 0.502])
def test_a_prior_is_accepted_only_as_shares_summing_to_1(p: list[float]) -> None:
    from model.bounds import check_prior

    arr = np.asarray(p)
    ok = bool(np.isfinite(arr).all() and (arr >= 0).all() and abs(arr.sum() - 1) <= 1e-3)
    if ok:
        np.testing.assert_array_equal(check_prior(p, len(p), Path("b.json")), arr)
    else:
        with pytest.raises(EulcError, match="class_prior"):
            check_prior(p, len(p), Path("b.json"))


@settings(deadline=None, max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(["temperature", "hidden", "depth", "n_classes"]),
    st.one_of(st.integers(-5, 5000), st.floats(allow_nan=True), st.text(max_size=3), st.none()),
)
def test_any_architecture_edit_loads_or_is_refused_in_one_line(
    tmp_path_factory: pytest.TempPathFactory, key: str, value: object
) -> None:
    """A bundle edit either loads with the value it holds or ends in a BundleError: never another
    exception, never a model with a value outside the bounds."""
    import shutil

    from model.bundle import load_bundle
    from pipeline.core.errors import BundleError

    src = Path(__file__).resolve().parents[1] / "models" / "elc10-ndvi-l1"
    b = tmp_path_factory.mktemp("b") / "b"
    shutil.copytree(src, b)
    meta = json.loads((b / "bundle.json").read_text())
    meta["architecture"][key] = value
    (b / "bundle.json").write_text(json.dumps(meta))
    try:
        loaded = load_bundle(b)
    except BundleError as e:
        assert "\n" not in str(e) and str(b) in str(e)  # one line naming the bundle's file
        return
    assert getattr(loaded.model.cfg, key) == value


@SETTINGS
@given(st.integers(0, 400), st.lists(st.integers(-3, 300), min_size=1, max_size=6))
@example(254, [0, 254])
@example(255, [0])
@example(3, [255])
@example(3, [-1])
def test_classes_fit_the_uint8_map_exactly(n_classes: int, ids: list[int]) -> None:
    from model.bounds import MAX_MAP_CLASSES, check_classes

    ok = n_classes <= MAX_MAP_CLASSES and all(0 <= i <= 254 for i in ids)
    if ok:
        check_classes(n_classes, ids, Path("b.json"))
    else:
        with pytest.raises(EulcError, match="n_classes|legend id"):
            check_classes(n_classes, ids, Path("b.json"))


@SETTINGS
@given(st.integers(0, 10**9))
@example(50_000_000)
@example(50_000_001)
def test_parameters_are_refused_above_the_limit_only(n: int) -> None:
    from model.bounds import MAX_PARAMETERS, check_parameters

    if n <= MAX_PARAMETERS:
        check_parameters(n, Path("b.json"))
    else:
        with pytest.raises(EulcError, match=f"{n:,} parameters"):
            check_parameters(n, Path("b.json"))


@SETTINGS
@given(
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none(), st.text(max_size=2), st.booleans()),
    st.sampled_from(["landscape_threshold", "distance_threshold", "rare_share", "quantile"]),
    st.lists(st.floats(-0.5, 1.5), min_size=1, max_size=4),
)
@example(0.0, "landscape_threshold", [0.5])
@example(-1e-9, "distance_threshold", [0.5])
@example(1.0, "rare_share", [0.0, 1.0])
@example(1.0001, "quantile", [0.5])
@example(0.5, "quantile", [1.0001])
@example(0.5, "quantile", [-0.0001])
def test_ood_numbers_are_accepted_only_in_range(v: object, key: str, share: list[float]) -> None:
    from model.bounds import check_ood

    meta: dict[str, object] = {
        "landscape_threshold": 1.0,
        "distance_threshold": 2.0,
        "rare_share": 0.01,
        "quantile": 0.99,
        key: v,
    }
    num = isinstance(v, (int, float)) and not isinstance(v, bool)
    in_range = num and math.isfinite(v) and (v >= 0 if "threshold" in key else 0 <= v <= 1)  # type: ignore[operator,arg-type]
    arr = np.asarray(share)
    ok = in_range and bool(((arr >= 0) & (arr <= 1)).all())
    if ok:
        check_ood(meta, arr, Path("ood.json"))
    else:
        with pytest.raises(EulcError, match=f"{key}|cluster shares"):
            check_ood(meta, arr, Path("ood.json"))


@given(
    st.integers(1, 80),
    st.integers(1, 6),
    st.floats(0.0, 1.0),
    st.integers(0, 2**32 - 1),
)
def test_the_median_of_the_sorted_series_is_numpys_nanmedian_bit_for_bit(
    t: int, w: int, masked: float, seed: int
) -> None:
    """The texture's median comes from the percentiles' sort (issue #28): it must equal
    ``numpy.nanmedian`` exactly (the two middle values summed, then halved, in float32)."""
    import warnings

    from tiles.engine.composite import median_of_sorted, nan_sorted

    rng = np.random.default_rng(seed)
    v = rng.normal(0.4, 0.3, (t, 3, w)).astype(np.float32)
    v[rng.random(v.shape) < masked] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.nanmedian(v, axis=0)
    np.testing.assert_array_equal(median_of_sorted(*nan_sorted(v)), want)


@given(st.integers(0, 40), st.integers(1, 60))
def test_a_row_block_of_the_nearest_map_is_the_rows_of_the_whole_map(top: int, rows: int) -> None:
    """Exact nearest neighbour does not depend on the row blocks (issue #28): a block's map
    picks, pixel for pixel, the source pixels of the same rows of the whole tile's map."""
    from pipeline.core.grid import TileId
    from pipeline.core.warp import NearestMap

    win = TileId.parse("1kmE4679N2535").window()
    src_t = Affine(9.99, 0.0, 465_181.05, 0.0, -10.0, 5_080_254.63)  # the eo-learn Slovenia patch's UTM grid
    whole = NearestMap.of("EPSG:32633", src_t, (900, 900), win.transform, win.grid.crs, win.shape)
    rows = min(rows, win.height - top)
    t = win.transform
    part_t = Affine(t.a, t.b, t.c, t.d, t.e, t.f + top * t.e)
    part = NearestMap.of("EPSG:32633", src_t, (900, 900), part_t, win.grid.crs, (rows, win.width))
    assert whole is not None and part is not None

    def source_pixels(m: NearestMap, shape: tuple[int, int]) -> np.ndarray:
        w = m.roi.width
        rc = np.stack([m.index // w + m.roi.row_off, m.index % w + m.roi.col_off])
        return np.where(m.inside, rc, -1).reshape(2, *shape)

    np.testing.assert_array_equal(
        source_pixels(part, (rows, win.width)), source_pixels(whole, win.shape)[:, top : top + rows]
    )


@settings(max_examples=200, deadline=None)
@given(
    when=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)),
    offset_min=st.one_of(st.none(), st.integers(-14 * 60, 14 * 60)),
    sep=st.sampled_from(["T", " "]),
    zulu=st.booleans(),
)
def test_iso_dates_parse_as_pandas_does(when: datetime, offset_min: int | None, sep: str, zulu: bool) -> None:
    """The engine's date parser (standard library, no pandas in the workers) gives pandas'
    ``Timestamp`` in UTC for ISO 8601 strings with and without offsets, and for datetimes."""
    import datetime as dt

    import pandas as pd

    from pipeline.core.dates import utc_datetime64

    if offset_min is not None:
        when = when.replace(tzinfo=dt.timezone(dt.timedelta(minutes=offset_min)))
    text = when.isoformat(sep=sep)
    if zulu and offset_min == 0:
        text = text.replace("+00:00", "Z")
    ts = pd.Timestamp(text)
    want = (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts).to_datetime64()
    assert utc_datetime64(text) == want.astype("datetime64[ns]")
    assert utc_datetime64(when) == want.astype("datetime64[ns]")


def test_feature_workers_do_not_import_pandas() -> None:
    """A dask worker of ``eulc features`` imports the engine's runner: no pandas (70 MB each)."""
    import subprocess
    import sys

    code = "import sys, tiles.engine.runner, distributed; print('pandas' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
