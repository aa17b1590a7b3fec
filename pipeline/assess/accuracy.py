"""Accuracy and area estimation from a reference sample, stratified by map class
(Olofsson, Foody, Herold, Stehman, Woodcock & Wulder 2014, "Good practices for estimating
area and assessing accuracy of land change", Remote Sensing of Environment 148: 42–57).

The map classes are the strata. With ``n_ij`` sample counts (row i = map class, column j =
reference class), ``n_i.`` the sample size of stratum i, ``A_m,i`` the mapped area of class i
and ``W_i = A_m,i / A`` its area weight:

- error matrix in area proportions ``p̂_ij = W_i n_ij / n_i.`` (eq. 4);
- overall accuracy ``Ô = Σ_j p̂_jj``, ``V̂(Ô) = Σ_i W_i² Û_i (1 − Û_i) / (n_i. − 1)`` (eq. 5);
- user's accuracy ``Û_i = p̂_ii / p̂_i.``, ``V̂(Û_i) = Û_i (1 − Û_i) / (n_i. − 1)`` (eq. 6);
- producer's accuracy ``P̂_j = p̂_jj / p̂_.j`` with the variance of eq. 7;
- area of class j ``Â_j = A · p̂_.j``, ``S(p̂_.j) = sqrt(Σ_i W_i² (n_ij/n_i.)(1 − n_ij/n_i.) / (n_i. − 1))``
  (eq. 10), 95 % confidence interval ``± 1.96 · A · S(p̂_.j)`` (eq. 11).

All intervals are half-widths (``estimate ± ci95``). A stratum without sample (``n_i. = 0``) or
with a single sample (no variance) is reported in ``warnings`` and its quantities are NaN: never
a division by zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.core.errors import EulcError

Z95 = 1.96
"""The two-sided 95 % normal quantile, rounded as in Olofsson et al. (2014, eq. 11)."""


@dataclass(frozen=True)
class StratifiedEstimates:
    """The estimates of :func:`stratified_estimates`, one value per class (K,), float64.

    Attributes:
        area: estimated area of each reference class, in the units of ``mapped_area``.
        area_ci95: half-width of its 95 % confidence interval.
        area_proportion, area_proportion_se: ``p̂_.j`` and its standard error.
        users, users_ci95: user's accuracy per map class and its 95 % half-width.
        producers, producers_ci95: producer's accuracy per reference class and 95 % half-width.
        overall, overall_ci95: overall accuracy and its 95 % half-width (scalars).
        proportions: (K, K) error matrix in area proportions (rows map, columns reference).
        warnings: unsampled strata, strata with one sample, classes absent from the reference.
        n_per_stratum: (K,) reference points in each stratum (map class), ``n_i.``.
    """

    area: np.ndarray
    area_ci95: np.ndarray
    area_proportion: np.ndarray
    area_proportion_se: np.ndarray
    users: np.ndarray
    users_ci95: np.ndarray
    producers: np.ndarray
    producers_ci95: np.ndarray
    overall: float
    overall_ci95: float
    proportions: np.ndarray
    warnings: list[str] = field(default_factory=list)
    n_per_stratum: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_json(self, classes: list[str] | None = None) -> dict[str, Any]:
        """A JSON-able dict (NaN → None), per class when ``classes`` are given."""

        def clean(a: np.ndarray) -> list[float | None]:
            return [None if not np.isfinite(v) else float(v) for v in np.ravel(a)]

        names = classes or [str(i) for i in range(len(self.area))]
        per = {
            n: {
                "area": clean(self.area)[i],
                "area_ci95": clean(self.area_ci95)[i],
                "users": clean(self.users)[i],
                "users_ci95": clean(self.users_ci95)[i],
                "producers": clean(self.producers)[i],
                "producers_ci95": clean(self.producers_ci95)[i],
            }
            for i, n in enumerate(names)
        }
        return {
            "overall": clean(np.array([self.overall]))[0],
            "overall_ci95": clean(np.array([self.overall_ci95]))[0],
            "per_class": per,
            "proportions": [clean(r) for r in self.proportions],
            "warnings": self.warnings,
            "n_per_stratum": {n: int(v) for n, v in zip(names, self.n_per_stratum, strict=False)},
            "method": "stratified estimation, strata = map classes (Olofsson et al. 2014, eqs. 4-11)",
        }


def stratified_estimates(
    counts: np.ndarray, mapped_area: np.ndarray, classes: list[str] | None = None
) -> StratifiedEstimates:
    """Olofsson et al. (2014) estimators of accuracy and area with 95 % confidence intervals.

    Args:
        counts: (K, K) sample counts, rows = map class (stratum), columns = reference class.
        mapped_area: (K,) mapped area of each class (pixels, ha, km² — the output area has the
            same unit).
        classes: optional class names, used in the warnings.

    Returns:
        A :class:`StratifiedEstimates`.

    Raises:
        EulcError: shapes that do not match, negative counts or areas, or no mapped area.
    """
    n = np.asarray(counts, dtype=np.float64)
    a_m = np.asarray(mapped_area, dtype=np.float64)
    k = len(a_m)
    names = classes or [str(i) for i in range(k)]
    if n.shape != (k, k):
        raise EulcError(
            f"counts has shape {n.shape} but mapped_area has {k} classes",
            "Give a (K, K) matrix (rows map, columns reference) and K mapped areas",
        )
    if (n < 0).any() or (a_m < 0).any():
        raise EulcError("counts and mapped areas must be non-negative")
    total = a_m.sum()
    if total <= 0:
        raise EulcError("the mapped area is zero", "Give the area of each map class")
    w = a_m / total
    n_i = n.sum(1)
    warnings: list[str] = []
    sampled = n_i > 0
    for i in np.flatnonzero(~sampled & (a_m > 0)):
        warnings.append(
            f"stratum {names[i]!r} has mapped area {a_m[i]:g} but no sample (n per stratum: "
            + ", ".join(f"{names[s]} {int(n_i[s])}" for s in range(k))
            + "): overall accuracy and "
            "every area estimate are not estimable (Olofsson et al. 2014 need n_i. ≥ 1 in every "
            "mapped stratum); add reference points in this class"
        )
    for i in np.flatnonzero(n_i == 1):
        warnings.append(f"stratum {names[i]!r} has a single sample: its variance is undefined (NaN)")
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(sampled[:, None], n / np.where(sampled, n_i, 1)[:, None], np.nan)  # n_ij / n_i.
        frac = np.where((a_m == 0)[:, None], 0.0, frac)  # an empty stratum contributes nothing
        p = w[:, None] * frac  # eq. 4
        dof = np.where(n_i > 1, n_i - 1, np.nan)
        var_terms = w[:, None] ** 2 * frac * (1 - frac) / dof[:, None]
        var_terms = np.where((a_m == 0)[:, None], 0.0, var_terms)
        users = np.where(sampled, np.diag(frac), np.nan)
        var_u = users * (1 - users) / dof
        overall = float(np.trace(p))
        var_o = float(np.sum(np.where(a_m > 0, w**2 * users * (1 - users) / dof, 0.0)))
        p_col = p.sum(0)
        se_col = np.sqrt(var_terms.sum(0))
        producers = np.diag(p) / p_col
        # eq. 7 with N_i. = mapped area, N̂_.j = Σ_i N_i. n_ij / n_i.
        n_hat = (a_m[:, None] * frac).sum(0)
        var_p = np.empty(k)
        for j in range(k):
            own = a_m[j] ** 2 * (1 - producers[j]) ** 2 * users[j] * (1 - users[j]) / dof[j] if a_m[j] > 0 else 0.0
            others = sum(
                a_m[i] ** 2 * frac[i, j] * (1 - frac[i, j]) / dof[i] for i in range(k) if i != j and a_m[i] > 0
            )
            var_p[j] = (own + producers[j] ** 2 * others) / n_hat[j] ** 2
    for jj in np.flatnonzero(p_col == 0):
        warnings.append(
            f"class {names[jj]!r} was never found in the reference sample: its producer's accuracy is undefined"
        )
    return StratifiedEstimates(
        area=total * p_col,
        area_ci95=Z95 * total * se_col,
        area_proportion=p_col,
        area_proportion_se=se_col,
        users=users,
        users_ci95=Z95 * np.sqrt(var_u),
        producers=producers,
        producers_ci95=Z95 * np.sqrt(var_p),
        overall=overall,
        overall_ci95=Z95 * float(np.sqrt(var_o)),
        proportions=p,
        warnings=warnings,
        n_per_stratum=n_i,
    )
