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
"""Smallest prior of a class present in training (keeps the logarithms finite)."""


def em_priors(prob: np.ndarray, train_prior: np.ndarray, max_iter: int = 100, tol: float = 1e-6) -> np.ndarray:
    """Target-area class priors by EM (Saerens et al. 2002, eqs. 2.4–2.5).

    Args:
        prob: float (N, C) calibrated posteriors of the target's unlabelled samples.
        train_prior: float (C,) class shares of the training rows (sums to 1).
        max_iter, tol: EM stops after ``max_iter`` steps or when no prior moves by more than ``tol``.

    Returns:
        float64 (C,) estimated target priors (sum 1). A class absent from the training rows
        (prior 0) keeps prior 0: the network's output for a class it never saw carries no
        evidence, and EM would otherwise inflate it without bound.

    Raises:
        ValueError: shapes disagree or no sample is given.
    """
    p = np.asarray(prob, np.float64)
    raw = np.asarray(train_prior, np.float64)
    if p.ndim != 2 or p.shape[1] != len(raw) or len(p) == 0:
        raise ValueError(f"posteriors {p.shape} do not fit {len(raw)} training priors")
    seen = raw > 0
    p = np.where(seen[None, :], p, 0.0)
    pi0 = np.where(seen, np.maximum(raw, PRIOR_FLOOR), 0.0)
    pi0 = pi0 / pi0.sum()
    ratio0 = np.where(seen, 1.0 / np.where(seen, pi0, 1.0), 0.0)
    pi = pi0.copy()
    for _ in range(max_iter):
        w = p * (pi * ratio0)[None, :]
        w /= np.maximum(w.sum(1, keepdims=True), 1e-300)
        new = np.where(seen, np.maximum(w.mean(0), PRIOR_FLOOR), 0.0)
        new /= new.sum()
        done = np.abs(new - pi).max() < tol
        pi = new
        if done:
            break
    return pi


def prior_bias(target_prior: np.ndarray, train_prior: np.ndarray) -> np.ndarray:
    """Logit bias ``log(π' / π)`` (C,) float32 to add to a model's (temperature-scaled) logits;
    0 for a class absent from training (its output is left as the network gives it).
    """
    s = np.asarray(train_prior, np.float64)
    t = np.maximum(np.asarray(target_prior, np.float64), PRIOR_FLOOR)
    return np.where(s > 0, np.log(t / np.maximum(s, PRIOR_FLOOR)), 0.0).astype(np.float32)


def adapt(prob: np.ndarray, train_prior: np.ndarray) -> np.ndarray:
    """Posteriors (N, C) adapted to the priors EM estimates on these same samples (classes absent
    from training get posterior 0).
    """
    pi = em_priors(prob, train_prior)
    seen = np.asarray(train_prior) > 0
    w = np.where(seen[None, :], np.asarray(prob, np.float64), 0.0) * np.exp(prior_bias(pi, train_prior))[None, :]
    return w / np.maximum(w.sum(1, keepdims=True), 1e-300)
