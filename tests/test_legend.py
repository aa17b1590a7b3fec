from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.legend import Crosswalk, level1_legend, level2_legend, lucas_to_levels

from .conftest import SURVEY


def test_legends_match_the_paper_tables() -> None:
    l1, l2 = level1_legend(), level2_legend()
    assert l1.names == [
        "Woodland/Shrubland",
        "Grassland",
        "Bare land and lichens/moss",
        "Wetlands",
        "Artificial land",
        "Water",
        "Cropland",
    ]
    assert len(l2) == 19 and l2.names[0] == "Bare arable land" and l2.names[18] == "Rice"
    assert len({c.colour for c in l1.classes}) == 7
    assert l1.colormap()[6][:3] == (0xF5, 0xD3, 0x27)


def test_every_real_lucas_row_is_mapped_or_counted(data: Path) -> None:
    df = pd.read_csv(data / SURVEY, dtype=str)
    l1, l2, rep = lucas_to_levels(df["LC"], df["LU"])
    assert rep.n_in == len(df)
    assert rep.n_mapped + sum(rep.dropped.values()) + sum(rep.unknown.values()) + rep.missing == len(df)
    assert rep.dropped == {"A30": (df["LC"] == "A30").sum(), "Bx1": (df["LC"] == "Bx1").sum()}
    assert not rep.unknown
    # crop codes give Cropland and their Level-2 class (Table 2)
    wheat = df["LC"] == "B11"
    assert (l1[wheat] == 6).all() and (l2[wheat] == 1).all()
    assert (l2[df["LC"] == "B16"] == 6).all()  # maize
    # EU crop map rules depending on LC1 and LU1
    assert (l1[df["LC"] == "B55"] == 1).all()
    assert (l1[df["LC"].isin(["B81", "B82"])] == 0).all()
    f40 = df["LC"] == "F40"
    agri = df["LU"].isin(["U111", "U112", "U113"])
    assert (l1[f40 & agri] == 6).all() and (l2[f40 & agri] == 0).all()
    assert (l1[f40 & ~agri] == 2).all() and l2[f40 & ~agri].isna().all()
    assert l2[l1 != 6].isna().all()


def test_elc10_crosswalk_agrees_with_lucas_lc1(data: Path) -> None:
    """ELC10's class comes from the LC1 letter (SOURCES §10): both mappings agree except
    where the EU crop map rules move a code across classes (B55, B7x/B8x, F40 agri)."""
    df = pd.read_csv(
        data / "derived" / "lucas2018_elc10_features_with_lc1_lu1.csv.gz", usecols=["LC_num", "LUCAS_LC1", "LUCAS_LU1"]
    )
    via_elc, rep = Crosswalk.shipped("elc10").apply(df["LC_num"].to_numpy())
    assert rep.n_mapped == len(df)
    via_lucas, _, _ = lucas_to_levels(df["LUCAS_LC1"], df["LUCAS_LU1"])
    moved = df["LUCAS_LC1"].str.match(r"B55|B7|B8|F40") | df["LUCAS_LC1"].isin(["A30", "Bx1", "Bx2"])
    same = via_lucas[~moved].to_numpy(dtype=float) == via_elc[~moved.to_numpy()]
    assert same.all()


def test_crosswalk_counts_unknown_and_nodata() -> None:
    ids, rep = Crosswalk.shipped("eolearn_lulc").apply(np.array([[0, 2, 8], [2, 42, 4]]))
    assert ids.tolist() == [[-1, 0, 4], [0, -1, 0]]
    assert rep.dropped == {"0": 1} and rep.unknown == {"42": 1} and rep.n_mapped == 4
