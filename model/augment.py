"""Physical data augmentation of feature rows (issue #15; the "seed 004" idea).

After CropNet's reflectance augmentation; applied to raw features in the spec's stored units
before normalisation, one random draw per training row:

- **S2 reflectance gain**: the level statistics (median, mean, pN, min, max) of S2 *bands* are
  multiplied by one gain ``g ~ N(1, gain_sigma)`` (illumination, BRDF, atmospheric residue).
  Normalised-difference indices of the bands are invariant to a common gain, so they keep
  their value, which is what recomputing them from the scaled bands would give.
- **S1 calibration offset**: the level statistics of S1 bands in dB get one additive offset
  ``δ ~ N(0, db_sigma)`` dB (incidence angle, calibration), the same for VV and VH; derived
  features that are a ratio or difference of two augmented features (``a / b``, ``a - b``) are
  recomputed from the shifted values. Standard deviations and textures are unchanged.
- **Seasonal shift**: groups of 12 monthly features (same sensor, source, statistic, orbit)
  are rolled by ±1 month with probability ``shift_prob`` (phenology a month early or late).

Features of other kinds (indices, ratios of unaugmented inputs, LST, DEM) are left unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.core.spec import FeatureSpec

LEVEL_STATS = ("median", "mean", "min", "max")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_BINARY = re.compile(r"^\s*([A-Za-z_]\w*)\s*([/-])\s*([A-Za-z_]\w*)\s*$")


def _is_level(stat: str) -> bool:
    return stat in LEVEL_STATS or bool(re.fullmatch(r"p\d+(\.\d+)?", stat))


@dataclass(frozen=True)
class PhysicalAugmentation:
    """Which columns of a feature matrix (N, F) each augmentation touches.

    Attributes:
        gain_idx: int64 (G,) S2 band level-statistic columns (multiplied by the gain).
        db_idx: int64 (D,) S1 dB level-statistic columns; db_scale: float32 (D,) stored units
            per dB (the features' ``scale``).
        binary: (target, a, b, op, scale_t, scale_a, scale_b) derived columns recomputed as
            ``(a / scale_a  op  b / scale_b) · scale_t``.
        monthly: int64 (M, 12) column groups ordered January … December.
        gain_sigma, db_sigma, shift_prob: the draws' spread (1, dB) and the shift probability.
    """

    gain_idx: np.ndarray
    db_idx: np.ndarray
    db_scale: np.ndarray
    binary: list[tuple[int, int, int, str, float, float, float]] = field(default_factory=list)
    monthly: np.ndarray = field(default_factory=lambda: np.zeros((0, 12), np.int64))
    gain_sigma: float = 0.05
    db_sigma: float = 0.5
    shift_prob: float = 0.2

    @classmethod
    def from_spec(
        cls,
        spec: FeatureSpec,
        names: list[str],
        gain_sigma: float = 0.05,
        db_sigma: float = 0.5,
        shift_prob: float = 0.2,
    ) -> PhysicalAugmentation:
        """The columns of ``names`` (the matrix's column order) each augmentation touches."""
        col = {n: i for i, n in enumerate(names)}
        gain, db, db_scale = [], [], []
        groups: dict[tuple[str, str, str, str | None], dict[int, int]] = {}
        for n in names:
            f = spec.feature(n)
            if f.derived:
                continue
            sensor = spec.sensors[f.sensor]
            # a band, not a named index or an expression
            is_band = bool(_IDENT.fullmatch(f.source)) and f.source not in spec.indices
            if is_band and _is_level(f.stat) and sensor.units == "reflectance":
                gain.append(col[n])
            elif is_band and _is_level(f.stat) and sensor.units == "dB":
                db.append(col[n])
                db_scale.append(f.scale)
            if len(f.window.months) == 1:
                groups.setdefault((f.sensor, f.source, f.stat, f.orbit), {})[f.window.months[0]] = col[n]
        touched = set(gain) | set(db)
        binary = []
        for n in names:
            f = spec.feature(n)
            m = _BINARY.match(f.derived or "")
            if m and m.group(1) in col and m.group(3) in col and {col[m.group(1)], col[m.group(3)]} & touched:
                a, b = spec.feature(m.group(1)), spec.feature(m.group(3))
                binary.append((col[n], col[a.name], col[b.name], m.group(2), f.scale, a.scale, b.scale))
        monthly = [[g[m] for m in range(1, 13)] for g in groups.values() if len(g) == 12]
        return cls(
            np.asarray(gain, np.int64),
            np.asarray(db, np.int64),
            np.asarray(db_scale, np.float32),
            binary,
            np.asarray(monthly, np.int64).reshape(-1, 12),
            gain_sigma,
            db_sigma,
            shift_prob,
        )

    @property
    def empty(self) -> bool:
        """True when no column of the matrix is augmented."""
        return not (len(self.gain_idx) or len(self.db_idx) or len(self.monthly))

    def describe(self) -> str:
        """One line for logs and model cards."""
        return (
            f"S2 gain N(1, {self.gain_sigma}) on {len(self.gain_idx)} band features, "
            f"S1 offset N(0, {self.db_sigma} dB) on {len(self.db_idx)} features "
            f"({len(self.binary)} derived recomputed), ±1-month shift (p {self.shift_prob}) "
            f"of {len(self.monthly)} monthly groups"
        )

    def apply(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Augment raw feature rows x (B, F) float32 in stored units; returns a new tensor."""
        x = x.clone()
        b, dev = len(x), x.device
        if len(self.gain_idx):
            g = 1.0 + self.gain_sigma * torch.randn(b, 1, device=dev, generator=gen)
            idx = torch.as_tensor(self.gain_idx, device=dev)
            x[:, idx] = x[:, idx] * g
        if len(self.db_idx):
            d = self.db_sigma * torch.randn(b, 1, device=dev, generator=gen)
            idx = torch.as_tensor(self.db_idx, device=dev)
            x[:, idx] = x[:, idx] + d * torch.as_tensor(self.db_scale, device=dev)[None, :]
        for t, a, c, op, st, sa, sc in self.binary:
            va, vc = x[:, a] / sa, x[:, c] / sc
            x[:, t] = (va / vc if op == "/" else va - vc) * st
        if len(self.monthly):
            shift = torch.randint(-1, 2, (b,), device=dev, generator=gen)
            shift = torch.where(
                torch.rand(b, device=dev, generator=gen) < self.shift_prob, shift, torch.zeros_like(shift)
            )
            months = torch.arange(12, device=dev)
            for grp in self.monthly:
                cols = torch.as_tensor(grp, device=dev)
                src = cols[(months[None, :] - shift[:, None]) % 12]  # (B, 12)
                x[:, cols] = torch.gather(x, 1, src)
        return x
