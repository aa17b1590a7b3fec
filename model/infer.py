"""Batched BRIDGE-LC inference (paper §3.5: coordinates + invariant branch only)."""

from __future__ import annotations

import re

import numpy as np
import torch

from model.bridge import BridgeLC
from pipeline.core.errors import EulcError

BATCH = 16_384
"""Sub-batch size in pixels/samples (≤ 16k on CPU: measured ~2× faster than 65k; issue #5)."""


def predict_proba(net: BridgeLC, x_normalized: np.ndarray, lonlat_deg: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Class probabilities of N samples.

    Args:
        net: the network (put in eval mode here).
        x_normalized: float32 (N, F), already through the bundle's normaliser.
        lonlat_deg: float32 (N, 2), lon then lat, EPSG:4326 degrees.
        device: torch device of ``net``.

    Returns:
        float32 (N, C) softmax probabilities.
    """
    return softmax(predict_logits_np(net, x_normalized, lonlat_deg, device))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of float (N, C) logits → float32 (N, C) probabilities (N may be 0)."""
    if len(logits) == 0:
        return np.asarray(logits, dtype=np.float32)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return np.asarray(e / e.sum(1, keepdims=True), dtype=np.float32)


def predict_logits_np(
    net: BridgeLC, x_normalized: np.ndarray, lonlat_deg: np.ndarray, device: str = "cpu"
) -> np.ndarray:
    """Class logits (N, C) float32, divided by the net's calibration temperature; the inputs
    are as for :func:`predict_proba`.
    """
    net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x_normalized), BATCH):
            xb = torch.from_numpy(np.ascontiguousarray(x_normalized[i : i + BATCH])).to(device)
            lb = torch.from_numpy(np.ascontiguousarray(lonlat_deg[i : i + BATCH], dtype=np.float32)).to(device)
            out.append(net.predict_logits(xb, lb).float().cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, net.cfg.n_classes), np.float32)


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` as given.

    Raises:
        EulcError: not ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, or CUDA asked for while torch
            sees no GPU.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", str(device)):
        raise EulcError(f"`device` {device!r} is not a device", "Use auto, cpu, cuda or cuda:N")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise EulcError(
            "`device` cuda was given but torch sees no CUDA GPU",
            "Use `device` cpu or auto, or install a CUDA build of torch",
        )
    return torch.device(device)


PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX-BF16 tiles), where
    bf16 autocast is ~2× faster than float32 (``benchmarks/RESULTS.md``); elsewhere oneDNN
    emulates it, slower than float32.
    """
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check()) if check is not None else False


def resolve_precision(precision: str, device: torch.device) -> bool:
    """Whether inference uses bf16 autocast: ``auto`` → on CUDA only (float32 on CPU, bit-for-bit
    the same maps on every CPU); ``bf16`` or ``fp32`` as given.

    bf16 changes a few pixels' class against float32 (0.10 % of 10⁶ real ELC10 pixels with the
    shipped ``elc10-l1``; confidence within 4 points), so it is recorded in the map's tags and
    resume key.

    Raises:
        EulcError: an unknown precision.
    """
    if precision not in PRECISIONS:
        raise EulcError(f"`precision` {precision!r} is not a choice", f"Use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return device.type == "cuda"
    return precision == "bf16"
