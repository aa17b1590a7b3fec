"""Piecewise-linear encoding of numeric features (Gorishniy, Rubachev & Babenko 2022, "On
Embeddings for Numerical Features in Tabular Deep Learning", §3.2 Eq. 1; issue #29 part 4).

For a feature with bin edges ``e_0 < e_1 < … < e_T`` (T bins), component t of the encoding is
``(x − e_t) / (e_{t+1} − e_t)`` clamped to [0, 1], except that the first component is only
clamped above and the last only below, so values outside the training range extrapolate
linearly. The edges are training-side quantiles from ``rtdl_num_embeddings.compute_bins``
(the authors' package). Every feature gets the same number of slots ``n_bins``; a feature with
fewer distinct quantiles (a discrete feature) has zero slots in the middle, in the layout of
``rtdl_num_embeddings``' own encoder: its leading T − 1 components first, its last component in
the last slot. A feature with one bin is split at the middle into two, so every slot follows
the clamp rule of its position.

The encoding is a fixed affine map per slot followed by the clamps, stored as a weight and a
bias of shape (F, n_bins); the network keeps them as buffers (saved in the bundle's
safetensors) and :mod:`model.fused` folds the input normaliser into them.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.core.errors import SchemaError


def quantile_bins(x: np.ndarray, n_bins: int) -> list[np.ndarray]:
    """Bin edges per feature from training rows, by quantiles (the authors' ``compute_bins``).

    Args:
        x: (N, F) float32 training features, finite (the normalised ones the network sees).
        n_bins: the most bins per feature (≥ 2); fewer where a feature has fewer distinct values.

    Returns:
        F float64 arrays of strictly increasing edges, each of length 3 … ``n_bins`` + 1.

    Raises:
        SchemaError: ``n_bins`` < 2, fewer than two rows, or a constant or non-finite feature
            (its index named).
    """
    if n_bins < 2:
        raise SchemaError(f"ple_bins = {n_bins}", "Give at least 2 bins per feature, or 0 for no encoding")
    if x.ndim != 2 or len(x) < 2:
        raise SchemaError(f"piecewise-linear bins need (N >= 2, F) rows, got shape {x.shape}", "Give more rows")
    bad = np.flatnonzero(~np.isfinite(x).all(0) | (np.nanmax(x, 0) <= np.nanmin(x, 0)))
    if len(bad):
        raise SchemaError(
            f"feature column {int(bad[0])} is constant or not finite in the training rows",
            "Drop constant columns before training with piecewise-linear encoding",
        )
    from rtdl_num_embeddings import compute_bins

    edges = compute_bins(torch.from_numpy(np.ascontiguousarray(x, np.float32)), n_bins=n_bins)
    out = []
    for e in edges:
        a = e.double().numpy()
        if len(a) == 2:  # one bin: two, so each slot follows its position's clamp rule
            a = np.array([a[0], (a[0] + a[1]) / 2, a[1]])
        out.append(a)
    return out


def ple_tables(edges: list[np.ndarray], n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The affine part of the encoding: weight and bias (F, ``n_bins``) float32, so that slot t
    of feature f is ``weight[f, t] · x + bias[f, t]`` before the clamps; unused slots are 0.

    Args:
        edges: F arrays of strictly increasing edges (from :func:`quantile_bins`), each with at
            most ``n_bins`` + 1 and at least 3 entries.
        n_bins: the number of slots per feature.

    Raises:
        SchemaError: an edge array too long, too short or not strictly increasing (its feature
            index named).
    """
    w = np.zeros((len(edges), n_bins), np.float64)
    b = np.zeros_like(w)
    for f, e in enumerate(edges):
        e = np.asarray(e, np.float64)
        if not 3 <= len(e) <= n_bins + 1 or not (np.diff(e) > 0).all():
            raise SchemaError(
                f"bin edges of feature {f} ({len(e)} edges) must be 3 … {n_bins + 1} strictly increasing values",
                "Compute them with model.ple.quantile_bins",
            )
        width = np.diff(e)
        scale, shift = 1.0 / width, -e[:-1] / width
        t = len(width)
        w[f, : t - 1], b[f, : t - 1] = scale[:-1], shift[:-1]
        w[f, -1], b[f, -1] = scale[-1], shift[-1]
    return w.astype(np.float32), b.astype(np.float32)


def ple_encode(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The encoding (N, F · n_bins) of features ``x`` (N, F), feature-major (the slots of
    feature 0 first), in ``x``'s dtype.

    ``weight``/``bias``: (F, n_bins) from :func:`ple_tables` (or with a normaliser folded in).
    """
    z = torch.addcmul(bias, weight, x[..., None])
    lo = torch.zeros_like(weight)  # one clamp with per-slot bounds: 3x faster than three slices
    lo[:, 0] = -torch.inf
    hi = torch.ones_like(weight)
    hi[:, -1] = torch.inf
    return torch.clamp(z, lo, hi).flatten(1)
