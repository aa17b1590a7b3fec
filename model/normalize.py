"""Min–max feature normalisation fitted on the training table (BRIDGE-LC reference code).

The statistics are stored in the model bundle, so inference applies exactly the training
transform (the reference code never saved them; DESIGN.md "pitfalls").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MinMaxNormalizer:
    """``(x − min) / (max − min)`` per feature; constant features map to 0.

    Attributes:
        minimum, maximum: float32 arrays (F,) in the spec's stored units.
    """

    minimum: np.ndarray
    maximum: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> MinMaxNormalizer:
        """Fit on a float array (N, F), ignoring NaN."""
        return cls(np.nanmin(x, axis=0).astype(np.float32), np.nanmax(x, axis=0).astype(np.float32))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Apply to a float array (N, F); returns float32 (N, F). Values outside the training
        range are not clipped (they map outside [0, 1]).
        """
        span = np.where(self.maximum > self.minimum, self.maximum - self.minimum, 1.0)
        return ((x - self.minimum) / span).astype(np.float32)

    def to_json(self) -> dict[str, list[float]]:
        """JSON-able statistics."""
        return {"min": self.minimum.tolist(), "max": self.maximum.tolist()}

    @classmethod
    def from_json(cls, d: dict[str, list[float]]) -> MinMaxNormalizer:
        """Inverse of :meth:`to_json`."""
        return cls(np.asarray(d["min"], np.float32), np.asarray(d["max"], np.float32))
