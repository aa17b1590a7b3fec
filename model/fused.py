"""Inference-only BRIDGE-LC with the normaliser, BatchNorm and temperature folded into the
Linear layers (paper §3.5: coordinates + invariant branch only; issue #5).

For a Linear ``W, b`` followed by an eval-mode BatchNorm (γ, β, running mean μ, variance σ²):
``W' = s·W``, ``b' = s·(b − μ) + β`` with ``s = γ / sqrt(σ² + ε)``. The affine normaliser
``(clip(x, lo, hi) − center) / scale`` is folded into the feature columns of the first Linear
(its clip, when the normaliser has one, is a ``clamp`` of the raw input), and the
calibration temperature T into the class head (``W / T``, ``b / T``). The result computes the
same logits as :meth:`model.bridge.BridgeLC.predict_logits` on normalised inputs (to float32
rounding), with three matrix products and no BatchNorm or concatenation.

A piecewise-linear encoding (:mod:`model.ple`) takes the normaliser into its slot tables
(``w·(x − c)/s + b``) and its columns of the first Linear act on it directly. A TabM-mini
ensemble of k members stacks the first Linear of each member (``W · diag(r_i)``, k·H rows), runs
the k hidden states through the shared layers as (N·k, H) rows and averages them before the
shared class head (the mean of the members' logits, as the trained network's inference).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from model.bridge import BridgeLC
from model.encoding import MULTISCALE_MAX_WAVELENGTH_DEG, MULTISCALE_MIN_WAVELENGTH_DEG
from model.normalize import AffineNormalizer
from model.ple import ple_encode


def _frequencies(encoding: str, pe_dim: int) -> torch.Tensor:
    """Angular frequencies (pe_dim / 4,) of :func:`model.encoding.sinusoidal_encoding` (rad per
    degree, ``10000^(−2i/d)``) or :func:`model.encoding.multiscale_encoding` (``2π / λ``).
    """
    d = pe_dim // 2
    k = d // 2
    if encoding == "multiscale":
        lam = torch.logspace(
            torch.log10(torch.tensor(MULTISCALE_MIN_WAVELENGTH_DEG)),
            torch.log10(torch.tensor(MULTISCALE_MAX_WAVELENGTH_DEG)),
            k,
        )
        return 2 * torch.pi / lam
    i = torch.arange(k, dtype=torch.float32)
    return torch.pow(torch.tensor(10000.0), -2.0 * i / d)


def _split_pe_columns(w: torch.Tensor, pe_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns of a weight (out, pe_dim) acting on the interleaved encoding
    ``[lon: sin0 cos0 sin1 cos1 … | lat: …]`` → (W_sin, W_cos), each (out, pe_dim / 2), acting on
    ``sin(A)`` and ``cos(A)`` with ``A = [lon·ω | lat·ω]``. Same products, no interleave copy.
    """
    d = pe_dim // 2
    k = d // 2
    sin_cols = [c * d + 2 * j for c in range(2) for j in range(k)]
    return w[:, sin_cols].contiguous(), w[:, [i + 1 for i in sin_cols]].contiguous()


def _fold_bn(lin: nn.Linear, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    assert bn.running_mean is not None and bn.running_var is not None
    s = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    w = lin.weight.detach() * s[:, None]
    b = (lin.bias.detach() - bn.running_mean) * s + bn.bias.detach()
    return w, b


def _linear_bn_pairs(seq: nn.Sequential) -> list[tuple[nn.Linear, nn.BatchNorm1d]]:
    mods = list(seq)
    return [
        (m, mods[i + 1])  # type: ignore[misc]
        for i, m in enumerate(mods)
        if isinstance(m, nn.Linear) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm1d)
    ]


def _acc(h: torch.Tensor, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``h + a @ w.T``: in place in float32; out of place under autocast, where ``h`` is
    already bf16 and an in-place product would mix dtypes.
    """
    if torch.is_autocast_enabled(h.device.type):
        return torch.addmm(h, a, w.t())
    return h.addmm_(a, w.t())


class FusedClassifier(nn.Module):
    """Raw features (N, F) float32 in the spec's stored units + lon/lat (N, 2) float32
    (EPSG:4326 degrees, lon first) → class logits (N, C) float32 already divided by the
    calibration temperature.

    Built from a trained :class:`~model.bridge.BridgeLC` and its
    :class:`~model.normalize.AffineNormalizer`; holds plain tensors (no BatchNorm, no dropout).
    """

    def __init__(self, net: BridgeLC, normalizer: AffineNormalizer) -> None:
        super().__init__()
        cfg = net.cfg
        self.location = cfg.location
        self.encoding = cfg.encoding
        self.pe_dim = cfg.pe_dim
        net = net.eval()
        with torch.no_grad():
            self.omega: torch.Tensor
            self.register_buffer("omega", _frequencies(cfg.encoding, cfg.pe_dim))
            if isinstance(net.location, nn.Sequential):
                ((l1, bn1),) = _linear_bn_pairs(net.location)
                w, b = _fold_bn(l1, bn1)
                last = [m for m in net.location if isinstance(m, nn.Linear)][-1]
                ws_, wc_ = _split_pe_columns(w, cfg.pe_dim)
                self.loc_ws, self.loc_wc = nn.Parameter(ws_), nn.Parameter(wc_)
                self.loc_b1 = nn.Parameter(b.clone())
                self.loc_w2 = nn.Parameter(last.weight.detach().clone())
                self.loc_b2 = nn.Parameter(last.bias.detach().clone())
            pairs = _linear_bn_pairs(net.invariant)
            ws, bs = zip(*(_fold_bn(lin, bn) for lin, bn in pairs), strict=True)
            w0, b0 = ws[0], bs[0]
            f, nb, k = cfg.n_features, cfg.ple_bins, cfg.ensemble
            self.members = k
            if net.adapter is not None:  # TabM-mini: member i's first layer is W · diag(r_i), stacked
                r = net.adapter.detach()
                w0 = (w0[None, :, :] * r[:, None, :]).reshape(k * w0.shape[0], -1)
                b0 = b0.repeat(k)
            scale = normalizer.scale.astype(np.float32)
            inv_scale = torch.from_numpy(1.0 / scale)
            center = torch.from_numpy(normalizer.center.astype(np.float32))
            shift = center * inv_scale
            wx = w0[:, :f] * inv_scale[None, :]
            b0 = b0 - w0[:, :f] @ shift
            self.ple_w: torch.Tensor | None
            self.ple_b: torch.Tensor | None
            self.wp: nn.Parameter | None = None
            if net.ple_weight is not None and net.ple_bias is not None:  # slot = w · (x − c) / s + b
                pw, pb = net.ple_weight.detach(), net.ple_bias.detach()
                self.register_buffer("ple_w", (pw * inv_scale[:, None]).contiguous())
                self.register_buffer("ple_b", (pb - pw * shift[:, None]).contiguous())
                self.wp = nn.Parameter(w0[:, f : f * (1 + nb)].contiguous())
            else:
                self.ple_w = self.ple_b = None
            w_loc = w0[:, f * (1 + nb) :]
            self.clip_lo: torch.Tensor | None
            self.clip_hi: torch.Tensor | None
            if normalizer.clips:
                self.register_buffer("clip_lo", torch.from_numpy(normalizer.lo.astype(np.float32)))
                self.register_buffer("clip_hi", torch.from_numpy(normalizer.hi.astype(np.float32)))
            else:
                self.clip_lo = self.clip_hi = None
            self.wx = nn.Parameter(wx.contiguous())
            self.wl = nn.Parameter(w_loc.contiguous()) if cfg.location == "learnt" else None
            self.pe_ws: nn.Parameter | None = None
            self.pe_wc: nn.Parameter | None = None
            if cfg.location == "fixed":  # the encoding goes straight into the first layer
                ws_, wc_ = _split_pe_columns(w_loc, cfg.pe_dim)
                self.pe_ws, self.pe_wc = nn.Parameter(ws_), nn.Parameter(wc_)
            self.b0 = nn.Parameter(b0)
            self.hidden_w = nn.ParameterList([nn.Parameter(w.contiguous()) for w in ws[1:]])
            self.hidden_b = nn.ParameterList([nn.Parameter(b) for b in bs[1:]])
            t = float(cfg.temperature)
            self.head_w = nn.Parameter(net.class_head.weight.detach() / t)
            self.head_b = nn.Parameter(net.class_head.bias.detach() / t)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor, lonlat_deg: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) for raw features ``x`` (N, F) and ``lonlat_deg`` (N, 2), both float32.

        The angles and their sin/cos are computed in float32 even under bf16 autocast (lon ·
        ω needs the mantissa); the matrix products follow the autocast dtype.
        """
        return self.head(self.embed(x, lonlat_deg))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Class logits (N, C), divided by the calibration temperature, of embeddings ``h`` (N, H)."""
        return torch.addmm(self.head_b, h, self.head_w.t())

    def embed(self, x: torch.Tensor, lonlat_deg: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The invariant encoder's last hidden layer (N, H) (after ReLU; the class head's input,
        the "penultimate" embedding of :mod:`model.ood`) for the inputs of :meth:`forward`.
        Equals ``BridgeLC.invariant(BridgeLC._input(normalised x, lonlat))`` in eval mode.
        ``out``: a float32 (N, H) tensor to write it into (float32 only, not under autocast);
        the result is then ``out`` itself, whatever the depth.
        """
        if self.clip_lo is not None and self.clip_hi is not None:
            x = torch.clamp(x, self.clip_lo.to(x.dtype), self.clip_hi.to(x.dtype))
        h = torch.addmm(self.b0, x, self.wx.t())
        if self.wp is not None and self.ple_w is not None and self.ple_b is not None:
            h = _acc(h, ple_encode(x, self.ple_w.to(x.dtype), self.ple_b.to(x.dtype)), self.wp)
        if self.location != "none":
            ang = (lonlat_deg.float()[:, :, None] * self.omega.float()).reshape(len(x), -1)
            s, c = torch.sin(ang), torch.cos(ang)
            if self.wl is not None:  # learnt: encoding → Linear+BN → ReLU → Linear → sigmoid
                loc = _acc(torch.addmm(self.loc_b1, s, self.loc_ws.t()), c, self.loc_wc).relu_()
                loc = torch.sigmoid(torch.addmm(self.loc_b2, loc, self.loc_w2.t()))
                h = _acc(h, loc, self.wl)
            elif self.pe_ws is not None and self.pe_wc is not None:
                h = _acc(_acc(h, s, self.pe_ws), c, self.pe_wc)
        h = h.relu_()
        n = len(x)
        if self.members > 1:  # (N, k·H) → (N·k, H): the members through the shared layers
            h = h.reshape(n * self.members, -1)
            for w, b in zip(self.hidden_w, self.hidden_b, strict=True):
                h = torch.addmm(b, h, w.t()).relu_()
            h = h.reshape(n, self.members, -1).mean(1)
            return h if out is None else out.copy_(h)
        last = len(self.hidden_w) - 1
        for i, (w, b) in enumerate(zip(self.hidden_w, self.hidden_b, strict=True)):
            h = (
                torch.addmm(b, h, w.t(), out=out) if i == last and out is not None else torch.addmm(b, h, w.t())
            ).relu_()
        if out is not None and last < 0:  # a one-layer encoder: no hidden product to write into out
            h = out.copy_(h)
        return h
