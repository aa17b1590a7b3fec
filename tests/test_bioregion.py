import numpy as np
import pandas as pd

from pipeline.core.bioregion import CODE_TO_REGION, REGIONS, assign_bioregion


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
