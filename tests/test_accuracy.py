"""Olofsson et al. (2014) stratified estimators: the paper's worked example, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.assess.accuracy import stratified_estimates
from pipeline.core.errors import EulcError

# Olofsson et al. 2014, RSE 148:42-57, section 5 (Tables 8-9): rows = map, columns = reference;
# classes deforestation, forest gain, stable forest, stable non-forest; 30 m pixels (0.09 ha).
COUNTS = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
MAPPED_HA = np.array([200_000, 150_000, 3_200_000, 6_450_000]) * 0.09


def test_worked_example_reproduces_the_published_figures() -> None:
    r = stratified_estimates(COUNTS, MAPPED_HA)
    # published: 21,158 ± 6,158 ha; 11,686 ± 3,756; 285,770 ± 15,510; 581,386 ± 16,282
    np.testing.assert_array_equal(np.rint(r.area), [21_158, 11_686, 285_770, 581_386])
    np.testing.assert_array_equal(np.rint(r.area_ci95), [6_158, 3_756, 15_510, 16_282])
    # user's accuracy 0.88 ± 0.07, 0.73 ± 0.10, 0.93 ± 0.04, 0.96 ± 0.02
    np.testing.assert_allclose(np.round(r.users, 2), [0.88, 0.73, 0.93, 0.96])
    np.testing.assert_allclose(np.round(r.users_ci95, 2), [0.07, 0.10, 0.04, 0.02])
    # producer's accuracy 0.75 (± 0.21 for deforestation), 0.85, 0.93, 0.96
    np.testing.assert_allclose(np.round(r.producers, 2), [0.75, 0.85, 0.93, 0.96])
    assert round(float(r.producers_ci95[0]), 2) == 0.21
    # overall accuracy 0.95 ± 0.02
    assert round(r.overall, 2) == 0.95 and round(r.overall_ci95, 2) == 0.02
    assert r.proportions.sum() == pytest.approx(1.0)
    assert r.area.sum() == pytest.approx(MAPPED_HA.sum())
    assert not r.warnings


def test_a_stratum_without_sample_is_reported_not_divided_by_zero() -> None:
    counts = COUNTS.copy()
    counts[1] = 0  # no reference point was drawn in "forest gain"
    r = stratified_estimates(counts, MAPPED_HA, classes=["defor", "gain", "forest", "nonforest"])
    assert any("'gain'" in w and "no sample" in w for w in r.warnings)
    assert np.isnan(r.users[1]) and np.isnan(r.overall)
    assert np.isfinite(r.users[[0, 2, 3]]).all()
    js = r.to_json(["defor", "gain", "forest", "nonforest"])
    assert js["per_class"]["gain"]["users"] is None and js["overall"] is None


def test_an_unmapped_class_contributes_nothing() -> None:
    r = stratified_estimates(np.array([[10, 0], [0, 0]]), np.array([5.0, 0.0]))
    assert r.area[0] == 5.0 and r.area[1] == 0.0 and r.overall == 1.0


@pytest.mark.parametrize(
    "counts, area, words",
    [
        (np.ones((3, 3)), np.ones(2), "shape"),
        (-np.ones((2, 2)), np.ones(2), "non-negative"),
        (np.ones((2, 2)), np.zeros(2), "mapped area is zero"),
    ],
)
def test_bad_input(counts: np.ndarray, area: np.ndarray, words: str) -> None:
    with pytest.raises(EulcError, match=words):
        stratified_estimates(counts, area)
