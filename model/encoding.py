"""Sinusoidal positional encoding of longitude/latitude in degrees (paper §3.2, eqs. 1–2).

For each coordinate c (in degrees, not radians) and i = 0 … d/2 − 1:
``p(2i) = sin(c · 10000^(−2i/d))`` and ``p(2i+1) = cos(c · 10000^(−2i/d))``, with d = 64 per
coordinate so that lon and lat together give 2d = 128 values. As in the authors' reference
code (cassiofragadantas/LUCAS_LULC), the longitude block comes first, then the latitude block.
"""

from __future__ import annotations

import torch


def sinusoidal_encoding(lonlat_deg: torch.Tensor, dim: int = 128) -> torch.Tensor:
    """Encode (lon, lat) pairs in degrees.

    Args:
        lonlat_deg: float tensor (N, 2), columns lon then lat, EPSG:4326 degrees.
        dim: total output width 2d (default 128); must be divisible by 4.

    Returns:
        float32 tensor (N, dim): ``[sin/cos interleaved for lon | same for lat]``.

    Raises:
        ValueError: ``lonlat_deg`` is not (N, 2) or ``dim`` is not divisible by 4.
    """
    if lonlat_deg.ndim != 2 or lonlat_deg.shape[1] != 2:
        raise ValueError(f"lonlat_deg must have shape (N, 2), got {tuple(lonlat_deg.shape)}")
    if dim % 4:
        raise ValueError(f"dim must be divisible by 4, got {dim}")
    d = dim // 2
    i = torch.arange(d // 2, dtype=torch.float32, device=lonlat_deg.device)
    freq = torch.pow(torch.tensor(10000.0, device=lonlat_deg.device), -2.0 * i / d)  # (d/2,)
    blocks = []
    for col in range(2):  # lon, then lat
        ang = lonlat_deg[:, col : col + 1].float() * freq  # (N, d/2)
        blocks.append(torch.stack([torch.sin(ang), torch.cos(ang)], dim=-1).reshape(len(ang), d))
    return torch.cat(blocks, dim=1)


MULTISCALE_MIN_WAVELENGTH_DEG = 0.1
"""Shortest wavelength of :func:`multiscale_encoding` (0.1° ≈ 11 km of latitude)."""
MULTISCALE_MAX_WAVELENGTH_DEG = 360.0
"""Longest wavelength (the whole circle), so every coordinate on Earth has a unique code."""


def multiscale_encoding(lonlat_deg: torch.Tensor, dim: int = 128) -> torch.Tensor:
    """Multi-scale sinusoidal encoding of (lon, lat) in degrees (eulc's default).

    The paper's encoding (:func:`sinusoidal_encoding`) has wavelengths from 2π ≈ 6.3° up to
    2π·10000^(1−2/d)° on degree inputs, so its finest scale is hundreds of km (issue #4). Here the
    d/2 wavelengths per coordinate are geometric between
    :data:`MULTISCALE_MIN_WAVELENGTH_DEG` (≈ 11 km) and :data:`MULTISCALE_MAX_WAVELENGTH_DEG`,
    in the spirit of multi-scale location encoders (Mai et al. 2020, Space2Vec).

    Args:
        lonlat_deg: float tensor (N, 2), lon then lat, EPSG:4326 degrees.
        dim: total width 2d, divisible by 4.

    Returns:
        float32 tensor (N, dim), ``[lon sin/cos interleaved | lat sin/cos interleaved]``.

    Raises:
        ValueError: bad shape or ``dim``.
    """
    if lonlat_deg.ndim != 2 or lonlat_deg.shape[1] != 2:
        raise ValueError(f"lonlat_deg must have shape (N, 2), got {tuple(lonlat_deg.shape)}")
    if dim % 4:
        raise ValueError(f"dim must be divisible by 4, got {dim}")
    d = dim // 2
    k = d // 2
    wavelengths = torch.logspace(
        torch.log10(torch.tensor(MULTISCALE_MIN_WAVELENGTH_DEG)),
        torch.log10(torch.tensor(MULTISCALE_MAX_WAVELENGTH_DEG)),
        k,
        device=lonlat_deg.device,
    )
    omega = 2 * torch.pi / wavelengths  # rad per degree, (d/2,)
    blocks = []
    for col in range(2):
        ang = lonlat_deg[:, col : col + 1].float() * omega
        blocks.append(torch.stack([torch.sin(ang), torch.cos(ang)], dim=-1).reshape(len(ang), d))
    return torch.cat(blocks, dim=1)
