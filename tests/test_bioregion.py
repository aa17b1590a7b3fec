from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from pipeline.core.bioregion import CELLS_FILE, CODE_TO_REGION, REGIONS, SHIPPED_CELLS, _cell_regions, assign_bioregion
from pipeline.core.errors import SchemaError


def test_real_points_get_one_of_their_cell_regions(elc10_frame: pd.DataFrame) -> None:
    df = elc10_frame
    regions, report = assign_bioregion(df["x_3035"].to_numpy(), df["y_3035"].to_numpy())
    listed = df["biogeo_10km"].fillna("")
    single = ~listed.str.contains(";") & listed.isin(list(CODE_TO_REGION))
    # single-region cells: exactly the cell's region
    expected = listed[single].map(CODE_TO_REGION).to_numpy()
    assert (regions[single.to_numpy()] == expected).all()
    # border cells: always one of the cell's regions, counted in the report
    border = listed.str.contains(";").to_numpy()
    for got, cell in zip(regions[border], listed[border], strict=True):
        assert got in {CODE_TO_REGION.get(c) for c in cell.split(";")}
    assert report["border_cells"] == border.sum()
    assert set(regions) <= set(REGIONS)


def test_point_outside_every_region_is_reported() -> None:
    regions, report = assign_bioregion(np.array([100_000]), np.array([100_000]))
    assert regions[0] is None and report["no_region"] == 1


def test_the_shipped_table_is_the_shared_csv(data: Path) -> None:
    """The package's 10 km raster holds exactly the shared data's (cell, region) rows (issue #27),
    so an installed eulc assigns the same regions as one reading the CSV."""
    csv = data / CELLS_FILE
    shipped, full = _cell_regions(SHIPPED_CELLS), _cell_regions(csv)
    assert len(full) == 251_140 and shipped == full
    # and the shared data's own bitmask (built independently, SOURCES.md §3) agrees pixel by pixel
    with (
        rasterio.open(data / "eea_biogeo_regions" / "biogeoregions_10km_bitmask_epsg3035.tif") as a,
        rasterio.open(SHIPPED_CELLS) as b,
    ):
        wa = a.window(*b.bounds)
        assert (a.read(1, window=wa, boundless=True, fill_value=0) == b.read(1)).all()


def test_the_default_needs_no_shared_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ``EULC_DATA`` and no checkout data: the default still assigns regions (Ljubljana: Alpine
    or Continental, its 10 km cell 10kmE467N253 touches both)."""
    monkeypatch.setenv("EULC_DATA", str(tmp_path / "nowhere"))
    regions, _ = assign_bioregion(np.array([4_675_000.0]), np.array([2_535_000.0]))
    assert regions[0] in {"Alpine", "Continental"}


def test_a_shipped_table_with_other_bits_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "b.tif"
    with rasterio.open(SHIPPED_CELLS) as src:
        profile, arr = src.profile, src.read(1)
    with rasterio.open(bad, "w", **profile) as dst:
        dst.write(arr, 1)
        dst.update_tags(bits="ATL,ALP")
    with pytest.raises(SchemaError, match="bits"):
        _cell_regions(bad)
