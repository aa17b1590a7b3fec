"""Inference-only BRIDGE-LC with the normaliser, BatchNorm and temperature folded into the
Linear layers (paper §3.5: coordinates + invariant branch only; issue #5).

For a Linear ``W, b`` followed by an eval-mode BatchNorm (γ, β, running mean μ, variance σ²):
``W' = s·W``, ``b' = s·(b − μ) + β`` with ``s = γ / sqrt(σ² + ε)``. The min–max normaliser
``(x − min) / span`` is folded into the feature columns of the first Linear, and the
calibration temperature T into the class head (``W / T``, ``b / T``). The result computes the
same logits as :meth:`model.bridge.BridgeLC.predict_logits` on normalised inputs (to float32
rounding), with three matrix products and no BatchNorm or concatenation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from model.bridge import BridgeLC
from model.encoding import multiscale_encoding, sinusoidal_encoding
from model.normalize import MinMaxNormalizer


def _fold_bn(lin: nn.Linear, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    assert bn.running_mean is not None and bn.running_var is not None
    s = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    w = lin.weight.detach() * s[:, None]
    b = (lin.bias.detach() - bn.running_mean) * s + bn.bias.detach()
    return w, b


def _linear_bn_pairs(seq: nn.Sequential) -> list[tuple[nn.Linear, nn.BatchNorm1d]]:
    mods = list(seq)
    return [(m, mods[i + 1]) for i, m in enumerate(mods)  # type: ignore[misc]
            if isinstance(m, nn.Linear) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm1d)]


class FusedClassifier(nn.Module):
    """Raw features (N, F) float32 in the spec's stored units + lon/lat (N, 2) float32
    (EPSG:4326 degrees, lon first) → class logits (N, C) float32 already divided by the
    calibration temperature.

    Built from a trained :class:`~model.bridge.BridgeLC` and its
    :class:`~model.normalize.MinMaxNormalizer`; holds plain tensors (no BatchNorm, no dropout).
    """

    def __init__(self, net: BridgeLC, normalizer: MinMaxNormalizer) -> None:
        super().__init__()
        cfg = net.cfg
        self.location = cfg.location
        self.encoding = cfg.encoding
        self.pe_dim = cfg.pe_dim
        net = net.eval()
        with torch.no_grad():
            if isinstance(net.location, nn.Sequential):
                (l1, bn1), = _linear_bn_pairs(net.location)
                w, b = _fold_bn(l1, bn1)
                last = [m for m in net.location if isinstance(m, nn.Linear)][-1]
                self.loc_w1, self.loc_b1 = nn.Parameter(w.clone()), nn.Parameter(b.clone())
                self.loc_w2 = nn.Parameter(last.weight.detach().clone())
                self.loc_b2 = nn.Parameter(last.bias.detach().clone())
            pairs = _linear_bn_pairs(net.invariant)
            ws, bs = zip(*(_fold_bn(lin, bn) for lin, bn in pairs), strict=True)
            w0, b0 = ws[0], bs[0]
            f = cfg.n_features
            span = np.where(normalizer.maximum > normalizer.minimum,
                            normalizer.maximum - normalizer.minimum, 1.0).astype(np.float32)
            inv_span = torch.from_numpy(1.0 / span)
            shift = torch.from_numpy(normalizer.minimum.astype(np.float32) / span)
            wx = w0[:, :f] * inv_span[None, :]
            b0 = b0 - w0[:, :f] @ shift
            self.wx = nn.Parameter(wx.contiguous())
            self.wl = nn.Parameter(w0[:, f:].contiguous()) if cfg.location != "none" else None
            self.b0 = nn.Parameter(b0)
            self.hidden_w = nn.ParameterList([nn.Parameter(w.contiguous()) for w in ws[1:]])
            self.hidden_b = nn.ParameterList([nn.Parameter(b) for b in bs[1:]])
            t = float(cfg.temperature)
            self.head_w = nn.Parameter(net.class_head.weight.detach() / t)
            self.head_b = nn.Parameter(net.class_head.bias.detach() / t)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor, lonlat_deg: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) for raw features ``x`` (N, F) and ``lonlat_deg`` (N, 2)."""
        h = torch.addmm(self.b0, x, self.wx.t())
        if self.wl is not None:
            enc = multiscale_encoding if self.encoding == "multiscale" else sinusoidal_encoding
            loc = enc(lonlat_deg, self.pe_dim).to(x.dtype)
            if self.location == "learnt":
                loc = torch.addmm(self.loc_b1, loc, self.loc_w1.t()).relu_()
                loc = torch.sigmoid(torch.addmm(self.loc_b2, loc, self.loc_w2.t()))
            h = h.addmm_(loc, self.wl.t())
        h = h.relu_()
        for w, b in zip(self.hidden_w, self.hidden_b, strict=True):
            h = torch.addmm(b, h, w.t()).relu_()
        return torch.addmm(self.head_b, h, self.head_w.t())
