"""Label-shift adaptation: EM re-estimation of class priors on unlabelled target pixels
(Saerens, Latinne & Decaestecker 2002, Neural Computation 14(1), §2.2), applied as an output
bias so inference stays one fused network.

A model trained where class c has prior π_c gives posteriors p(c | x). On a target area whose
priors are π'_c, Bayes' rule gives ``p'(c | x) ∝ p(c | x) · π'_c / π_c``. EM alternates
``p'`` (E-step) and ``π' = mean_x p'(c | x)`` (M-step) until π' stops changing; the adapted
logits are ``z + log(π' / π)``. The posteriors must be calibrated (temperature scaling) for
the estimate to be meaningful.
"""

from __future__ import annotations

import numpy as np

PRIOR_FLOOR = 1e-6
"""Smallest prior kept (a class absent from training keeps prior 0 and bias −inf is avoided)."""


def em_priors(prob: np.ndarray, train_prior: np.ndarray, max_iter: int = 100, tol: float = 1e-6
              ) -> np.ndarray:
    """Target-area class priors by EM (Saerens et al. 2002, eqs. 2.4–2.5).

    Args:
        prob: float (N, C) calibrated posteriors of the target's unlabelled samples.
        train_prior: float (C,) class shares of the training rows (sums to 1).
        max_iter, tol: EM stops after ``max_iter`` steps or when no prior moves by more than ``tol``.

    Returns:
        float64 (C,) estimated target priors (sum 1).

    Raises:
        ValueError: shapes disagree or no sample is given.
    """
    p = np.asarray(prob, np.float64)
    pi0 = np.maximum(np.asarray(train_prior, np.float64), PRIOR_FLOOR)
    pi0 = pi0 / pi0.sum()
    if p.ndim != 2 or p.shape[1] != len(pi0) or len(p) == 0:
        raise ValueError(f"posteriors {p.shape} do not fit {len(pi0)} training priors")
    pi = pi0.copy()
    for _ in range(max_iter):
        w = p * (pi / pi0)[None, :]
        w /= np.maximum(w.sum(1, keepdims=True), 1e-300)
        new = np.maximum(w.mean(0), PRIOR_FLOOR)
        new /= new.sum()
        done = np.abs(new - pi).max() < tol
        pi = new
        if done:
            break
    return pi


def prior_bias(target_prior: np.ndarray, train_prior: np.ndarray) -> np.ndarray:
    """Logit bias ``log(π' / π)`` (C,) float32 to add to a model's (temperature-scaled) logits."""
    t = np.maximum(np.asarray(target_prior, np.float64), PRIOR_FLOOR)
    s = np.maximum(np.asarray(train_prior, np.float64), PRIOR_FLOOR)
    return np.log(t / s).astype(np.float32)


def adapt(prob: np.ndarray, train_prior: np.ndarray) -> np.ndarray:
    """Posteriors (N, C) adapted to the priors EM estimates on these same samples."""
    pi = em_priors(prob, train_prior)
    w = np.asarray(prob, np.float64) * np.exp(prior_bias(pi, train_prior))[None, :]
    return w / np.maximum(w.sum(1, keepdims=True), 1e-300)
