"""The masked percentiles and medians of a feature tile in torch: the series sorted along time on a
GPU (issue #28), the same values as the numpy engine.

The feature engine (:mod:`tiles.engine.features`) takes its order statistics from an
:data:`tiles.engine.composite.OrderStats` callable; :func:`order_stats_on` gives one that runs in
torch on a device. The rules are :mod:`tiles.engine.composite`'s, operation for operation:

- each pixel's series sorted ascending with NaN last (``torch.sort`` orders NaN above every
  number, as ``numpy.sort``), ``n`` = its count of valid values;
- percentile ``p``: position ``p/100 · (n − 1)`` in float64, the two order statistics around it
  and ``a + (b − a) · frac`` in float32 (numpy's ``nanpercentile(method="linear")`` as
  :func:`~tiles.engine.composite.percentiles_of_sorted` computes it); NaN where ``n = 0``;
- median: ``(a + b) / 2`` of the two middle values in float32 (numpy's ``nanmedian``).

On the CPU the results equal the numpy path bit for bit (tests/test_reduce_torch.py). On a GPU
the sort is exact, and float32 add/multiply are IEEE; a compiler-fused multiply-add could move the
last bit of an interpolated percentile, which is what ``benchmarks/gpu_check.py`` compares there.
Only the series goes to the device and only the (q, H, W) results come back.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from model.infer import resolve_device
from tiles.engine.composite import OrderStats


def torch_order_stats(
    values: np.ndarray, q: tuple[float, ...], median: bool, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray | None]:
    """:data:`~tiles.engine.composite.OrderStats` in torch on ``device``.

    Args:
        values: float32 (T, ...) series, NaN = masked.
        q: percentiles in [0, 100].
        median: whether the median is wanted too.
        device: a torch device (``cpu``, ``cuda``, ``cuda:N``).

    Returns:
        ``(float32 (len(q), ...) percentiles, float32 (...) median or None)``; NaN where a pixel
        has no valid value.
    """
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(device)
        v = torch.sort(x, dim=0).values  # NaN last
        del x
        n = torch.isfinite(v).sum(dim=0)
        last = torch.clamp(n - 1, min=0)
        nan = torch.tensor(float("nan"), dtype=torch.float32, device=v.device)
        out = torch.empty((len(q), *v.shape[1:]), dtype=torch.float32, device=v.device)
        for i, p in enumerate(q):
            pos = last.to(torch.float64) * (p / 100.0)
            lo = torch.floor(pos).to(torch.int64)
            hi = torch.minimum(lo + 1, last)
            frac = (pos - lo.to(torch.float64)).to(torch.float32)
            a = torch.gather(v, 0, lo.unsqueeze(0))[0]
            b = torch.gather(v, 0, hi.unsqueeze(0))[0]
            r = a + (b - a) * frac
            out[i] = torch.where(n > 0, torch.where(frac > 0, r, a), nan)
        med = None
        if median:
            a = torch.gather(v, 0, (last // 2).unsqueeze(0))[0]
            b = torch.gather(v, 0, torch.minimum(n // 2, last).unsqueeze(0))[0]
            med = torch.where(n > 0, (a + b) / 2, nan).cpu().numpy()
        return out.cpu().numpy(), med


def order_stats_on(device: str) -> OrderStats | None:
    """The order statistics for ``device``: None for the CPU (the engine's numpy path), else a
    picklable torch one (a dask worker receives it with the job).

    Raises:
        EulcError: not a device, or CUDA asked for while torch sees no GPU (names ``device``).
    """
    dev = resolve_device(device)
    if dev.type == "cpu":
        return None
    return functools.partial(torch_order_stats, device=str(dev))
