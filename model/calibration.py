"""Probability calibration: temperature scaling (Guo et al. 2017, "On Calibration of Modern
Neural Networks", §4.2) and the expected calibration error (ibid. §2, eq. 3).
"""

from __future__ import annotations

import numpy as np
import torch

ECE_BINS = 15
"""Equal-width confidence bins of the ECE (Guo et al. use 15)."""


def fit_temperature(logits: np.ndarray, y: np.ndarray, max_iter: int = 200) -> float:
    """The temperature T > 0 that minimises the NLL of ``softmax(logits / T)`` on held-out rows.

    Args:
        logits: float (N, C) uncalibrated class logits of validation rows.
        y: int (N,) their reference classes.
        max_iter: L-BFGS iterations.

    Returns:
        T (1 = already calibrated; > 1 softens over-confident predictions).

    Raises:
        ValueError: empty input or mismatched lengths.
    """
    if len(logits) == 0 or len(logits) != len(y):
        raise ValueError(f"need matching non-empty logits and labels, got {len(logits)} and {len(y)}")
    z = torch.as_tensor(logits, dtype=torch.float64)
    t = torch.as_tensor(y, dtype=torch.int64)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # T = exp(log_t) > 0
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), t)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def expected_calibration_error(prob: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE = Σ_b |B_b|/N · |accuracy(B_b) − confidence(B_b)| over equal-width confidence bins.

    Args:
        prob: float (N, C) class probabilities.
        y: int (N,) reference classes.
        n_bins: number of bins on (0, 1].

    Returns:
        ECE as a fraction (0.03 = 3 %); NaN for empty input.
    """
    if len(prob) == 0:
        return float("nan")
    conf = prob.max(1)
    correct = (prob.argmax(1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for i in range(n_bins):
        m = b == i
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


PROB_FLOOR = 1e-12
"""Probabilities are floored here before the log (a tree ensemble gives exact zeros)."""


def log_probabilities(prob: np.ndarray) -> np.ndarray:
    """Logits of a model that gives probabilities only (RF, XGBoost): ``log(max(p, 1e-12))``, float64
    (N, C). Temperature scaling on them is Guo et al.'s method applied to any classifier
    (softmax(log p) = p, so T = 1 leaves the model unchanged).
    """
    return np.log(np.maximum(np.asarray(prob, np.float64), PROB_FLOOR))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / T)``, float64 (N, C); rows sum to 1."""
    z = np.asarray(logits, np.float64) / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(1, keepdims=True))
