"""The BRIDGE-LC network (Ghassemi et al. 2025, §3.2–3.4; FEATURES.md §5) and its ablations.

- Location branch (§3.2): sinusoidal encoding of (lon, lat) in degrees (2d = 128), then a
  learnable MLP 128 → 256 (BatchNorm, ReLU, Dropout) → 128 with a sigmoid ("learnt PE").
  The ablations of Table 12 use the encoding alone ("fixed") or no coordinates ("none").
- Two encoders (§3.3), region-invariant and region-specific, each (F + 128) → 256 → 256 → 256
  with BatchNorm, ReLU and Dropout 0.5 after every layer. Without the region branch
  (Table 12 "no region") only the invariant encoder and class head exist.
- Heads: invariant → C classes, specific → R bioregions (§3.3).
- Inference uses only the coordinates and the invariant branch (§3.5), with logits divided
  by a calibration temperature (1 = none; fitted by :mod:`model.calibration`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from model.encoding import multiscale_encoding, sinusoidal_encoding


@dataclass(frozen=True)
class BridgeConfig:
    """Architecture settings; stored in the bundle JSON.

    Attributes:
        n_features: F, the number of input features (after selection).
        n_classes: C (7 at Level-1, 19 at Level-2).
        n_regions: R (8 EEA bioregions).
        pe_dim: 2d, the width of the sinusoidal encoding of lon+lat (128).
        loc_hidden: hidden width of the location MLP (256).
        hidden: width of each encoder layer (256).
        depth: number of encoder layers (3).
        dropout: dropout after every encoder layer (0.5).
        location: ``learnt`` (paper), ``fixed`` (encoding only) or ``none`` (no coordinates).
        encoding: ``paper`` (§3.2, degrees, base 10000) or ``multiscale`` (11 km … 360°).
        region_branch: the region-specific encoder, region head and SupCon (paper: yes).
        temperature: calibration temperature T applied at inference (softmax(z / T)).
    """

    n_features: int
    n_classes: int
    n_regions: int = 8
    pe_dim: int = 128
    loc_hidden: int = 256
    hidden: int = 256
    depth: int = 3
    dropout: float = 0.5
    location: Literal["learnt", "fixed", "none"] = "learnt"
    encoding: Literal["paper", "multiscale"] = "paper"
    region_branch: bool = True
    temperature: float = 1.0

    def to_json(self) -> dict[str, float | int | str | bool]:
        """The settings as a JSON-able dict."""
        return asdict(self)

    @property
    def location_width(self) -> int:
        """Width of the location code concatenated to the features (0 without coordinates)."""
        return 0 if self.location == "none" else self.pe_dim


class MaskDropout(nn.Module):
    """Inverted dropout with a ``rand < 1 − p`` mask: the same distribution as
    :class:`torch.nn.Dropout`, about twice as fast on CPU (Bernoulli sampling dominated a
    training step in profiling; issue #4 benchmark).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zero each element with probability p in training and scale by 1/(1 − p)."""
        if not self.training or self.p == 0:
            return x
        keep = torch.rand_like(x) >= self.p
        return x * keep * (1.0 / (1.0 - self.p))


def _block(n_in: int, n_out: int, dropout: float) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU(), MaskDropout(dropout)]


def _encoder(n_in: int, cfg: BridgeConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(cfg.depth):
        layers += _block(n_in if i == 0 else cfg.hidden, cfg.hidden, cfg.dropout)
    return nn.Sequential(*layers)


class BridgeLC(nn.Module):
    """BRIDGE-LC: features (N, F) float32 (normalised) + lon/lat (N, 2) degrees → logits.

    ``forward`` returns ``(class_logits (N, C), region_logits (N, R) or None, z_inv (N, H),
    z_spec (N, H) or None)`` where ``z_*`` are the last hidden layers (after dropout), the SupCon
    inputs; the region outputs are None without the region branch.
    """

    def __init__(self, cfg: BridgeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.location: nn.Module | None = None
        if cfg.location == "learnt":
            self.location = nn.Sequential(
                *_block(cfg.pe_dim, cfg.loc_hidden, cfg.dropout),
                nn.Linear(cfg.loc_hidden, cfg.pe_dim),
                nn.Sigmoid(),
            )
        n_in = cfg.n_features + cfg.location_width
        self.invariant = _encoder(n_in, cfg)
        self.class_head = nn.Linear(cfg.hidden, cfg.n_classes)
        self.specific: nn.Module | None = None
        self.region_head: nn.Module | None = None
        if cfg.region_branch:
            self.specific = _encoder(n_in, cfg)
            self.region_head = nn.Linear(cfg.hidden, cfg.n_regions)

    def _input(self, x: torch.Tensor, lonlat_deg: torch.Tensor) -> torch.Tensor:
        if self.cfg.location == "none":
            return x
        enc = multiscale_encoding if self.cfg.encoding == "multiscale" else sinusoidal_encoding
        loc = enc(lonlat_deg, self.cfg.pe_dim)
        if self.location is not None:
            loc = self.location(loc)
        return torch.cat([x, loc], dim=1)

    def forward(
        self, x: torch.Tensor, lonlat_deg: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """Training forward pass through both branches (see class docstring for shapes)."""
        h = self._input(x, lonlat_deg)
        z_inv = self.invariant(h)
        if self.specific is None or self.region_head is None:
            return self.class_head(z_inv), None, z_inv, None
        z_spec = self.specific(h)
        return self.class_head(z_inv), self.region_head(z_spec), z_inv, z_spec

    def predict_logits(self, x: torch.Tensor, lonlat_deg: torch.Tensor) -> torch.Tensor:
        """Inference: class logits (N, C) from the invariant branch only (§3.5), divided by the
        calibration temperature.
        """
        return self.class_head(self.invariant(self._input(x, lonlat_deg))) / self.cfg.temperature
