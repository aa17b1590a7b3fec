"""Training BRIDGE-LC on a FeatureTable, faithful by default (FEATURES.md §5).

Each default and where it comes from:

- Min–max normalisation fitted on the training rows (authors' code, ``MinMaxScaler``).
- Positional encoding of raw degrees, 2d = 128, frequencies 1/10000^(2i/d), lon block first
  (§3.2, eqs. 1–2; the lon/lat order is the authors' code); location MLP 128 → 256 → 128 with a
  sigmoid, concatenated to the features (§3.2 "learnt PE").
- Two 3 × 256 encoders with BatchNorm, ReLU, Dropout 0.5; SupCon input = last hidden layer after
  dropout (§3.3; authors' code).
- Loss = CE(class, invariant head) + CE(region, specific head) + SupCon (τ = 0.07) over the 2B
  embeddings, invariant ones labelled by class c and specific ones by C + region, weights 1
  (§3.4, eq. 5; τ and the labelling from the authors' code).
- AdamW (lr 1e-4, weight decay 0.01), cosine schedule to 0, batch 128 with ``drop_last``,
  500 epochs (§4.1.1; batch 128 and the scheduler are the authors' code, the text says 256).
- An exponential moving average of the weights (momentum 0.95), updated once per epoch from the
  halfway epoch on, gives the final weights (authors' code; not in the paper's text).

The other fields of :class:`TrainConfig` (multi-scale encoding, class balance, augmentation,
robust input scaling, per-step EMA, distillation, logit adjustment, dropout, blocked hold-out and
untouched test cells, best-epoch selection, temperature scaling) are eulc's additions, off by
default; :mod:`model.presets` combines them into eulc's default model (issue #15).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from model.augment import PhysicalAugmentation
from model.bridge import BridgeConfig, BridgeLC
from model.calibration import expected_calibration_error, fit_temperature
from model.distill import teacher_probabilities
from model.infer import predict_logits_np, predict_proba, softmax
from model.losses import supcon_loss
from model.normalize import AffineNormalizer, fit_normalizer
from model.ple import quantile_bins
from pipeline.core.bioregion import REGIONS
from pipeline.core.errors import EulcError, SchemaError

log = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    """Training settings (pydantic, unknown keys rejected).

    The defaults are faithful BRIDGE-LC (paper §3.4, §4.1.1 and the authors' reference code);
    :mod:`model.presets` names them ``bridge-lc`` and defines eulc's default (``eulc``), the plain
    MLP and the Table 12 ablation variants as overrides of these fields.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: Literal["level1", "level2"] = "level1"
    epochs: int = Field(500, ge=1, description="passes over the training rows (paper: 500)")
    batch_size: int = Field(128, ge=2, description="authors' code: 128 (paper text: 256)")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0)
    temperature: float = Field(0.07, gt=0, description="SupCon τ")
    ema_momentum: float | None = Field(
        0.95,
        ge=0,
        lt=1,
        description="EMA of the weights, updated once per epoch from the halfway epoch on "
        "(authors' code: 0.95); the EMA weights are the final model. None = off",
    )
    ema_mode: Literal["epoch", "step"] = Field(
        "epoch",
        description="epoch: the authors' per-epoch EMA of the parameters (ema_momentum); "
        "step: an EMA of the whole state, BatchNorm statistics included, "
        "updated every optimizer step with a horizon of ema_horizon of the schedule",
    )
    ema_horizon: float = Field(0.1, gt=0, le=1, description="step EMA: horizon as a share of all steps")
    scaling: Literal["minmax", "robust"] = Field(
        "minmax",
        description="input normaliser: min–max (paper) or median/IQR with clipping to the "
        "training 0.5–99.5 percentiles (model.normalize)",
    )
    augment: Literal["none", "physical"] = Field(
        "none", description="physical augmentation (model.augment): S2 gain, S1 dB offset, month shift"
    )
    distill: float = Field(
        0.0,
        ge=0,
        le=1,
        description="weight α of knowledge distillation from an XGBoost teacher fitted "
        "on the same training rows (model.distill); 0 = off",
    )
    logit_adjust: float = Field(
        0.0,
        ge=0,
        description="τ of the logit-adjusted loss (Menon et al. 2021): CE on z + τ·log π "
        "(training class priors π); balances classes for label shift. 0 = off",
    )
    location: Literal["learnt", "fixed", "none"] = Field(
        "learnt", description="lat/lon input: learnt PE (paper), fixed PE or none (Table 12)"
    )
    encoding: Literal["paper", "multiscale"] = Field(
        "paper", description="positional encoding: the paper's (§3.2) or multi-scale (11 km … 360°)"
    )
    region_branch: bool = Field(True, description="region-specific branch + region CE + SupCon")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout after every hidden layer (paper: 0.5)")
    class_balanced: bool = Field(False, description="CE weighted by 1/sqrt(class frequency)")
    augment_sigma: float = Field(
        0.0,
        ge=0,
        description="per-sample reflectance-shift gain N(1, σ) on the normalised "
        "features (after CropNet's reflectance augmentation); 0 = off",
    )
    val_fraction: float = Field(0.1, ge=0, lt=0.5, description="hold-out for metrics/selection")
    val_split: Literal["random", "blocked"] = Field(
        "random", description="stratified random hold-out, or whole EEA 100 km cells"
    )
    test_fraction: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="untouched blocked rows (whole EEA 100 km cells) for the model "
        "card: used neither for training nor for epoch selection or "
        "calibration; 0 = none",
    )
    hidden: int = Field(256, ge=8, le=4096, description="width of each encoder layer (paper: 256)")
    ple_bins: int = Field(
        0,
        ge=0,
        le=64,
        description="piecewise-linear encoding of every feature with this many quantile bins "
        "(model.ple; Gorishniy et al. 2022); 0 = off",
    )
    ensemble: int = Field(
        1, ge=1, le=8, description="k TabM-mini members sharing the weights (model.bridge; TabM 2025); 1 = off"
    )
    select_best: bool = Field(False, description="keep the epoch with the best hold-out weighted F1")
    calibrate: bool = Field(False, description="fit a softmax temperature on the hold-out (Guo 2017)")
    seed: int = 0
    device: str = "cpu"

    @model_validator(mode="after")
    def _ensemble_without_region_branch(self) -> TrainConfig:
        if self.ensemble > 1 and self.region_branch:
            raise ValueError("a TabM-mini ensemble (ensemble > 1) is built without the region branch (region_branch)")
        return self

    def digest(self) -> str:
        """SHA-256 (first 16 hex) of the canonical JSON."""
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def needs_holdout(self) -> bool:
        """Whether training itself uses the hold-out (model selection or calibration)."""
        return self.select_best or self.calibrate


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

    def take(self, idx: np.ndarray) -> TrainingData:
        """The rows ``idx`` (int indices) of every array; ``dropped`` is shared."""
        return TrainingData(self.x[idx], self.lonlat[idx], self.y[idx], self.region[idx], self.dropped, self.cells[idx])


def training_arrays(table: pd.DataFrame, features: list[str], level: str = "level1") -> TrainingData:
    """Select the rows usable for training and return them as arrays.

    Rows are dropped (and counted) when a selected feature is NaN, when the label is missing
    (Level-2: rows outside reference cropland), or when the bioregion is not one of the 8.

    Raises:
        SchemaError: a feature or base column is missing from the table.
    """
    missing = [c for c in [*features, "lon", "lat", level, "bioregion"] if c not in table.columns]
    if missing:
        raise SchemaError(
            f"the training table lacks the column(s) {missing}",
            "Rebuild it with `eulc table` using the spec these features come from",
        )
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
        cells=(
            sub["eea_cell_100km"].astype(str).to_numpy()
            if "eea_cell_100km" in sub.columns
            else np.full(len(sub), "", dtype=object)
        ),
    )


@dataclass
class TrainResult:
    """A trained network with its normaliser, hold-out metrics and the indices (int64) of the
    rows it was fitted on (into the :class:`TrainingData` given).
    """

    model: BridgeLC
    normalizer: AffineNormalizer
    metrics: dict[str, Any]
    train_rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))


def split_metrics(
    data: TrainingData, cfg: TrainConfig, tr: np.ndarray, va: np.ndarray, te: np.ndarray, n_classes: int
) -> dict[str, Any]:
    """The metrics every bundle records about its rows (network or trees): the three row counts,
    the rows left out and why, how the hold-out and the test rows were drawn, and ``class_prior``
    (C,) the training rows' class shares, for EM prior adaptation at map time.
    """
    prior = np.bincount(data.y[tr], minlength=n_classes).astype(np.float64)
    return {
        "n_train": len(tr),
        "n_val": len(va),
        "n_test": len(te),
        "dropped": data.dropped,
        "holdout": cfg.val_split if len(va) else "none",
        "test_split": (
            "none" if not len(te) else "blocked" if split_is_blocked(np.arange(len(data.y)), data) else "random"
        ),
        "class_prior": (prior / prior.sum()).tolist(),
    }


def split_scores(prob: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy, weighted F1 (0–1) and ECE (fraction) of float (N, C) probabilities against int
    (N,) classes: the train/hold-out/test metrics a bundle stores.
    """
    from sklearn.metrics import accuracy_score, f1_score

    p = prob.argmax(1)
    return {
        "accuracy": float(accuracy_score(y, p)),
        "weighted_f1": float(f1_score(y, p, average="weighted", zero_division=0)),
        "ece": expected_calibration_error(prob, y),
    }


def _update_ema(ema: dict[str, torch.Tensor] | None, net: nn.Module, momentum: float) -> dict[str, torch.Tensor]:
    """``ema ← m · ema + (1 − m) · θ`` for the float parameters (BatchNorm running statistics
    follow the live model); the first call copies θ.
    """
    params = {k: v.detach().clone() for k, v in net.named_parameters()}
    if ema is None:
        return params
    return {k: momentum * ema[k] + (1.0 - momentum) * v for k, v in params.items()}


def split_off(
    idx: np.ndarray, data: TrainingData, fraction: float, seed: int, blocked: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Split the rows ``idx`` (int64 indices into ``data``) into (kept, held), both sorted.

    ``held`` is about ``fraction`` of the rows: whole EEA 100 km cells when ``blocked`` and the
    rows carry cell codes (more than 10 cells), else a stratified random draw (unstratified when
    a class has a single row). ``fraction <= 0`` holds nothing out.
    """
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    if fraction <= 0 or len(idx) == 0:
        return idx, idx[:0]
    if blocked and split_is_blocked(idx, data):
        cells = data.cells[idx]
        gss = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        a, b = next(gss.split(idx, data.y[idx], groups=cells))
        return np.sort(idx[a]), np.sort(idx[b])
    y = data.y[idx]
    counts = np.bincount(y)
    strat = y if counts[counts > 0].min() >= 2 else None
    a, b = train_test_split(np.arange(len(idx)), test_size=fraction, random_state=seed, stratify=strat)
    return np.sort(idx[a]), np.sort(idx[b])


def split_is_blocked(idx: np.ndarray, data: TrainingData) -> bool:
    """Whether :func:`split_off` can hold out whole EEA 100 km cells among rows ``idx``: the rows
    carry cell codes and span more than 10 cells (else it falls back to a random draw).
    """
    cells = data.cells[idx] if len(data.cells) == len(data.y) else np.empty(0, dtype=object)
    return len(cells) == len(idx) and len(set(cells.tolist())) > 10


TEST_SEED_OFFSET = 7919
"""Added to the seed of the untouched test cells, so they differ from the hold-out's draw."""


def split_rows(data: TrainingData, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training, hold-out and untouched test row indices (int64, sorted, disjoint).

    The test rows (``test_fraction``, whole EEA 100 km cells) are drawn first and used for
    nothing but the reported metrics; the hold-out (``val_fraction``, stratified random or whole
    cells) is then carved from the rest and used for epoch selection and calibration.
    """
    rest, te = split_off(np.arange(len(data.y)), data, cfg.test_fraction, cfg.seed + TEST_SEED_OFFSET, True)
    frac = cfg.val_fraction / (1 - cfg.test_fraction)  # val_fraction stays a share of all rows
    tr, va = split_off(rest, data, frac, cfg.seed, cfg.val_split == "blocked")
    return tr, va, te


def split_message(data: TrainingData, tr: np.ndarray, va: np.ndarray, te: np.ndarray, cfg: TrainConfig) -> str:
    """One line: how many rows :func:`split_rows` gave each part and how each was drawn."""
    cells = "whole EEA 100 km cells"
    test = cells if split_is_blocked(np.arange(len(data.y)), data) else "random rows"
    blocked = cfg.val_split == "blocked" and split_is_blocked(np.concatenate([tr, va]), data)
    held = cells if blocked else "stratified rows"
    return (
        f"rows: {len(tr):,} training, {len(va):,} hold-out ({held}), "
        f"{len(te):,} untouched test ({test}, used only for the reported metrics)"
    )


def holdout_split(data: TrainingData, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Training and hold-out row indices (:func:`split_rows` without the test rows)."""
    tr, va, _ = split_rows(data, cfg)
    return tr, va


def build_network(n_features: int, n_classes: int, cfg: TrainConfig) -> BridgeLC:
    """The network a training config asks for (architecture sizes are the paper's unless the
    config sets ``hidden``); a piecewise-linear encoding still needs :meth:`BridgeLC.set_ple_bins`.
    """
    return BridgeLC(
        BridgeConfig(
            n_features=n_features,
            n_classes=n_classes,
            n_regions=len(REGIONS),
            location=cfg.location,
            encoding=cfg.encoding,
            region_branch=cfg.region_branch,
            dropout=cfg.dropout,
            hidden=cfg.hidden,
            ple_bins=cfg.ple_bins,
            ensemble=cfg.ensemble,
        )
    )


def _class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1)), 0.0)
    w *= (counts > 0).sum() / w.sum()
    return torch.tensor(w, dtype=torch.float32)


OnEvent = Callable[[str, dict[str, Any]], None]
"""``on_event(kind, info)`` (:mod:`pipeline.stages.events`): ``status`` (the schedule's cost),
``progress`` (``stage`` ``teacher``: folds; ``stage`` ``train``: epochs, fractional within one)."""

PROGRESS_EVERY_S = 1.0
"""Least seconds between two ``progress`` events inside an epoch."""


def _probe_seconds(
    net: BridgeLC, x: torch.Tensor, lonlat: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, steps: int = 8
) -> float:
    """Seconds one optimisation step takes on this machine: ``steps`` steps of a copy of ``net``
    (its own optimiser, the random state restored afterwards, so training is unchanged); the median
    after two warm-up steps.
    """
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        probe = copy.deepcopy(net).train()
        opt = torch.optim.AdamW(probe.parameters(), lr=cfg.lr)
        ce = nn.CrossEntropyLoss()
        times = []
        for i in range(steps + 2):
            b = torch.arange(i * cfg.batch_size, (i + 1) * cfg.batch_size, device=x.device) % len(y)
            t0 = time.perf_counter()
            logits_c, logits_r, z_inv, z_spec = probe(x[b], lonlat[b])
            loss = ce(logits_c, probe.per_member(y[b]))
            if logits_r is not None and z_spec is not None:
                loss = loss + supcon_loss(torch.cat([z_inv, z_spec]), torch.cat([y[b], y[b]]), cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return float(np.median(times[2:]))


def schedule_message(cfg: TrainConfig, steps_per_epoch: int, step_s: float, device: str) -> str:
    """One line: what ``cfg.epochs`` epochs of ``steps_per_epoch`` steps cost at ``step_s`` seconds
    per step on this machine, and a shorter schedule (parameter names in backticks).
    """

    def dur(seconds: float) -> str:
        s = int(round(seconds))
        return f"{s // 3600} h {s // 60 % 60:02d} min" if s >= 3600 else f"{s // 60} min {s % 60:02d} s"

    total = cfg.epochs * steps_per_epoch * step_s
    short = max(1, cfg.epochs // 10)
    teacher = " plus the XGBoost teacher (its own progress)" if cfg.distill > 0 else ""
    hint = (
        f"; `epochs` {short} takes about {dur(short * steps_per_epoch * step_s)}"
        if cfg.epochs > 1 and total > 120
        else ""
    )
    return (
        f"training schedule: {cfg.epochs} epochs x {steps_per_epoch} steps of {cfg.batch_size} rows, about "
        f"{dur(total)} on this machine ({device}, {torch.get_num_threads()} threads){teacher}{hint}"
    )


def train_bridge(
    data: TrainingData,
    n_classes: int,
    cfg: TrainConfig,
    on_epoch: Callable[[int, float], None] | None = None,
    augmentation: PhysicalAugmentation | None = None,
    on_event: OnEvent | None = None,
) -> TrainResult:
    """Train BRIDGE-LC (or an ablation/eulc variant, see :class:`TrainConfig`).

    Args:
        data: arrays from :func:`training_arrays`.
        n_classes: C, from the legend (7 or 19).
        cfg: training settings.
        on_epoch: called after each epoch with (epoch index from 1, mean training loss).
        augmentation: the columns :class:`~model.augment.PhysicalAugmentation` touches
            (from the table's spec); needed when ``cfg.augment == "physical"``.
        on_event: told before anything long what the schedule costs here (``status``, measured
            on a copy of the network), then the teacher's folds and the epochs as ``progress``
            (fractional within an epoch, at most every :data:`PROGRESS_EVERY_S`).

    Returns:
        The trained network (eval mode, on CPU, calibration temperature set when
        ``cfg.calibrate``), the fitted normaliser and metrics: train/hold-out/test accuracy,
        weighted F1 and ECE, row counts, the selected epoch, the temperature. ``test_*`` come
        from rows used for nothing else (``cfg.test_fraction``).

    Raises:
        SchemaError: fewer than two batches of usable rows, selection/calibration asked for
            without a hold-out, or physical augmentation without its column map.
        EulcError: the loss became non-finite (training diverged).
    """
    if len(data.y) < 2 * cfg.batch_size:
        raise SchemaError(
            f"only {len(data.y)} usable training rows",
            f"Need at least {2 * cfg.batch_size}; check labels and missing values",
        )
    if cfg.needs_holdout and cfg.val_fraction <= 0:
        raise SchemaError("select_best/calibrate need a hold-out", "Set val_fraction > 0")
    if cfg.augment == "physical" and augmentation is None:
        raise SchemaError(
            "physical augmentation needs the feature spec's column map",
            "Train through `eulc train` / model.api, which pass it",
        )
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tr, va, te = split_rows(data, cfg)
    if on_event is not None:  # also breaks the setup's silence (imports, the step probe) on a slow machine
        on_event("status", {"message": split_message(data, tr, va, te, cfg)})
    norm = fit_normalizer(data.x[tr], cfg.scaling)
    x = norm.transform(data.x)
    dev = torch.device(cfg.device)
    net = build_network(x.shape[1], n_classes, cfg)
    if cfg.ple_bins:  # quantiles of the normalised training rows only
        net.set_ple_bins(quantile_bins(x[tr], cfg.ple_bins))
    net = net.to(dev)
    fused = dev.type in ("cpu", "cuda")  # fused AdamW: 2.5× faster step on CPU (issue #4 benchmark)
    opt = torch.optim.AdamW(
        net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None, foreach=None if fused else True
    )
    steps_per_epoch = len(tr) // cfg.batch_size
    total_steps = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps, eta_min=0.0)
    weight = _class_weights(data.y[tr], n_classes).to(dev) if cfg.class_balanced else None
    ce_class, ce_region = nn.CrossEntropyLoss(weight=weight), nn.CrossEntropyLoss()
    prior = np.bincount(data.y[tr], minlength=n_classes).astype(np.float64)
    log_prior = torch.tensor(np.log(np.maximum(prior / prior.sum(), 1e-8)), dtype=torch.float32, device=dev)
    xt = torch.from_numpy(x).to(dev)
    if on_event is not None and steps_per_epoch:
        step_s = _probe_seconds(net, xt, torch.from_numpy(data.lonlat).to(dev), torch.from_numpy(data.y).to(dev), cfg)
        on_event("status", {"message": schedule_message(cfg, steps_per_epoch, step_s, cfg.device)})
    teacher = None
    if cfg.distill > 0:

        def on_fold(done: int, total: int) -> None:
            if on_event is not None:
                on_event(
                    "progress", {"stage": "teacher", "done": done, "total": total, "info": "cross-fitted XGBoost folds"}
                )

        tp = np.zeros((len(data.y), n_classes), np.float32)
        tp[tr] = teacher_probabilities(data.x[tr], data.y[tr], n_classes, cfg.seed, on_fold=on_fold)
        teacher = torch.from_numpy(tp).to(dev)
    aug = augmentation if cfg.augment == "physical" and augmentation is not None and not augmentation.empty else None
    xraw = torch.from_numpy(data.x).to(dev) if aug is not None else None
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    lt = torch.from_numpy(data.lonlat).to(dev)
    yt = torch.from_numpy(data.y).to(dev)
    rt = torch.from_numpy(data.region).to(dev)
    ema: dict[str, torch.Tensor] | None = None
    step_momentum = 1.0 - 1.0 / max(1.0, cfg.ema_horizon * total_steps)
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    if on_event is not None:
        on_event("progress", {"stage": "train", "done": 0, "total": cfg.epochs, "info": ""})
    last_event = time.monotonic()
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        order = torch.from_numpy(rng.permutation(tr)).to(dev)
        total = torch.zeros((), device=dev)
        for s in range(steps_per_epoch):
            b = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            if xraw is not None and aug is not None:  # augment in physical units, then normalise
                xb = norm.transform_tensor(aug.apply(xraw[b], gen))
            else:
                xb = xt[b]
            if cfg.augment_sigma > 0:
                xb = xb * (1.0 + cfg.augment_sigma * torch.randn(len(b), 1, device=dev))
            logits_c, logits_r, z_inv, z_spec = net(xb, lt[b])
            if cfg.logit_adjust > 0:
                logits_c = logits_c + cfg.logit_adjust * log_prior
            loss = ce_class(logits_c, net.per_member(yt[b]))  # TabM: the members' mean loss
            if teacher is not None:  # soft-target cross-entropy against the teacher's probabilities
                soft = -(net.per_member(teacher[b]) * torch.log_softmax(logits_c, dim=1)).sum(1).mean()
                loss = (1.0 - cfg.distill) * loss + cfg.distill * soft
            if logits_r is not None and z_spec is not None:
                labels = torch.cat([yt[b], n_classes + rt[b]])
                loss = (
                    loss + ce_region(logits_r, rt[b]) + supcon_loss(torch.cat([z_inv, z_spec]), labels, cfg.temperature)
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach()
            if cfg.ema_momentum is not None and cfg.ema_mode == "step":
                ema = _update_state_ema(ema, net, step_momentum)
            if on_event is not None and time.monotonic() - last_event >= PROGRESS_EVERY_S:
                last_event = time.monotonic()
                on_event(
                    "progress",
                    {
                        "stage": "train",
                        "done": epoch - 1 + (s + 1) / steps_per_epoch,
                        "total": cfg.epochs,
                        "info": f"epoch {epoch}",
                    },
                )
        if not bool(torch.isfinite(total)):  # checked once per epoch: no sync per step
            raise EulcError(
                f"training diverged: the loss is {float(total)} in epoch {epoch}",
                "Lower `lr`, or check the table for extreme feature values",
            )
        if cfg.ema_momentum is not None and cfg.ema_mode == "epoch" and epoch > cfg.epochs // 2:
            ema = _update_ema(ema, net, cfg.ema_momentum)
        if cfg.select_best and len(va):
            state = _final_state(net, ema)
            with _TemporaryWeights(net, state):
                f1 = split_scores(predict_proba(net, x[va], data.lonlat[va], cfg.device), data.y[va])["weighted_f1"]
            if best is None or f1 > best[0]:
                best = (f1, epoch, {k: v.clone() for k, v in state.items()})
        log.debug(
            "epoch %d/%d: loss %.4f%s",
            epoch,
            cfg.epochs,
            float(total) / max(steps_per_epoch, 1),
            f", hold-out weighted F1 {best[0]:.4f} (best epoch {best[1]})" if best is not None else "",
        )
        if on_epoch is not None:
            on_epoch(epoch, float(total) / max(steps_per_epoch, 1))
    net.load_state_dict(best[2] if best is not None else _final_state(net, ema))
    net.eval()
    metrics = split_metrics(data, cfg, tr, va, te, n_classes)
    if aug is not None:
        metrics["augmentation"] = aug.describe()
    if best is not None:
        metrics["selected_epoch"] = best[1]
    if len(tr):
        for k, v in split_scores(predict_proba(net, x[tr], data.lonlat[tr], cfg.device), data.y[tr]).items():
            metrics[f"train_{k}"] = v
    if len(va):
        logits = predict_logits_np(net, x[va], data.lonlat[va], cfg.device)
        for k, v in split_scores(softmax(logits), data.y[va]).items():
            metrics[f"val_{k}"] = v
        if cfg.calibrate:
            t = fit_temperature(logits, data.y[va])
            net.cfg = replace(net.cfg, temperature=t)
            metrics["temperature"] = t
            metrics["val_ece_calibrated"] = expected_calibration_error(softmax(logits / t), data.y[va])
    if len(te):  # after calibration: the card reports the model as shipped, on untouched rows
        for k, v in split_scores(predict_proba(net, x[te], data.lonlat[te], cfg.device), data.y[te]).items():
            metrics[f"test_{k}"] = v
    return TrainResult(net.cpu(), norm, metrics, np.asarray(tr, np.int64))


def _update_state_ema(ema: dict[str, torch.Tensor] | None, net: nn.Module, momentum: float) -> dict[str, torch.Tensor]:
    """Per-step EMA of the whole float state, BatchNorm running statistics included (as the
    authors' code averages the whole state); integer buffers (``num_batches_tracked``) follow
    the live model. In place after the first call, which copies the state.
    """
    state = net.state_dict()
    if ema is None:
        return {k: v.detach().clone() for k, v in state.items() if v.is_floating_point()}
    with torch.no_grad():
        for k, v in ema.items():
            v.mul_(momentum).add_(state[k].detach(), alpha=1.0 - momentum)
    return ema


def _final_state(net: nn.Module, ema: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """The live state with the EMA parameters (if any) in place of the live ones."""
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return {**state, **ema} if ema is not None else state


class _TemporaryWeights:
    """Context manager: temporarily load ``state`` into ``net``, then restore the live weights."""

    def __init__(self, net: nn.Module, state: dict[str, torch.Tensor]) -> None:
        self.net, self.state = net, state
        self.saved: dict[str, torch.Tensor] = {}

    def __enter__(self) -> None:
        self.saved = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        self.net.load_state_dict(self.state)

    def __exit__(self, *exc: object) -> None:
        self.net.load_state_dict(self.saved)
