"""Benchmark: one BRIDGE-LC training epoch, eulc's loop vs the reference code's DataLoader loop.

Both train the faithful network (paper §3, batch 128, AdamW lr 1e-4, SupCon + 2 CE) on the same
rows of the real ELC10 LUCAS 2018 table (35 features, 75 % of the usable rows).

- eulc (:func:`model.train.train_bridge`'s loop): data stays in tensors on the device, batches are
  index slices of a per-epoch permutation, mask dropout, fused AdamW, no per-step host sync.
- peer: the authors' style, ``torch.utils.data.DataLoader(TensorDataset, shuffle, drop_last)``,
  ``nn.Dropout``, AdamW with default settings, ``loss.item()`` every step.

Run: python benchmarks/train_epoch.py [--device cpu|cuda] [--epochs 2]
Prints seconds per epoch for both, the ratio, and the paper's schedule (139k samples × 500
epochs) extrapolated from eulc's figure.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from model.bridge import BridgeConfig, BridgeLC
from model.losses import supcon_loss
from model.normalize import fit_normalizer
from model.train import TrainConfig, train_bridge, training_arrays
from pipeline.core.config import data_dir
from pipeline.core.spec import load_spec
from pipeline.table import build_feature_table, read_feature_table, write_feature_table

ELC10 = Path("elc10_lucas2018") / "lucas2018_elc10_s2_s1_features.csv.gz"


def _peer_epoch(x: np.ndarray, ll: np.ndarray, y: np.ndarray, r: np.ndarray, dev: str) -> float:
    net = BridgeLC(BridgeConfig(n_features=x.shape[1], n_classes=7))
    for _name, mod in list(net.named_modules()):  # the reference code's nn.Dropout
        for child_name, child in list(mod.named_children()):
            if type(child).__name__ == "MaskDropout":
                setattr(mod, child_name, nn.Dropout(0.5))
    net = net.to(dev).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.01)
    ce = nn.CrossEntropyLoss()
    ds = TensorDataset(*(torch.from_numpy(a) for a in (x, ll, y, r)))
    loader = DataLoader(ds, batch_size=128, shuffle=True, drop_last=True)
    t0 = time.perf_counter()
    for xb, lb, yb, rb in loader:
        xb, lb, yb, rb = xb.to(dev), lb.to(dev), yb.to(dev), rb.to(dev)
        c, reg, zi, zs = net(xb, lb)
        assert reg is not None and zs is not None
        loss = ce(c, yb) + ce(reg, rb) + supcon_loss(torch.cat([zi, zs]), torch.cat([yb, 7 + rb]), 0.07)
        opt.zero_grad()
        loss.backward()
        opt.step()
        _ = loss.item()
    if dev == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    """Run the benchmark (see module docstring)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    spec = load_spec("elc10")
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "t.parquet"
        gdf, _ = build_feature_table([data_dir() / ELC10], spec)
        write_feature_table(gdf, table)
        d = training_arrays(read_feature_table(table)[0], spec.names)
    n = int(0.75 * len(d.y))
    idx = np.random.default_rng(0).permutation(len(d.y))[:n]
    sub = d.take(np.sort(idx))
    cfg = TrainConfig(epochs=args.epochs, val_fraction=0.0, device=args.device, ema_momentum=None)
    t0 = time.perf_counter()
    times: list[float] = []
    last = [t0]

    def tick(e: int, loss: float) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    train_bridge(sub, 7, cfg, tick)
    ours = float(np.median(times[1:] if len(times) > 1 else times))
    x = fit_normalizer(sub.x).transform(sub.x)
    peer = float(np.median([_peer_epoch(x, sub.lonlat, sub.y, sub.region, args.device) for _ in range(args.epochs)]))
    steps = n // 128
    print(
        f"device {args.device}, {n:,} rows, {steps} steps of 128 per epoch, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"eulc loop:            {ours:7.2f} s/epoch ({1e3 * ours / steps:.2f} ms/step)")
    print(f"peer (DataLoader):    {peer:7.2f} s/epoch ({1e3 * peer / steps:.2f} ms/step)")
    print(f"ratio eulc / peer:    {ours / peer:7.3f}")
    paper = ours / n * 139_000 * 500
    print(f"paper schedule (139k × 500 epochs) at this rate: {paper / 60:.1f} min")


if __name__ == "__main__":
    main()
