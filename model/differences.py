"""Paired differences between a scenario's models, with a seed interval and a cell-bootstrap
interval each (issue #29, part 1).

A scenario run (:func:`model.evaluate.run_scenario`) stores every run's test predictions, one row
per test point (:data:`PREDICTION_COLUMNS`, ``<scenario>_predictions.parquet``). For a reference
model and each other model, per split and, for LORO, for the three aggregates of
:data:`model.scenarios.LORO_AGGREGATES`, this module gives the difference reference − other in
weighted F1 and accuracy (points of %), the 95 % Student-t interval over the seeds both share, and
the 95 % paired cell-bootstrap interval (:mod:`model.bootstrap`: whole EEA 100 km test cells
resampled, each LORO region on its own cells). A claim is made only where the cell interval
excludes 0 (``verdict``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from model.bootstrap import N_BOOT, PairedInterval, Stratum, paired_cell_bootstrap
from model.scenarios import LORO_AGGREGATES, MIN_TEST_SAMPLES, SIZE_WEIGHTED
from pipeline.core.errors import SchemaError

PREDICTION_COLUMNS = ("split", "model", "seed", "row", "cell", "y_true", "y_pred")
"""One row per (run, test point): the split's name, the model, the seed, the point's index among
the table's usable rows (int64), its EEA 100 km cell code (str, empty when the table has none),
the reference class id and the predicted one (int16)."""


def _stratum(g: pd.DataFrame, reference: str, other: str) -> tuple[Stratum, int, tuple[int, ...]] | None:
    """The paired stratum of one split (None when the two models share no seed there), its test
    size (mean over seeds) and the seeds it pairs.
    """
    a, b = g[g["model"] == reference], g[g["model"] == other]
    seeds = sorted(set(a["seed"]) & set(b["seed"]))
    if not seeds:
        return None
    a, b = a[a["seed"].isin(seeds)], b[b["seed"].isin(seeds)]
    both = pd.concat([a, b]).drop_duplicates("row").sort_values("row")
    rows = both["row"].to_numpy(np.int64)
    pos = {int(r): i for i, r in enumerate(rows)}
    pa = np.full((len(seeds), len(rows)), -1, np.int64)
    pb = np.full_like(pa, -1)
    for i, s in enumerate(seeds):
        for p, part in ((pa, a), (pb, b)):
            run = part[part["seed"] == s]
            p[i, [pos[int(r)] for r in run["row"]]] = run["y_pred"].to_numpy(np.int64)
    if not np.array_equal(pa >= 0, pb >= 0):
        raise SchemaError(
            f"split {g['split'].iloc[0]!r}: {reference} and {other} were tested on different rows",
            "Compare runs of one scenario run (the same settings)",
        )
    cells = both["cell"].astype(str).to_numpy()
    if (cells == "").any():  # a table without cells: every point is its own block
        cells = np.array([f"row{r}" for r in rows])
    n_test = int(round((pa >= 0).sum() / len(seeds)))
    return Stratum(both["y_true"].to_numpy(np.int64), pa, pb, cells), n_test, tuple(int(s) for s in seeds)


def _record(split: str, reference: str, other: str, res: dict[str, PairedInterval], n_test: int, seeds: int) -> dict:
    f, a = res["weighted_f1"], res["accuracy"]
    return {
        "split": split,
        "reference": reference,
        "model": other,
        "seeds": seeds,
        "n_test": n_test,
        "n_cells": f.n_cells,
        "weighted_f1_diff": f.diff,
        "weighted_f1_seed_ci95": f.seed_half,
        "weighted_f1_cell_low": f.low,
        "weighted_f1_cell_high": f.high,
        "accuracy_diff": a.diff,
        "accuracy_cell_low": a.low,
        "accuracy_cell_high": a.high,
        "verdict": {"a better": f"{reference} better", "b better": f"{other} better"}.get(f.verdict, "tie"),
        "n_boot": f.n_boot,
    }


def difference_table(
    preds: pd.DataFrame, n_classes: int, reference: str, n_boot: int = N_BOOT, seed: int = 0
) -> pd.DataFrame:
    """Reference − every other model, per split and (LORO) per aggregate (module docstring).

    Args:
        preds: rows of :data:`PREDICTION_COLUMNS` (one scenario run's settings).
        n_classes: class ids are ``0..n_classes-1``.
        reference: the model every other model is compared with.
        n_boot: bootstrap replicates per interval; seed: the draws' seed (the same for every row).

    Returns:
        One row per (split or aggregate, model): ``weighted_f1_diff`` and ``accuracy_diff`` in
        points, ``weighted_f1_seed_ci95`` (half-width, NaN with one seed), the cell interval
        ``*_cell_low``/``*_cell_high``, ``verdict`` ("<model> better" only where the weighted-F1
        cell interval excludes 0, else "tie"), ``seeds``, ``n_test``, ``n_cells``. Empty when the
        reference was not run.

    Raises:
        SchemaError: a column of :data:`PREDICTION_COLUMNS` is missing, or two models of one split
            and seed were tested on different rows.
    """
    missing = [c for c in PREDICTION_COLUMNS if c not in preds.columns]
    if missing:
        raise SchemaError(f"the predictions lack the column(s) {missing}", "Rerun the scenario with this eulc")
    if reference not in set(preds["model"]):
        return pd.DataFrame()
    out = []
    splits = list(dict.fromkeys(preds["split"]))
    is_loro = bool(splits) and all(str(s).startswith("loro-") for s in splits)
    for other in [m for m in dict.fromkeys(preds["model"]) if m != reference]:
        per: list[tuple[Stratum, int, tuple[int, ...]]] = []
        for split in splits:
            got = _stratum(preds[preds["split"] == split], reference, other)
            if got is None:
                continue
            per.append(got)
            st, n_test, seeds = got
            res = paired_cell_bootstrap([st], n_classes, n_boot, seed)
            out.append(_record(str(split), reference, other, res, n_test, len(seeds)))
        if not is_loro or not per or len({s for _, _, s in per}) != 1:
            continue  # an aggregate averages seeds over regions: only where every region has the same seeds
        for agg in LORO_AGGREGATES:
            chosen = [(st, n) for st, n, _ in per if not agg.startswith("mean (n") or n >= MIN_TEST_SAMPLES]
            if not chosen:
                continue
            strata = [
                Stratum(st.y_true, st.pred_a, st.pred_b, st.cells, float(n) if agg == SIZE_WEIGHTED else 1.0)
                for st, n in chosen
            ]
            res = paired_cell_bootstrap(strata, n_classes, n_boot, seed)
            out.append(_record(agg, reference, other, res, sum(n for _, n in chosen), len(per[0][2])))
    return pd.DataFrame(out)


def differences_markdown(table: pd.DataFrame, scenario: str) -> str:
    """The table of :func:`difference_table` as Markdown (one row per split or aggregate and model)."""
    if table.empty:
        return f"# {scenario}: no paired differences (the reference model was not run)\n"
    ref = str(table["reference"].iloc[0])
    lines = [
        f"# {scenario}: {ref} − each other model, in points of %",
        "",
        "Weighted F1 difference ± the 95 % interval over seeds (training randomness), and the 95 % "
        f"paired cell-bootstrap interval ({int(table['n_boot'].iloc[0]):,} draws of whole EEA 100 km test "
        "cells; the test sample's uncertainty). A model is called better only where the cell "
        "interval excludes 0.",
        "",
        "| split | vs | Δ weighted F1 | cell interval | verdict | Δ accuracy [cell interval] | seeds | n test "
        "| cells |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.to_dict("records"):
        half = r["weighted_f1_seed_ci95"]
        seed_txt = "" if pd.isna(half) else f" ± {half:.2f}"
        lines.append(
            f"| {r['split']} | {r['model']} | {r['weighted_f1_diff']:+.2f}{seed_txt} | "
            f"[{r['weighted_f1_cell_low']:+.2f}, {r['weighted_f1_cell_high']:+.2f}] | {r['verdict']} | "
            f"{r['accuracy_diff']:+.2f} [{r['accuracy_cell_low']:+.2f}, {r['accuracy_cell_high']:+.2f}] | "
            f"{r['seeds']} | {r['n_test']:,} | {r['n_cells']:,} |"
        )
    return "\n".join(lines) + "\n"
