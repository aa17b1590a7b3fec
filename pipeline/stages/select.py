"""The select stage: rank a table's features by Random-Forest importance and keep the top k
(paper §2, after Ghassemi et al. 2024), optionally with the accuracy-vs-k curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from model.importance import accuracy_vs_k, curve_png, default_k, default_ks, rf_importance, select_top_k
from model.train import training_arrays
from pipeline.core.atomic import atomic_path
from pipeline.core.errors import EulcError
from pipeline.core.ledger import out_lock
from pipeline.core.selection import FeatureSelection
from pipeline.stages.events import Event, ignore
from pipeline.table import read_feature_table, table_metadata, table_spec

METHODS = ("mdi", "permutation")


@dataclass(frozen=True)
class SelectRequest:
    """Which table, how many features, how ranked.

    Attributes:
        table: the FeatureTable.
        out: the FeatureSelection JSON to write.
        k: features to keep (default: 109 of 196, else the same share).
        method: ``mdi`` (impurity) or ``permutation`` (blocked hold-out).
        seeds: RF seeds averaged (stability is reported).
        level: ``level1`` or ``level2`` labels.
        curve: a folder for the accuracy-vs-k curve (CSV + PNG), or None.
    """

    table: Path
    out: Path
    k: int | None = None
    method: str = "mdi"
    seeds: int = 3
    level: str = "level1"
    curve: Path | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise EulcError(f"`method` {self.method!r} is unknown", "Use mdi or permutation")
        if self.seeds < 1:
            raise EulcError(f"`seeds` {self.seeds} is not a number of seeds", "Use 1 or more")
        if self.k is not None and self.k < 1:
            raise EulcError(f"`k` {self.k} is not a number of features", "Use 1 or more")


@dataclass
class SelectResult:
    """The selection written, the rows and features it was fitted on, and the curve (if asked)."""

    selection: FeatureSelection
    n_rows: int
    n_features: int
    dropped: dict[str, Any]
    curve: pd.DataFrame | None = None


def select(req: SelectRequest, on_event: Event = ignore) -> SelectResult:
    """Fit RF importance on the table's rows and write the top-k selection (``progress`` events:
    one per seed, then one per k of the curve).

    Raises:
        EulcError: a bad table, too few rows, an unknown method.
    """
    with out_lock(req.out, "eulc select", is_file=True):
        return _select(req, on_event)


def _select(req: SelectRequest, on_event: Event) -> SelectResult:
    table_path = Path(req.table)
    spec = table_spec(table_metadata(table_path), f"table {table_path}")
    table, _ = read_feature_table(table_path)
    names = [n for n in spec.names if n in table.columns]
    d = training_arrays(table, names, req.level)
    kk = req.k if req.k is not None else default_k(len(names))
    dropped = {k_: v for k_, v in d.dropped.items() if v}
    on_event(
        "step",
        {
            "step": "select",
            "message": f"{len(d.y):,} rows, {len(names)} features" + (f"; left out: {dropped}" if dropped else ""),
        },
    )
    seeds = tuple(range(req.seeds))
    imp = rf_importance(
        d.x,
        d.y,
        d.cells,
        names,
        req.method,  # type: ignore[arg-type]
        seeds,
        lambda s: on_event(
            "progress", {"stage": f"RF importance ({req.method})", "done": s + 1, "total": len(seeds), "info": ""}
        ),
    )
    sel = select_top_k(spec, imp, kk)
    sel.save(Path(req.out))
    res = SelectResult(sel, len(d.y), len(names), dropped)
    if req.curve is not None:
        ks = default_ks(len(names))
        done = [0]

        def on_k(kv: int, f1: float) -> None:
            done[0] += 1
            on_event(
                "progress",
                {"stage": "accuracy vs k", "done": done[0], "total": len(ks), "info": f"k={kv}: F1 {f1:.3f}"},
            )

        df = accuracy_vs_k(d.x, d.y, d.cells, names, req.method, on_k=on_k)  # type: ignore[arg-type]
        with atomic_path(Path(req.curve) / "accuracy_vs_k.csv") as tmp:
            df.to_csv(tmp, index=False)
        curve_png(
            df, str(Path(req.curve) / "accuracy_vs_k.png"), f"{spec.name}: RF on top-k features ({req.method})", kk
        )
        res.curve = df
    return res
