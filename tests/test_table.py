from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.core.errors import SchemaError
from pipeline.core.spec import load_spec
from pipeline.table import BASE_COLUMNS, build_feature_table, read_feature_table, write_feature_table

from .conftest import ELC10, SAMPLE, SURVEY


@pytest.fixture(scope="module")
def full(data: Path):
    return build_feature_table([data / ELC10], load_spec("elc10"))


def test_real_export_becomes_a_feature_table(full, elc10_frame: pd.DataFrame) -> None:
    gdf, rep = full
    spec = load_spec("elc10")
    assert list(gdf.columns[: len(BASE_COLUMNS)]) == BASE_COLUMNS
    assert list(gdf.columns[len(BASE_COLUMNS) : -1]) == spec.names
    assert gdf.crs.to_epsg() == 4326 and len(gdf) == len(elc10_frame) == rep.rows_written
    assert gdf["ndvi_p50"].dtype == np.float32
    # labels: ELC10 classes -> Level-1 (woodland + shrubland merge)
    n_wood = elc10_frame["LC"].isin(["Woodland", "Shrubland"]).sum()
    assert (gdf["level1"] == 0).sum() == n_wood
    assert (gdf["level1"] == 6).sum() == (elc10_frame["LC"] == "Cropland").sum()
    assert gdf["bioregion"].notna().all()
    # missing values are reported per column and kept as NaN
    assert rep.missing_values["asc_vv_median"] == elc10_frame["asc_vv_median"].isna().sum()
    # point ids keep the table's order/values
    assert (gdf["point_id"].to_numpy() == elc10_frame["POINT_ID"].to_numpy()).all()


def test_shards_give_the_same_table_and_duplicates_are_reported(full, elc10_frame, tmp_path) -> None:
    spec = load_spec("elc10")
    parts = [elc10_frame.iloc[i : i + 1000] for i in (0, 1000, 2000)]
    paths = []
    for i, p in enumerate(parts):
        paths.append(tmp_path / f"S_{i}.csv")
        p.to_csv(paths[-1], index=False)
    gdf, rep = build_feature_table(paths, spec)
    whole = full[0].iloc[:3000].reset_index(drop=True)
    pd.testing.assert_frame_equal(gdf.drop(columns="geometry"), whole.drop(columns="geometry"))
    gdf2, rep2 = build_feature_table([*paths, paths[0]], spec)
    assert rep2.duplicates_identical == len(parts[0]) and len(gdf2) == 3000


def test_coordinates_from_point_id_match_lon_lat(elc10_frame, tmp_path) -> None:
    sub = elc10_frame.iloc[:500].drop(columns=["lon", "lat"])
    sub.to_csv(tmp_path / "e.csv", index=False)
    gdf, rep = build_feature_table([tmp_path / "e.csv"], load_spec("elc10"))
    assert "POINT_ID" in rep.coordinates_from
    assert np.allclose(gdf["lon"], elc10_frame["lon"].iloc[:500], atol=1e-6)
    assert np.allclose(gdf["lat"], elc10_frame["lat"].iloc[:500], atol=1e-6)


def test_out_of_range_coordinates_are_dropped_and_counted(elc10_frame, tmp_path) -> None:
    sub = elc10_frame.iloc[:100].copy()
    sub.loc[sub.index[:3], "lat"] = 95.0
    sub.loc[sub.index[3], "lon"] = 120.0  # China: outside EPSG:3035's area
    sub.to_csv(tmp_path / "e.csv", index=False)
    gdf, rep = build_feature_table([tmp_path / "e.csv"], load_spec("elc10"))
    assert rep.out_of_range == 4 and len(gdf) == 96


def test_missing_column_names_file_and_column(elc10_frame, tmp_path) -> None:
    p = tmp_path / "bad.csv"
    elc10_frame.iloc[:10].drop(columns=["ndvi_p50"]).to_csv(p, index=False)
    with pytest.raises(SchemaError) as e:
        build_feature_table([p], load_spec("elc10"))
    assert "ndvi_p50" in str(e.value) and "bad.csv" in str(e.value)


def test_lucas_labels_give_level2(data: Path, tmp_path) -> None:
    gdf, rep = build_feature_table([data / SAMPLE], load_spec("elc10"), lucas_file=data / SURVEY)
    crop = gdf["level1"] == 6
    assert crop.sum() > 500 and gdf.loc[crop, "level2"].notna().mean() > 0.9
    assert gdf.loc[~crop, "level2"].isna().all()
    assert (gdf.loc[gdf["lc1"] == "B13", "level2"] == 3).all()  # barley
    out = tmp_path / "t.parquet"
    write_feature_table(gdf, out)
    back, meta = read_feature_table(out)
    assert meta["spec_hash"] == load_spec("elc10").digest()
    assert {s["file"] for s in meta["sources"]} == {str(data / SAMPLE), str(data / SURVEY)}
    pd.testing.assert_frame_equal(back.drop(columns="geometry"), gdf.drop(columns="geometry"), check_dtype=False)


def test_not_a_feature_table(tmp_path) -> None:
    p = tmp_path / "x.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(p)
    with pytest.raises(SchemaError, match="x.parquet"):
        read_feature_table(p)


def test_cells_match_the_point_id_cells(full, elc10_frame) -> None:
    """Cells from lon/lat (float round trip) equal those from the exact POINT_ID location,
    including points exactly on 100 km cell edges."""
    gdf, _ = full
    assert (gdf["eea_cell_100km"].to_numpy() == elc10_frame["eea_cell_100km"].to_numpy()).all()
    on_edge = (elc10_frame["y_3035"] % 100_000 == 0) | (elc10_frame["x_3035"] % 100_000 == 0)
    assert on_edge.sum() > 100
