"""The BRIDGE-LC network (Ghassemi et al. 2025, §3.2–3.4; FEATURES.md §5).

- Location branch: sinusoidal encoding of (lon, lat) in degrees (2d = 128), then a learnable
  MLP 128 → 256 (BatchNorm, ReLU, Dropout) → 128 with a sigmoid (§3.2, "learnt PE").
- Two encoders, region-invariant and region-specific, each (F + 128) → 256 → 256 → 256 with
  BatchNorm, ReLU and Dropout 0.5 after every layer (§3.3).
- Heads: invariant → C classes, specific → R bioregions (§3.3).
- Inference uses only the coordinates and the invariant branch (§3.5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from model.encoding import sinusoidal_encoding


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
    """

    n_features: int
    n_classes: int
    n_regions: int = 8
    pe_dim: int = 128
    loc_hidden: int = 256
    hidden: int = 256
    depth: int = 3
    dropout: float = 0.5

    def to_json(self) -> dict[str, float | int]:
        """The settings as a JSON-able dict."""
        return asdict(self)


def _block(n_in: int, n_out: int, dropout: float) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU(), nn.Dropout(dropout)]


def _encoder(n_in: int, cfg: BridgeConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(cfg.depth):
        layers += _block(n_in if i == 0 else cfg.hidden, cfg.hidden, cfg.dropout)
    return nn.Sequential(*layers)


class BridgeLC(nn.Module):
    """BRIDGE-LC: features (N, F) float32 (normalised) + lon/lat (N, 2) degrees → logits.

    ``forward`` returns ``(class_logits (N, C), region_logits (N, R), z_inv (N, H), z_spec (N, H))``
    where ``z_*`` are the last hidden layers (after dropout), the SupCon inputs.
    """

    def __init__(self, cfg: BridgeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.location = nn.Sequential(
            *_block(cfg.pe_dim, cfg.loc_hidden, cfg.dropout),
            nn.Linear(cfg.loc_hidden, cfg.pe_dim),
            nn.Sigmoid(),
        )
        n_in = cfg.n_features + cfg.pe_dim
        self.invariant = _encoder(n_in, cfg)
        self.specific = _encoder(n_in, cfg)
        self.class_head = nn.Linear(cfg.hidden, cfg.n_classes)
        self.region_head = nn.Linear(cfg.hidden, cfg.n_regions)

    def _input(self, x: torch.Tensor, lonlat_deg: torch.Tensor) -> torch.Tensor:
        loc = self.location(sinusoidal_encoding(lonlat_deg, self.cfg.pe_dim))
        return torch.cat([x, loc], dim=1)

    def forward(self, x: torch.Tensor, lonlat_deg: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training forward pass through both branches (see class docstring for shapes)."""
        h = self._input(x, lonlat_deg)
        z_inv = self.invariant(h)
        z_spec = self.specific(h)
        return self.class_head(z_inv), self.region_head(z_spec), z_inv, z_spec

    def predict_logits(self, x: torch.Tensor, lonlat_deg: torch.Tensor) -> torch.Tensor:
        """Inference: class logits (N, C) from the invariant branch only (§3.5)."""
        return self.class_head(self.invariant(self._input(x, lonlat_deg)))
