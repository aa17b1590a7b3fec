"""Training BRIDGE-LC on a FeatureTable (paper §3.4, §4.1.1).

Loss = CE(class, invariant head) + CE(region, specific head) + SupCon over the 2B
embeddings (τ = 0.07; invariant embeddings labelled by class c, specific ones by C + region),
each with weight 1. AdamW (lr 1e-4, weight decay 0.01), cosine schedule to 0, batch 128 with
``drop_last`` as in the authors' code. The number of epochs is configurable (paper: 500).
An exponential moving average of the weights (momentum 0.95), updated once per epoch from
the halfway epoch on, gives the final weights, as in the authors' reference code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from torch import nn

from model.bridge import BridgeConfig, BridgeLC
from model.infer import predict_proba
from model.losses import supcon_loss
from model.normalize import MinMaxNormalizer
from pipeline.bioregion import REGIONS
from pipeline.errors import SchemaError


class TrainConfig(BaseModel):
    """Training settings (pydantic, unknown keys rejected). Defaults follow the paper/code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: Literal["level1", "level2"] = "level1"
    epochs: int = Field(500, ge=1, description="passes over the training rows (paper: 500)")
    batch_size: int = Field(128, ge=2, description="authors' code: 128 (paper text: 256)")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0)
    temperature: float = Field(0.07, gt=0, description="SupCon τ")
    ema_momentum: float | None = Field(
        0.95, ge=0, lt=1,
        description="EMA of the weights, updated once per epoch from the halfway epoch on "
                    "(authors' code: 0.95); the EMA weights are the final model. None = off")
    val_fraction: float = Field(0.1, ge=0, lt=0.5, description="stratified hold-out for metrics")
    seed: int = 0
    device: str = "cpu"

    def digest(self) -> str:
        """SHA-256 (first 16 hex) of the canonical JSON."""
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TrainingData:
    """Arrays extracted from a FeatureTable.

    Attributes:
        x: float32 (N, F), the spec's stored units; lonlat: float32 (N, 2), degrees (lon, lat);
        y: int64 (N,) class ids; region: int64 (N,) indexes into ``REGIONS``;
        dropped: counts of rows left out and why;
        cells: object (N,) EEA 100 km cell codes (for spatially blocked splits).
    """

    x: np.ndarray
    lonlat: np.ndarray
    y: np.ndarray
    region: np.ndarray
    dropped: dict[str, int]
    cells: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))


def training_arrays(table: pd.DataFrame, features: list[str], level: str = "level1"
                    ) -> TrainingData:
    """Select the rows usable for training and return them as arrays.

    Rows are dropped (and counted) when a selected feature is NaN, when the label is missing
    (Level-2: rows outside reference cropland), or when the bioregion is not one of the 8.

    Raises:
        SchemaError: a feature or base column is missing from the table.
    """
    missing = [c for c in [*features, "lon", "lat", level, "bioregion"] if c not in table.columns]
    if missing:
        raise SchemaError(f"the training table lacks the column(s) {missing}",
                          "Rebuild it with `eulc table` using the spec these features come from")
    dropped: dict[str, int] = {}
    ok = np.ones(len(table), dtype=bool)
    nan = table[features].isna().any(axis=1).to_numpy()
    dropped["missing_feature_values"] = int(nan.sum())
    ok &= ~nan
    nolab = table[level].isna().to_numpy()
    dropped[f"no_{level}_label"] = int((nolab & ok).sum())
    ok &= ~nolab
    reg = table["bioregion"].astype("string")
    noreg = ~reg.isin(REGIONS).to_numpy()
    dropped["no_bioregion"] = int((noreg & ok).sum())
    ok &= ~noreg
    sub = table[ok]
    region_index = {r: i for i, r in enumerate(REGIONS)}
    return TrainingData(
        x=sub[features].to_numpy(dtype=np.float32, copy=True),
        lonlat=sub[["lon", "lat"]].to_numpy(dtype=np.float32, copy=True),
        y=sub[level].to_numpy(dtype=np.int64, copy=True),
        region=sub["bioregion"].map(region_index).to_numpy(dtype=np.int64, copy=True),
        dropped=dropped,
        cells=(sub["eea_cell_100km"].astype(str).to_numpy() if "eea_cell_100km" in sub.columns
               else np.full(len(sub), "", dtype=object)),
    )


@dataclass
class TrainResult:
    """A trained network with its normaliser and hold-out metrics."""

    model: BridgeLC
    normalizer: MinMaxNormalizer
    metrics: dict[str, float | int | dict[str, int]]


def _evaluate(net: BridgeLC, x: np.ndarray, lonlat: np.ndarray, y: np.ndarray, device: str
              ) -> dict[str, float]:
    p = predict_proba(net, x, lonlat, device).argmax(1)
    return {"accuracy": float(accuracy_score(y, p)),
            "weighted_f1": float(f1_score(y, p, average="weighted", zero_division=0))}


def _update_ema(ema: dict[str, torch.Tensor] | None, net: nn.Module, momentum: float
                ) -> dict[str, torch.Tensor]:
    """``ema ← m · ema + (1 − m) · θ`` for the float parameters (BatchNorm running statistics
    follow the live model); the first call copies θ.
    """
    params = {k: v.detach().clone() for k, v in net.named_parameters()}
    if ema is None:
        return params
    return {k: momentum * ema[k] + (1.0 - momentum) * v for k, v in params.items()}


def train_bridge(data: TrainingData, n_classes: int, cfg: TrainConfig,
                 on_epoch: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train BRIDGE-LC.

    Args:
        data: arrays from :func:`training_arrays`.
        n_classes: C, from the legend (7 or 19).
        cfg: training settings.
        on_epoch: called after each epoch with (epoch index from 1, mean training loss).

    Returns:
        The trained network (eval mode, on CPU), the fitted normaliser and metrics
        (train/validation accuracy and weighted F1, row counts).

    Raises:
        SchemaError: fewer than two batches of usable rows.
    """
    if len(data.y) < 2 * cfg.batch_size:
        raise SchemaError(f"only {len(data.y)} usable training rows",
                          f"Need at least {2 * cfg.batch_size}; check labels and missing values")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    idx = np.arange(len(data.y))
    if cfg.val_fraction > 0:
        counts = np.bincount(data.y)
        strat = data.y if counts[counts > 0].min() >= 2 else None
        tr, va = train_test_split(idx, test_size=cfg.val_fraction, random_state=cfg.seed,
                                  stratify=strat)
    else:
        tr, va = idx, idx[:0]
    norm = MinMaxNormalizer.fit(data.x[tr])
    x = norm.transform(data.x)
    dev = torch.device(cfg.device)
    net = BridgeLC(BridgeConfig(n_features=x.shape[1], n_classes=n_classes,
                                n_regions=len(REGIONS))).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            foreach=True)
    steps_per_epoch = len(tr) // cfg.batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch,
                                                       eta_min=0.0)
    ce = nn.CrossEntropyLoss()
    xt = torch.from_numpy(x).to(dev)
    lt = torch.from_numpy(data.lonlat).to(dev)
    yt = torch.from_numpy(data.y).to(dev)
    rt = torch.from_numpy(data.region).to(dev)
    ema: dict[str, torch.Tensor] | None = None
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        order = torch.from_numpy(rng.permutation(tr)).to(dev)
        total = 0.0
        for s in range(steps_per_epoch):
            b = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            logits_c, logits_r, z_inv, z_spec = net(xt[b], lt[b])
            labels = torch.cat([yt[b], n_classes + rt[b]])
            loss = (ce(logits_c, yt[b]) + ce(logits_r, rt[b])
                    + supcon_loss(torch.cat([z_inv, z_spec]), labels, cfg.temperature))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        if cfg.ema_momentum is not None and epoch > cfg.epochs // 2:
            ema = _update_ema(ema, net, cfg.ema_momentum)
        if on_epoch is not None:
            on_epoch(epoch, total / max(steps_per_epoch, 1))
    if ema is not None:
        net.load_state_dict({**net.state_dict(), **ema})
    metrics: dict[str, float | int | dict[str, int]] = {
        "n_train": len(tr), "n_val": len(va), "dropped": data.dropped,
    }
    for name, part in (("train", tr), ("val", va)):
        if len(part):
            for k, v in _evaluate(net, x[part], data.lonlat[part], data.y[part], cfg.device).items():
                metrics[f"{name}_{k}"] = v
    net.eval()
    return TrainResult(net.cpu(), norm, metrics)
