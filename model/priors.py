"""Label-shift adaptation: EM re-estimation of class priors on unlabelled target pixels
(Saerens, Latinne & Decaestecker 2002, Neural Computation 14(1), §2.2), applied as an output
bias so inference stays one fused network.

A model trained where class c has prior π_c gives posteriors p(c | x). On a target area whose
priors are π'_c, Bayes' rule gives ``p'(c | x) ∝ p(c | x) · π'_c / π_c``. EM alternates
``p'`` (E-step) and ``π' = mean_x p'(c | x)`` (M-step) until π' stops changing; the adapted
logits are ``z + log(π' / π)``. The posteriors must be calibrated (temperature scaling) for
the estimate to be meaningful.

Plain EM is the maximum-likelihood estimate; under covariate shift (an area unlike any the
model saw) its posteriors are wrong and EM can amplify their errors (issue #29 measured swings
from +2.8 to −10.8 weighted F1 on held-out bioregions). Two brakes, both chosen on training-side
data only (:func:`choose_adaptation`, :mod:`model.evaluate`):

- **Dirichlet-MAP EM**: a Dirichlet prior on π' centred on the training prior π, with
  pseudo-counts ``strength · N · π_c`` (N the target's samples). The M-step becomes
  ``π' = (mean_x p'(c | x) + strength · π) / (1 + strength)``: ``strength`` 0 is plain EM, 1
  moves π' at most half-way from π, and the pull does not fade with the tile's size.
- **A guard on EM's likelihood gain**: the mean log-likelihood ratio of the target samples under
  π' against π, ``G = mean_x log Σ_c p(c | x) π'_c / π_c`` (nats per sample, ≥ 0 at the
  estimate). A gain above ``max_gain`` means EM explains the area by a larger shift than the
  inner regions rewarded; adaptation is then skipped and the network's posteriors are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PRIOR_FLOOR = 1e-6
"""Smallest prior of a class present in training (keeps the logarithms finite)."""


def em_priors(
    prob: np.ndarray, train_prior: np.ndarray, max_iter: int = 100, tol: float = 1e-6, strength: float = 0.0
) -> np.ndarray:
    """Target-area class priors by EM (Saerens et al. 2002, eqs. 2.4–2.5), optionally MAP under a
    Dirichlet prior centred on ``train_prior`` (module docstring).

    Args:
        prob: float (N, C) calibrated posteriors of the target's unlabelled samples.
        train_prior: float (C,) class shares of the training rows (sums to 1).
        max_iter, tol: EM stops after ``max_iter`` steps or when no prior moves by more than ``tol``.
        strength: Dirichlet pseudo-counts per target sample (≥ 0; 0 = maximum likelihood).

    Returns:
        float64 (C,) estimated target priors (sum 1). A class absent from the training rows
        (prior 0) keeps prior 0: the network's output for a class it never saw carries no
        evidence, and EM would otherwise inflate it without bound.

    Raises:
        ValueError: shapes disagree, no sample is given, or ``strength`` < 0.
    """
    p = np.asarray(prob, np.float64)
    raw = np.asarray(train_prior, np.float64)
    if p.ndim != 2 or p.shape[1] != len(raw) or len(p) == 0:
        raise ValueError(f"posteriors {p.shape} do not fit {len(raw)} training priors")
    if not strength >= 0:
        raise ValueError(f"strength must be >= 0, got {strength}")
    seen = raw > 0
    p = np.where(seen[None, :], p, 0.0)
    pi0 = np.where(seen, np.maximum(raw, PRIOR_FLOOR), 0.0)
    pi0 = pi0 / pi0.sum()
    ratio0 = np.where(seen, 1.0 / np.where(seen, pi0, 1.0), 0.0)
    pi = pi0.copy()
    for _ in range(max_iter):
        w = p * (pi * ratio0)[None, :]
        w /= np.maximum(w.sum(1, keepdims=True), 1e-300)
        new = (w.mean(0) + strength * pi0) / (1.0 + strength)
        new = np.where(seen, np.maximum(new, PRIOR_FLOOR), 0.0)
        new /= new.sum()
        done = np.abs(new - pi).max() < tol
        pi = new
        if done:
            break
    return pi


def likelihood_gain(prob: np.ndarray, train_prior: np.ndarray, target_prior: np.ndarray) -> float:
    """EM's likelihood gain: the mean log-likelihood ratio of the samples under ``target_prior``
    against ``train_prior``, ``mean_x log Σ_c p(c | x) π'_c / π_c`` (nats per sample; classes
    absent from training left out).

    Args:
        prob: float (N, C) calibrated posteriors under the training prior.
        train_prior, target_prior: float (C,) priors, each summing to 1.

    Raises:
        ValueError: shapes disagree or no sample is given.
    """
    p = np.asarray(prob, np.float64)
    s = np.asarray(train_prior, np.float64)
    if p.ndim != 2 or p.shape[1] != len(s) or len(p) == 0 or len(target_prior) != len(s):
        raise ValueError(f"posteriors {p.shape} do not fit {len(s)} priors")
    seen = s > 0
    ratio = np.where(seen, np.asarray(target_prior, np.float64) / np.where(seen, np.maximum(s, PRIOR_FLOOR), 1.0), 0.0)
    return float(np.log(np.maximum((p * ratio[None, :]).sum(1), 1e-300)).mean())


def prior_bias(target_prior: np.ndarray, train_prior: np.ndarray) -> np.ndarray:
    """Logit bias ``log(π' / π)`` (C,) float32 to add to a model's (temperature-scaled) logits;
    0 for a class absent from training (its output is left as the network gives it).
    """
    s = np.asarray(train_prior, np.float64)
    t = np.maximum(np.asarray(target_prior, np.float64), PRIOR_FLOOR)
    return np.where(s > 0, np.log(t / np.maximum(s, PRIOR_FLOOR)), 0.0).astype(np.float32)


def _apply_bias(prob: np.ndarray, train_prior: np.ndarray, target_prior: np.ndarray) -> np.ndarray:
    seen = np.asarray(train_prior) > 0
    bias = np.exp(prior_bias(target_prior, train_prior))
    w = np.where(seen[None, :], np.asarray(prob, np.float64), 0.0) * bias[None, :]
    return w / np.maximum(w.sum(1, keepdims=True), 1e-300)


def adapt(prob: np.ndarray, train_prior: np.ndarray) -> np.ndarray:
    """Posteriors (N, C) adapted to the priors plain EM estimates on these same samples (classes
    absent from training get posterior 0).
    """
    return _apply_bias(prob, train_prior, em_priors(prob, train_prior))


@dataclass(frozen=True)
class Adaptation:
    """One label-shift setting (module docstring).

    Attributes:
        strength: Dirichlet pseudo-counts per target sample (0 = plain EM), or None: no adaptation.
        max_gain: the guard: skip adaptation where EM's likelihood gain exceeds it (nats per
            sample); None = no guard.
    """

    strength: float | None
    max_gain: float | None = None

    @property
    def label(self) -> str:
        """``off``, ``map-em s=<strength>`` or ``map-em s=<strength> gain<=<max_gain>``."""
        if self.strength is None:
            return "off"
        return f"map-em s={self.strength:g}" + ("" if self.max_gain is None else f" gain<={self.max_gain:g}")

    def estimate(self, prob: np.ndarray, train_prior: np.ndarray) -> tuple[np.ndarray, dict[str, float | bool | str]]:
        """The target priors this setting gives for the samples ``prob`` (N, C) and what it saw.

        Returns:
            (float64 (C,) EM's estimate (``train_prior`` itself when off), ``{"setting",
            "applied", "gain"}``: the label, whether the estimate is to be applied (False when
            off or when the guard fires), EM's likelihood gain in nats per sample).
        """
        if self.strength is None:
            return np.asarray(train_prior, np.float64), {"setting": self.label, "applied": False, "gain": 0.0}
        target = em_priors(prob, train_prior, strength=self.strength)
        gain = likelihood_gain(prob, train_prior, target)
        applied = self.max_gain is None or gain <= self.max_gain
        return target, {"setting": self.label, "applied": bool(applied), "gain": round(gain, 5)}

    def apply(self, prob: np.ndarray, train_prior: np.ndarray) -> np.ndarray:
        """Posteriors (N, C) float64 adapted by this setting (unchanged when off or guarded)."""
        target, info = self.estimate(prob, train_prior)
        return _apply_bias(prob, train_prior, target) if info["applied"] else np.asarray(prob, np.float64)


ADAPTATION_GRID: tuple[Adaptation, ...] = (
    Adaptation(None),
    *(Adaptation(s, g) for s in (10.0, 3.0, 1.0) for g in (0.3, None)),
)
"""The settings :func:`choose_adaptation` chooses among, from the most cautious (off, then the
strongest pull to the training prior, guarded first); ties go to the earlier one. Plain EM
(strength 0) is left out: on inner held-out bioregions (training side of the Alpine and Atlantic
LORO folds, 8 epochs) it lost up to 17.7 weighted-F1 points where strength 3 gained 12; the
likelihood gains seen there ran from 0.01 to 1.1 nats per sample, hence the guard at 0.3."""

DEFAULT_ADAPTATION = Adaptation(3.0, 0.3)
"""What ``eulc map --adapt-priors`` applies: the setting with the best mean gain over the inner
choices of the 8 Level-1 LORO folds for ``eulc`` (+1.28 weighted-F1 points on their held-out
inner regions; 1 seed, 25 epochs; docs/results.md, issue #29 part 5). Chosen on training-side
data only: no LORO test score was read. Per fold the winner was off in 3, strength 10 guarded
in 4 and this one in 1."""


def choose_adaptation(
    looks: Sequence[tuple[np.ndarray, np.ndarray]],
    train_prior: np.ndarray,
    grid: Sequence[Adaptation] = ADAPTATION_GRID,
) -> tuple[Adaptation, dict[str, float]]:
    """The setting of ``grid`` with the best size-weighted mean gain in weighted F1 over
    ``looks``: areas the model did not train on, each with its own class mix (inner held-out
    bioregions of a training side, never a test split's rows).

    Args:
        looks: (posteriors float (n, C), labels int (n,)) per area.
        train_prior: float (C,) class shares of the rows the model was fitted on.
        grid: candidate settings; ties go to the earlier one.

    Returns:
        (the chosen setting, {label: size-weighted mean gain in weighted F1, points}).

    Raises:
        ValueError: no look, or a look's shapes disagree.
    """
    if not looks:
        raise ValueError("choose_adaptation needs at least one look")
    from sklearn.metrics import f1_score  # here: a map with --adapt-priors loads no scikit-learn

    sizes = np.array([len(y) for _, y in looks], np.float64)
    base = [f1_score(y, np.asarray(prob).argmax(1), average="weighted", zero_division=0) for prob, y in looks]
    scores: dict[str, float] = {}
    for a in grid:
        gains = [
            100.0 * (f1_score(y, a.apply(prob, train_prior).argmax(1), average="weighted", zero_division=0) - b)
            for (prob, y), b in zip(looks, base, strict=True)
        ]
        scores[a.label] = float(np.average(gains, weights=sizes))
    best = max(range(len(grid)), key=lambda i: (scores[grid[i].label], -i))
    return grid[best], scores


def adaptation_from_label(label: str) -> Adaptation:
    """The :data:`ADAPTATION_GRID` setting with this label (as ``<scenario>_selection.csv`` stores it).

    Raises:
        ValueError: no setting of the grid has it.
    """
    for a in ADAPTATION_GRID:
        if a.label == label:
            return a
    raise ValueError(f"unknown adaptation {label!r}; use one of {[a.label for a in ADAPTATION_GRID]}")
