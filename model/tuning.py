"""Choosing a preset on training-side data only (issue #15's protocol).

Inside one evaluation split, the training side is split again: whole EEA 100 km cells
(:data:`INNER_FRACTION` of them, seeded) form an inner hold-out; each candidate preset is
trained on the rest and scored (weighted F1) on the inner hold-out; the best one is then trained
on the whole training side and tested. The split's test rows are never read. Each choice is
appended to ``<scenario>_selection.csv`` (split, seed, the candidates' inner scores, the winner)
so a rerun reuses it and a reader can reproduce it.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from model.augment import PhysicalAugmentation
from model.baselines import XGBOOST_GRID, fit_predict_proba_baseline
from model.infer import predict_proba
from model.presets import run_config
from model.scenarios import MIN_TEST_SAMPLES
from model.train import TrainConfig, TrainingData, split_off, train_bridge
from pipeline.core.atomic import atomic_path
from pipeline.core.bioregion import REGIONS

INNER_FRACTION = 0.15
"""Share of the training side's 100 km cells held out to score the candidates."""
INNER_MAX_ROWS = 20_000
"""The candidates train on at most this many rows of the inner training part (a seeded random
subsample; the CPU budget of a nested run), and are scored on the whole inner hold-out."""


INNER_HOLDOUTS = ("cells", "regions")
"""What a nested choice is scored on. ``cells``: :data:`INNER_FRACTION` of the training side's
EEA 100 km cells (:func:`inner_split`), scored by the hold-out's weighted F1; ``regions``: whole
bioregions of the training side (:func:`inner_region_split`, the shift a LORO test region
brings), scored by the size-weighted mean of each held-out region's weighted F1 (the LORO
headline's aggregate)."""


def inner_holdout(
    train_side: TrainingData, seed: int, holdout: str = "cells", fold: str = ""
) -> tuple[TrainingData, TrainingData]:
    """The inner (fit, hold-out) rows of a nested choice (:data:`INNER_HOLDOUTS`); ``fold`` (the
    split's name) draws the inner regions per split.

    Raises:
        ValueError: ``holdout`` is not one of :data:`INNER_HOLDOUTS`, or (``regions``) the side
            has fewer than two regions with enough rows.
    """
    if holdout == "cells":
        return inner_split(train_side, seed)
    if holdout == "regions":
        fit, held = inner_region_split(train_side, seed, fold)
        return train_side.take(fit), train_side.take(held)
    raise ValueError(f"`inner` {holdout!r} is not one of {', '.join(INNER_HOLDOUTS)}")


def inner_score(val: TrainingData, pred: np.ndarray, holdout: str = "cells") -> float:
    """A candidate's score on the inner hold-out ``val`` from its predicted classes ``pred`` (N,):
    weighted F1 in 0–1 over the rows (``cells``), or the size-weighted mean of each held-out
    region's weighted F1 (``regions``).
    """
    if holdout != "regions":
        return float(f1_score(val.y, pred, average="weighted", zero_division=0))
    ids, counts = np.unique(val.region, return_counts=True)
    per = [f1_score(val.y[val.region == r], pred[val.region == r], average="weighted", zero_division=0) for r in ids]
    return float(np.average(per, weights=counts))


def inner_description(val: TrainingData, holdout: str = "cells") -> str:
    """What a choice was scored on, for the selection CSV's ``inner`` column."""
    if holdout != "regions":
        return f"blocked: {INNER_FRACTION:g} of the training side's 100 km cells"
    return "held-out regions: " + ", ".join(REGIONS[int(r)] for r in np.unique(val.region))


def choose_preset(
    train_side: TrainingData,
    candidates: Sequence[str],
    cfg: TrainConfig,
    seed: int,
    n_classes: int,
    augmentation: PhysicalAugmentation | None = None,
    holdout: str = "cells",
    fold: str = "",
) -> tuple[str, dict[str, float]]:
    """The candidate with the best score on an inner hold-out of ``train_side``.

    Args:
        train_side: the evaluation split's training rows (never its test rows).
        candidates: preset names (:data:`model.presets.PRESETS`).
        cfg: schedule, level and device shared by the candidates.
        seed: the inner split's and the candidates' seed.
        n_classes: C.
        augmentation: the column map for presets with physical augmentation.
        holdout: blocked ``cells`` or whole ``regions`` (:data:`INNER_HOLDOUTS`).
        fold: the split's name (draws the inner regions per split).

    Returns:
        (winner, {candidate: :func:`inner_score` in 0–1}); ties go to the earlier candidate.

    Raises:
        ValueError: a bad ``holdout`` (:func:`inner_holdout`).
    """
    fit_rows, val = inner_holdout(train_side, seed, holdout, fold)
    scores: dict[str, float] = {}
    for name in candidates:
        res = train_bridge(fit_rows, n_classes, run_config(name, cfg, seed), augmentation=augmentation)
        prob = predict_proba(res.model, res.normalizer.transform(val.x), val.lonlat, cfg.device)
        scores[name] = inner_score(val, prob.argmax(1), holdout)
    winner = max(candidates, key=lambda n: (scores[n], -list(candidates).index(n)))
    return winner, scores


def inner_split(train_side: TrainingData, seed: int) -> tuple[TrainingData, TrainingData]:
    """The inner (fit, hold-out) rows every nested choice uses: :data:`INNER_FRACTION` of the
    training side's EEA 100 km cells held out (seeded), the rest capped at :data:`INNER_MAX_ROWS`.
    """
    inner_tr, inner_va = split_off(np.arange(len(train_side.y)), train_side, INNER_FRACTION, seed, True)
    if len(inner_tr) > INNER_MAX_ROWS:
        inner_tr = np.sort(np.random.default_rng(seed).choice(inner_tr, INNER_MAX_ROWS, replace=False))
    return train_side.take(inner_tr), train_side.take(inner_va)


INNER_REGION_SHARE = 0.35
"""At most this share of the training side's rows is held out as inner regions (at least one region)."""
INNER_REGIONS_MAX = 3
"""At most this many inner regions are held out (each one area EM adaptation is scored on)."""


def inner_region_split(train_side: TrainingData, seed: int, fold: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Row indices (into ``train_side``) of an inner *leave-regions-out* split: whole EEA
    bioregions of the training side held out, so a model fitted on the rest meets areas it never
    saw, as a LORO test region is (issue #29: EM's strength and guard are chosen there).

    The regions with at least :data:`model.scenarios.MIN_TEST_SAMPLES` rows are shuffled with
    ``seed`` and ``fold`` (the split's name, e.g. ``loro-Alpine``: each fold draws its own inner
    regions, where one seed alone gave most folds the same ones) and taken in that order while the
    held-out rows stay within :data:`INNER_REGION_SHARE` of the side (the first one always; at most
    :data:`INNER_REGIONS_MAX`); the fit rows are capped at :data:`INNER_MAX_ROWS` (seeded).

    Returns:
        (fit rows, held-out rows), sorted int64.

    Raises:
        ValueError: the training side has fewer than two regions with enough rows.
    """
    ids, counts = np.unique(train_side.region, return_counts=True)
    eligible = ids[counts >= MIN_TEST_SAMPLES]
    if len(eligible) < 2:
        raise ValueError(f"train_side has {len(eligible)} region(s) with >= {MIN_TEST_SAMPLES} rows; need 2")
    order = np.random.default_rng([seed, zlib.crc32(fold.encode())]).permutation(eligible)
    n = len(train_side.y)
    held: list[int] = []
    rows = 0
    for r in order[:-1]:  # never every region: something must remain to fit on
        size = int(counts[ids == r][0])
        if held and (rows + size > INNER_REGION_SHARE * n or len(held) >= INNER_REGIONS_MAX):
            continue
        held.append(int(r))
        rows += size
    out = np.isin(train_side.region, held)
    fit, val = np.flatnonzero(~out), np.flatnonzero(out)
    if len(fit) > INNER_MAX_ROWS:
        fit = np.sort(np.random.default_rng(seed).choice(fit, INNER_MAX_ROWS, replace=False))
    return fit, val


def choose_xgboost(
    train_side: TrainingData, seed: int, n_classes: int, holdout: str = "cells", fold: str = ""
) -> tuple[str, dict[str, float]]:
    """The :data:`model.baselines.XGBOOST_GRID` setting with the best score on the same inner
    hold-out as :func:`choose_preset` with the same ``holdout`` and ``fold`` (the network's
    candidates' budget: as many candidates, the same rows, the same score). Ties go to the
    earlier setting (the paper's first).

    Returns:
        (winner, {setting: :func:`inner_score` in 0–1}).
    """
    fit_rows, val = inner_holdout(train_side, seed, holdout, fold)
    scores: dict[str, float] = {}
    for name, params in XGBOOST_GRID.items():
        pred, _ = fit_predict_proba_baseline("xgboost", fit_rows.x, fit_rows.y, val.x, seed, n_classes, params)
        scores[name] = inner_score(val, pred, holdout)
    names = list(XGBOOST_GRID)
    winner = max(names, key=lambda n: (scores[n], -names.index(n)))
    return winner, scores


def load_choices(path: Path, settings: str) -> dict[str, str]:
    """Choices already made for these settings: split key (the hash of its training and test
    rows, so a choice is reused only for the very same split) → winning preset.
    """
    if not path.is_file():
        return {}
    df = pd.read_csv(path, keep_default_na=False)
    ok = {"settings", "split_key"} <= set(df.columns)
    df = df[df["settings"] == settings] if ok else df.iloc[:0]
    return dict(zip(df["split_key"].astype(str), df["winner"].astype(str), strict=True))


def write_choice(
    path: Path,
    settings: str,
    split: str,
    split_key: str,
    seed: int,
    winner: str,
    scores: dict[str, float],
    inner: str = f"blocked: {INNER_FRACTION:g} of the training side's 100 km cells",
) -> None:
    """Append one choice (atomically: the file is rewritten whole); ``inner`` says what it was
    scored on (column ``inner``).
    """
    old = pd.read_csv(path, keep_default_na=False) if path.is_file() else pd.DataFrame()
    row = pd.DataFrame(
        [
            {
                "split": split,
                "split_key": split_key,
                "seed": seed,
                "winner": winner,
                **{f"inner_wf1_{k}": round(v, 5) for k, v in scores.items()},
                "inner": inner,
                "scores": json.dumps(scores),
                "settings": settings,
            }
        ]
    )
    with atomic_path(path) as tmp:
        pd.concat([old, row], ignore_index=True).to_csv(tmp, index=False)
