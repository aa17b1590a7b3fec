"""Feature normalisation fitted on the training rows, stored in the bundle (no pickle).

Two affine normalisers, both ``(clip(x, lo, hi) − center) / scale`` per feature:

- :class:`MinMaxNormalizer` (faithful BRIDGE-LC; the authors' ``MinMaxScaler``): center = min,
  scale = max − min, no clipping. Heavy-tailed features are squashed: ELC10's
  ``asc_dpol_median`` (median VH dB / median VV dB) has an inter-quartile range of 1e-4 of its
  range, so it is constant to the network (issue #15).
- :class:`RobustNormalizer` (eulc's default): values are first clipped to the training
  percentiles ``[p_lo, p_hi]`` (winsorising the heavy tails of ratio features and bounding
  inputs outside the training range, which 6.5 % of Alpine LORO test rows are), then centred on
  the median and divided by the inter-quartile range / 1.349 (the standard deviation of a
  Gaussian with that IQR). The clip and the affine map are folded into the fused inference
  network (:mod:`model.fused`): one ``clamp`` and the first Linear layer.

The statistics are stored in the model bundle, so inference applies exactly the training
transform (the reference code never saved them; DESIGN.md "pitfalls").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

ROBUST_CLIP_PERCENTILES = (0.5, 99.5)
"""Training percentiles the robust normaliser clips to (both tails, 1 % in all)."""
IQR_TO_SD = 1.349
"""IQR of a standard Gaussian: IQR / 1.349 estimates σ."""


@dataclass(frozen=True)
class AffineNormalizer:
    """``(clip(x, lo, hi) − center) / scale`` per feature.

    Attributes:
        center, scale: float32 (F,) in the spec's stored units; scale > 0.
        lo, hi: float32 (F,) clip bounds in stored units (±inf = no clipping).
        method: ``minmax`` or ``robust`` (how the statistics were fitted).
    """

    center: np.ndarray
    scale: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    method: Literal["minmax", "robust"] = "minmax"

    def __len__(self) -> int:
        return len(self.center)

    @property
    def clips(self) -> bool:
        """Whether any bound is finite (the fused network then clamps its input)."""
        return bool(np.isfinite(self.lo).any() or np.isfinite(self.hi).any())

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Apply to a float array (N, F) in stored units; returns float32 (N, F). NaN stays NaN."""
        if self.clips:
            x = np.clip(x, self.lo, self.hi)
        return ((x - self.center) / self.scale).astype(np.float32)

    def transform_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`transform` for a float32 tensor (N, F) on any device (training batches)."""

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(device=x.device, dtype=x.dtype)

        if self.clips:
            x = torch.clamp(x, t(self.lo), t(self.hi))
        return (x - t(self.center)) / t(self.scale)

    def to_json(self) -> dict[str, Any]:
        """JSON-able statistics (``method`` plus the arrays as lists; ±inf as None)."""

        def bound(a: np.ndarray) -> list[float | None]:
            return [float(v) if np.isfinite(v) else None for v in a]

        if self.method == "minmax":  # the format earlier bundles use
            return {"method": "minmax", "min": self.center.tolist(), "max": (self.center + self.scale).tolist()}
        return {
            "method": self.method,
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "lo": bound(self.lo),
            "hi": bound(self.hi),
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> AffineNormalizer:
        """Inverse of :meth:`to_json`; a bundle without ``method`` is min–max (eulc < 0.3).

        Raises:
            KeyError, TypeError, ValueError: a missing key, a wrong type or a non-positive scale.
        """
        method = d.get("method", "minmax")
        if method == "minmax":
            return MinMaxNormalizer(np.asarray(d["min"], np.float32), np.asarray(d["max"], np.float32))
        if method != "robust":
            raise ValueError(f"unknown normaliser method {method!r}")

        def bound(v: list[float | None], fill: float) -> np.ndarray:
            return np.asarray([fill if b is None else b for b in v], np.float32)

        scale = np.asarray(d["scale"], np.float32)
        if not (scale > 0).all():
            raise ValueError("normaliser scale must be > 0")
        return AffineNormalizer(
            np.asarray(d["center"], np.float32), scale, bound(d["lo"], -np.inf), bound(d["hi"], np.inf), "robust"
        )


def MinMaxNormalizer(minimum: np.ndarray, maximum: np.ndarray) -> AffineNormalizer:  # noqa: N802
    """The faithful min–max normaliser ``(x − min) / (max − min)`` (constant features: scale 1),
    no clipping: values outside the training range map outside [0, 1].

    Args:
        minimum, maximum: (F,) in the spec's stored units.
    """
    mn, mx = np.asarray(minimum, np.float32), np.asarray(maximum, np.float32)
    scale = np.where(mx > mn, mx - mn, 1.0).astype(np.float32)
    inf = np.full(len(mn), np.inf, np.float32)
    return AffineNormalizer(mn, scale, -inf, inf, "minmax")


def fit_normalizer(x: np.ndarray, method: Literal["minmax", "robust"] = "minmax") -> AffineNormalizer:
    """Fit on the training rows, a float array (N, F) in stored units, ignoring NaN.

    ``robust``: clip bounds = training percentiles :data:`ROBUST_CLIP_PERCENTILES`, center =
    median, scale = IQR / 1.349 (falling back to (p_hi − p_lo) / 4, then 1, for features whose
    IQR is 0).
    """
    if method == "minmax":
        return MinMaxNormalizer(np.nanmin(x, axis=0), np.nanmax(x, axis=0))
    lo, q25, med, q75, hi = np.nanpercentile(
        x, [ROBUST_CLIP_PERCENTILES[0], 25, 50, 75, ROBUST_CLIP_PERCENTILES[1]], axis=0
    )
    scale = (q75 - q25) / IQR_TO_SD
    scale = np.where(scale > 0, scale, (hi - lo) / 4)
    scale = np.where(scale > 0, scale, 1.0)
    return AffineNormalizer(
        med.astype(np.float32), scale.astype(np.float32), lo.astype(np.float32), hi.astype(np.float32), "robust"
    )
