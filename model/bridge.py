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

Two representation options (issue #29 part 4), both off in the paper's network:

- ``ple_bins``: each feature also enters as its piecewise-linear encoding (:mod:`model.ple`;
  Gorishniy et al. 2022), the input being ``[x, PLE(x), location]``. This is
  ``rtdl_num_embeddings.PiecewiseLinearEmbeddings(version="B", activation=False)`` followed by
  the first Linear with the per-feature embedding matrix folded into that Linear (two linear
  maps compose into one); as in version B the encoding's columns start at zero, so the network
  starts as the plain MLP and learns the piecewise part.
- ``ensemble`` k > 1: TabM-mini (Gorishniy et al. 2025, "TabM", §3): k members share every
  weight and differ by a multiplicative adapter r_i on the first layer's input (initialised to
  random signs, or N(0, 1) with the encoding, one value per feature chunk, as ``tabm``'s
  defaults); training sums the members' losses. Unlike the paper the class head is shared and
  the members' logits are averaged, so the mean embedding is the penultimate layer
  (:mod:`model.ood`) and ``head(mean z_i) = mean head(z_i)`` exactly. Without the region branch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from model.encoding import multiscale_encoding, sinusoidal_encoding
from model.ple import ple_encode, ple_tables


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
        ple_bins: slots of the piecewise-linear encoding per feature (0 = none; :mod:`model.ple`).
        ensemble: k, the TabM-mini members (1 = a single network).

    Raises:
        ValueError: ``ensemble`` > 1 with ``region_branch``.
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
    ple_bins: int = 0
    ensemble: int = 1

    def __post_init__(self) -> None:
        if self.ensemble > 1 and self.region_branch:
            raise ValueError("ensemble > 1 with the region branch: TabM-mini members are built without it")

    def to_json(self) -> dict[str, float | int | str | bool]:
        """The settings as a JSON-able dict."""
        return asdict(self)

    @property
    def location_width(self) -> int:
        """Width of the location code concatenated to the features (0 without coordinates)."""
        return 0 if self.location == "none" else self.pe_dim

    @property
    def input_width(self) -> int:
        """Width of the first Linear's input: features, their encoding, then the location code."""
        return self.n_features * (1 + self.ple_bins) + self.location_width


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
        n_in = cfg.input_width
        f, nb = cfg.n_features, cfg.ple_bins
        self.ple_weight: torch.Tensor | None
        self.ple_bias: torch.Tensor | None
        if nb:  # set from training quantiles by set_ple_bins; loaded with the weights
            self.register_buffer("ple_weight", torch.zeros(f, nb))
            self.register_buffer("ple_bias", torch.zeros(f, nb))
        else:
            self.ple_weight = self.ple_bias = None
        self.adapter: nn.Parameter | None = None
        if cfg.ensemble > 1:  # BridgeConfig refuses the region branch here
            per_feature = torch.randn(cfg.ensemble, f + (1 if cfg.location_width else 0))
            if not nb:
                per_feature = torch.where(per_feature < 0, -1.0, 1.0)  # tabm: random signs
            cols = [per_feature[:, :f], per_feature[:, :f].repeat_interleave(nb, dim=1)]
            if cfg.location_width:
                cols.append(per_feature[:, f:].expand(-1, cfg.location_width))
            self.adapter = nn.Parameter(torch.cat(cols, dim=1).contiguous())
        self.invariant = _encoder(n_in, cfg)
        if nb:  # version B: the encoding's columns start at zero (the plain MLP at first)
            with torch.no_grad():
                first = self.invariant[0]
                assert isinstance(first, nn.Linear)
                first.weight[:, f : f * (1 + nb)] = 0.0
        self.class_head = nn.Linear(cfg.hidden, cfg.n_classes)
        self.specific: nn.Module | None = None
        self.region_head: nn.Module | None = None
        if cfg.region_branch:
            self.specific = _encoder(n_in, cfg)
            self.region_head = nn.Linear(cfg.hidden, cfg.n_regions)

    def set_ple_bins(self, edges: list[np.ndarray]) -> None:
        """Set the piecewise-linear encoding from F arrays of bin edges in normalised feature
        units (:func:`model.ple.quantile_bins` on the training rows).

        Raises:
            ValueError: the network has no encoding (``ple_bins`` = 0) or ``edges`` has not F entries.
            SchemaError: edges not as :func:`model.ple.ple_tables` needs them.
        """
        if self.ple_weight is None or self.ple_bias is None or len(edges) != self.cfg.n_features:
            raise ValueError(f"edges: {len(edges)} features for a network with ple_bins={self.cfg.ple_bins}")
        w, b = ple_tables(edges, self.cfg.ple_bins)
        self.ple_weight.copy_(torch.from_numpy(w))
        self.ple_bias.copy_(torch.from_numpy(b))

    def per_member(self, t: torch.Tensor) -> torch.Tensor:
        """Rows of ``t`` (N, …) repeated for each ensemble member: (N · k, …), row-major as the
        logits of :meth:`forward` (targets and teacher probabilities for the members' losses).
        """
        return t if self.adapter is None else t.repeat_interleave(self.cfg.ensemble, dim=0)

    def _input(self, x: torch.Tensor, lonlat_deg: torch.Tensor) -> torch.Tensor:
        parts = [x]
        if self.ple_weight is not None and self.ple_bias is not None:
            parts.append(ple_encode(x, self.ple_weight, self.ple_bias))
        if self.cfg.location != "none":
            enc = multiscale_encoding if self.cfg.encoding == "multiscale" else sinusoidal_encoding
            loc = enc(lonlat_deg, self.cfg.pe_dim)
            if self.location is not None:
                loc = self.location(loc)
            parts.append(loc)
        h = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        if self.adapter is not None:  # TabM-mini: member i sees r_i * input, rows (N · k, n_in)
            h = (h[:, None, :] * self.adapter[None]).reshape(-1, h.shape[1])
        return h

    def _mean_member(self, z: torch.Tensor) -> torch.Tensor:
        return z if self.adapter is None else z.reshape(-1, self.cfg.ensemble, z.shape[1]).mean(1)

    def forward(
        self, x: torch.Tensor, lonlat_deg: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """Training forward pass through both branches (see class docstring for shapes). With
        ``ensemble`` k > 1 the class logits and ``z_inv`` have one row per sample and member,
        (N · k, ·) in the order of :meth:`per_member`.
        """
        h = self._input(x, lonlat_deg)
        z_inv = self.invariant(h)
        if self.specific is None or self.region_head is None:
            return self.class_head(z_inv), None, z_inv, None
        z_spec = self.specific(h)
        return self.class_head(z_inv), self.region_head(z_spec), z_inv, z_spec

    def predict_logits(self, x: torch.Tensor, lonlat_deg: torch.Tensor) -> torch.Tensor:
        """Inference: class logits (N, C) from the invariant branch only (§3.5), divided by the
        calibration temperature; with ``ensemble`` k > 1, the mean of the members' logits.
        """
        z = self._mean_member(self.invariant(self._input(x, lonlat_deg)))
        return self.class_head(z) / self.cfg.temperature
