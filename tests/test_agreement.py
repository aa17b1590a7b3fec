from pathlib import Path

import numpy as np
import rasterio
from sklearn.metrics import confusion_matrix

from pipeline.assess.agreement import agreement, align_reference
from pipeline.core.cog import write_cog
from pipeline.core.legend import Crosswalk, level1_legend

from .conftest import SLO


def _reference_as_map(data: Path, tmp_path: Path, flip: int = 0) -> tuple[Path, np.ndarray]:
    with rasterio.open(data / SLO / "lulc_reference.tif") as s:
        ref, tr, crs = s.read(1), s.transform, s.crs
    l1, _ = Crosswalk.shipped("eolearn_lulc").apply(ref)
    m = np.where(l1 >= 0, l1, 255).astype(np.uint8)
    if flip:
        idx = np.flatnonzero(m.ravel() == 0)[:flip]
        m.ravel()[idx] = 1
    return write_cog(tmp_path / "m.tif", m, tr, str(crs), 255), l1


def test_identical_map_agrees_fully(data: Path, tmp_path: Path) -> None:
    mp, l1 = _reference_as_map(data, tmp_path)
    res = agreement(mp, data / SLO / "lulc_reference.tif", Crosswalk.shipped("eolearn_lulc"), level1_legend())
    assert res["overall_accuracy"] == 1.0 and res["resampling"] == "nearest"
    cm = np.array(res["confusion"]["matrix"])
    assert (cm == np.diag(np.diag(cm))).all()
    assert np.diag(cm).tolist() == np.bincount(l1[l1 >= 0], minlength=7).tolist()
    assert res["excluded"]["map_nodata"] == (l1 < 0).sum()


def test_user_and_producer_accuracy_match_sklearn(data: Path, tmp_path: Path) -> None:
    mp, l1 = _reference_as_map(data, tmp_path, flip=500)
    res = agreement(mp, data / SLO / "lulc_reference.tif", Crosswalk.shipped("eolearn_lulc"), level1_legend())
    with rasterio.open(mp) as s:
        m = s.read(1).astype(int)
    ok = l1 >= 0
    want = confusion_matrix(m[ok], l1[ok], labels=range(7))  # rows = map, cols = reference
    assert res["confusion"]["matrix"] == want.tolist()
    wood = res["per_class"]["Woodland/Shrubland"]
    assert np.isclose(wood["producers_accuracy"], want[0, 0] / want[:, 0].sum())
    assert np.isclose(res["per_class"]["Grassland"]["users_accuracy"], want[1, 1] / want[1].sum())
    assert np.isclose(res["overall_accuracy"], np.trace(want) / want.sum())


def test_finer_reference_is_mode_resampled(data: Path, tmp_path: Path) -> None:
    ref = data / "osm_clcplus_netherlands" / "netherlands_osm_clcplus_14580_sample.tif"
    with rasterio.open(ref) as s:
        codes, tr = s.read(1), s.transform
    from affine import Affine

    top = tr.f - (tr.f % 10)
    left = tr.c + (-tr.c % 10)
    mp = write_cog(tmp_path / "m.tif", np.zeros((40, 40), np.uint8), Affine(10, 0, left, 0, -10, top), "EPSG:3035", 255)
    got, method = align_reference(ref, mp)
    assert method == "mode"
    # independent: the most frequent 2 m code in the 5 x 5 block of one 10 m pixel
    r0 = int(round((tr.f - top) / 2)) + 5 * 7
    c0 = int(round((left - tr.c) / 2)) + 5 * 9
    block = codes[r0 : r0 + 5, c0 : c0 + 5].ravel()
    block = block[block != 0]
    vals, counts = np.unique(block, return_counts=True)
    assert got[7, 9] in vals[counts == counts.max()]
