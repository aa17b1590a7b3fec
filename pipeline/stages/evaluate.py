"""The evaluate stage: a bundle's metrics on a table, or a paper scenario (EXTRAP, blocked
EXTRAP, LORO, the Table 12 ablation) over models and seeds (:mod:`model.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from model.evaluate import evaluate_bundle, run_scenario
from model.infer import resolve_device
from model.presets import FAITHFUL, preset_config
from pipeline.core.atomic import write_json
from pipeline.core.errors import EulcError
from pipeline.core.ledger import out_lock
from pipeline.stages.events import Event, ignore
from pipeline.stages.pretrained import resolve_bundle
from pipeline.stages.resolve import table_selection
from pipeline.table import table_metadata, table_spec


@dataclass(frozen=True)
class EvaluateRequest:
    """A bundle to score, or a scenario to run, on a table.

    Attributes:
        table: the FeatureTable.
        out: the output folder (``metrics.json``, or ``<scenario>_runs.csv`` and the summaries).
        bundle: score this bundle (folder or shipped name) on every labelled row; or
        scenario: ``extrap``, ``extrap-blocked``, ``loro`` or ``ablation``, with
        features, models, seeds, epochs, lr, level, regions, max_rows, ema, adapt_priors,
            select_k, calibrate_baselines, inner, device: as ``model.evaluate.run_scenario`` takes them.
    """

    table: Path
    out: Path
    bundle: str | None = None
    scenario: str | None = None
    features: str | None = None
    models: tuple[str, ...] = ("bridge-lc", "eulc", "mlp", "rf", "xgboost", "svm")
    seeds: int = 5
    epochs: int = 500
    lr: float = 1e-4
    level: str = "level1"
    regions: tuple[str, ...] | None = None
    max_rows: int | None = None
    ema: bool = True
    adapt_priors: bool = False
    select_k: int | None = None
    calibrate_baselines: bool = False
    inner: str = "cells"
    device: str = "auto"

    def __post_init__(self) -> None:
        if (self.bundle is None) == (self.scenario is None):
            raise EulcError("give `bundle` or `scenario`", "Score a bundle, or run a scenario (extrap, loro, ...)")
        if self.seeds < 1:
            raise EulcError(f"`seeds` {self.seeds} is not a number of seeds", "Use 1 or more")


@dataclass
class EvaluateResult:
    """``metrics`` (bundle) or ``runs`` (scenario: one row per split, model and seed)."""

    metrics: dict[str, Any] | None = None
    runs: pd.DataFrame | None = None
    summary_md: Path | None = None
    runs_csv: Path | None = None


def evaluate(req: EvaluateRequest, on_event: Event = ignore) -> EvaluateResult:
    """Score the bundle (writes ``out/metrics.json``) or run the scenario (``progress`` events:
    one per run, with its split, model and weighted F1).

    Raises:
        EulcError: a bad table, bundle, feature or setting (named).
    """
    with out_lock(req.out, "eulc evaluate"):
        return _evaluate(req, on_event)


def _evaluate(req: EvaluateRequest, on_event: Event) -> EvaluateResult:
    out = Path(req.out)
    table = Path(req.table)
    if req.bundle is not None:
        m = evaluate_bundle(resolve_bundle(req.bundle), table)
        on_event("note", {"message": m["warning"]})
        write_json(out / "metrics.json", m)
        return EvaluateResult(metrics=m)
    assert req.scenario is not None
    on_event("status", {"message": f"reading {table} and planning the {req.scenario} runs"})
    sel = table_selection(table_spec(table_metadata(table), f"table {table}"), req.features)
    # the base schedule of every neural model, through the validators (epochs 0 is refused)
    cfg = preset_config(
        FAITHFUL,
        None,
        level=req.level,
        epochs=req.epochs,
        lr=req.lr,
        device=str(resolve_device(req.device)),
        **({} if req.ema else {"ema_momentum": None}),
    )
    total: list[int | None] = [None]
    done = [0]

    def on_plan(n: int) -> None:
        total[0] = n
        on_event("progress", {"stage": req.scenario, "done": 0, "total": n, "info": ""})

    def on_result(r: dict[str, Any]) -> None:
        done[0] += 1
        on_event(
            "progress",
            {
                "stage": req.scenario,
                "done": done[0],
                "total": total[0],
                "info": f"{r['split']} {r['model']}: F1 {r['weighted_f1']:.3f}",
            },
        )

    def on_start(what: str) -> None:
        on_event("progress", {"stage": req.scenario, "done": done[0], "total": total[0], "info": f"fitting {what}"})

    df = run_scenario(
        table,
        sel.names,
        req.scenario,
        out,
        req.models,
        tuple(range(req.seeds)),
        cfg,
        list(req.regions) if req.regions else None,
        req.max_rows,
        on_result,
        adapt_priors=req.adapt_priors,
        select_k=req.select_k,
        calibrate_baselines=req.calibrate_baselines,
        inner=req.inner,
        on_plan=on_plan,
        on_start=on_start,
    )
    return EvaluateResult(
        runs=df, summary_md=out / f"{req.scenario}_summary.md", runs_csv=out / f"{req.scenario}_runs.csv"
    )
