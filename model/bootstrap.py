"""Cell-bootstrap intervals of a difference between two models (issue #29, part 1).

A test set of LUCAS points is a sample of places, not of independent points: neighbouring points
share a landscape, so a difference of two models' scores is as uncertain as the *places* it was
measured on. Resampling whole EEA 100 km test cells (the unit every eulc split blocks on) with
replacement, and scoring both models on the same draw (paired), gives an interval of the
difference that covers the test sample; the seed interval (:func:`model.metrics.mean_ci95`) covers
the training randomness only. This is the cluster (block) bootstrap of Davison & Hinkley (1997,
§3.8), percentile interval.

How it is computed, without refitting anything: every (model, seed) run's test predictions are
turned into one confusion matrix per test cell; a replicate draws cell counts
``w ~ Multinomial(m, 1/m)`` (``m`` = the stratum's test cells, sorted by code; the draws are
``numpy.random.default_rng(seed).multinomial(m, [1/m] * m, size=n_boot)``, one call per stratum
in order), and its confusion matrix is
``Σ_c w_c C_c``, whose weighted F1 and accuracy equal those of the resampled rows (scikit-learn's
``f1_score(average="weighted", zero_division=0)``). A model's score on a replicate is the mean
over seeds of its per-seed scores; the difference is model ``a`` minus model ``b``. Strata
(LORO regions) are resampled independently and combined with fixed weights (their observed test
sizes for the size-weighted mean, 1 each for the plain mean).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model.metrics import mean_ci95
from pipeline.core.errors import SchemaError

N_BOOT = 2000
"""Replicates per interval (the percentile interval's 2.5 % tail then rests on 50 draws)."""


@dataclass(frozen=True)
class Stratum:
    """One test set scored for two models: a LORO region, or a whole EXTRAP test split.

    Attributes:
        y_true: int (N,) reference class ids.
        pred_a, pred_b: int (S, N) predicted class ids of models ``a`` and ``b``, one row per seed
            (the same S seeds, rows in the same order; a deterministic model repeats its row);
            ``-1`` where a row is not in that seed's test set (seeds that test on different
            subsamples: the rows are their union), at the same places for both models.
        cells: (N,) EEA 100 km cell codes of the test rows (any hashable values; one code per row
            when the rows carry no cell: the bootstrap then resamples rows).
        weight: the stratum's weight in the combined figure (its test size, or 1).
    """

    y_true: np.ndarray
    pred_a: np.ndarray
    pred_b: np.ndarray
    cells: np.ndarray
    weight: float = 1.0


@dataclass(frozen=True)
class PairedInterval:
    """A difference of scores (model ``a`` − model ``b``, in points of %) and its intervals.

    Attributes:
        metric: ``"weighted_f1"`` or ``"accuracy"``.
        diff: the observed difference (mean over seeds, strata combined by their weights).
        low, high: the 95 % cell-bootstrap percentile interval of ``diff``.
        seed_half: half-width of the 95 % Student-t interval over seeds of the per-seed
            differences (NaN with one seed).
        n_cells: test cells resampled, over all strata.
        n_boot: replicates.
    """

    metric: str
    diff: float
    low: float
    high: float
    seed_half: float
    n_cells: int
    n_boot: int

    @property
    def excludes_zero(self) -> bool:
        """Whether the cell interval lies wholly on one side of 0 (a difference worth claiming)."""
        return bool(self.low > 0 or self.high < 0)

    @property
    def verdict(self) -> str:
        """``"a better"``, ``"b better"`` or ``"tie"`` (the cell interval includes 0)."""
        return "a better" if self.low > 0 else "b better" if self.high < 0 else "tie"


def cell_confusions(y_true: np.ndarray, y_pred: np.ndarray, cell_index: np.ndarray, n_cells: int, k: int) -> np.ndarray:
    """Per-cell confusion matrices, flattened: int64 (n_cells, k·k), entry ``t·k + p`` = rows of
    the cell with reference ``t`` predicted ``p`` (rows = reference, scikit-learn's orientation).

    Args:
        y_true, y_pred: int (N,) class ids in ``[0, k)``.
        cell_index: int (N,) the row's cell in ``[0, n_cells)``.
    """
    flat = cell_index.astype(np.int64) * (k * k) + y_true.astype(np.int64) * k + y_pred.astype(np.int64)
    return np.bincount(flat, minlength=n_cells * k * k).reshape(n_cells, k * k)


def scores_from_confusion(cm: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted F1 and accuracy (fractions) of flattened confusion matrices ``cm`` (..., k·k),
    rows = reference: F1 per class 2·TP / (2·TP + FP + FN) (0 where undefined), weighted by the
    class's reference support, as scikit-learn's ``f1_score(average="weighted", zero_division=0)``.
    """
    m = cm.reshape(*cm.shape[:-1], k, k).astype(np.float64)
    tp = np.diagonal(m, axis1=-2, axis2=-1)
    support = m.sum(-1)
    predicted = m.sum(-2)
    total = support.sum(-1)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        wf1 = np.where(total > 0, (f1 * support).sum(-1) / total, 0.0)
        acc = np.where(total > 0, tp.sum(-1) / total, 0.0)
    return wf1, acc


def paired_cell_bootstrap(
    strata: Sequence[Stratum], k: int, n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, PairedInterval]:
    """The paired cell-bootstrap interval of the difference a − b of weighted F1 and accuracy.

    Args:
        strata: the test sets (module docstring); each is resampled on its own cells.
        k: number of classes (ids ``0..k-1``).
        n_boot: replicates.
        seed: seed of the cell draws (the same draws for both models: paired).

    Returns:
        ``{"weighted_f1": PairedInterval, "accuracy": PairedInterval}`` in points of % (×100).

    Raises:
        SchemaError: no strata, a stratum without rows, or prediction arrays whose shapes differ
            from ``(S, N)`` with the same S for both models.
    """
    if not strata:
        raise SchemaError("paired_cell_bootstrap: strata is empty", "Pass at least one scored test set")
    rng = np.random.default_rng(seed)
    weights = np.array([s.weight for s in strata], dtype=np.float64)
    if not np.all(weights > 0):
        raise SchemaError("paired_cell_bootstrap: a stratum's weight is not positive", "Use test sizes or 1")
    weights = weights / weights.sum()
    n_seeds = np.atleast_2d(strata[0].pred_a).shape[0]
    per_seed = np.zeros((2, n_seeds))  # (weighted F1, accuracy) × seed: the observed differences
    boot = np.zeros((2, n_boot))
    n_cells_total = 0
    for s, w in zip(strata, weights, strict=True):
        n = len(s.y_true)
        pa, pb = np.atleast_2d(s.pred_a), np.atleast_2d(s.pred_b)
        if n == 0 or pa.shape != pb.shape or pa.shape != (n_seeds, n) or len(s.cells) != n:
            raise SchemaError(
                f"paired_cell_bootstrap: a stratum has {n} rows, predictions {pa.shape} and {pb.shape} "
                f"({n_seeds} seeds expected), {len(s.cells)} cells",
                "Pass (seeds, rows) predictions of both models for the same non-empty test rows",
            )
        codes, idx = np.unique(np.asarray(s.cells).astype(str), return_inverse=True)
        m = len(codes)
        n_cells_total += m
        counts = rng.multinomial(m, np.full(m, 1.0 / m), size=n_boot).astype(np.float64)  # (B, m)
        for i, (sa, sb) in enumerate(zip(pa, pb, strict=True)):
            ok = sa >= 0
            if not np.array_equal(ok, sb >= 0) or not ok.any():
                raise SchemaError(
                    "paired_cell_bootstrap: the two models were scored on different test rows (or none) in a seed",
                    "Pair the runs of the same split and seed",
                )
            ca = cell_confusions(s.y_true[ok], sa[ok], idx[ok], m, k)
            cb = cell_confusions(s.y_true[ok], sb[ok], idx[ok], m, k)
            observed = np.array(scores_from_confusion(ca.sum(0), k)) - scores_from_confusion(cb.sum(0), k)
            drawn = np.array(scores_from_confusion(counts @ ca, k)) - scores_from_confusion(counts @ cb, k)
            per_seed[:, i] += w * observed
            boot += w * drawn / n_seeds
    out = {}
    for j, key in enumerate(("weighted_f1", "accuracy")):
        lo, hi = np.percentile(boot[j], [2.5, 97.5])
        out[key] = PairedInterval(
            metric=key,
            diff=100 * float(per_seed[j].mean()),
            low=100 * float(lo),
            high=100 * float(hi),
            seed_half=mean_ci95(100 * per_seed[j])[1],
            n_cells=n_cells_total,
            n_boot=n_boot,
        )
    return out
