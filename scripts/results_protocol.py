"""Markdown tables of issue #15's LORO runs for docs/results.md.

    python scripts/results_protocol.py RUN_DIR [RUN_DIR ...] [--reference=MODEL ...]

Each RUN_DIR holds a ``loro_runs.csv`` written by ``eulc evaluate --scenario loro`` (runs split
over several folders, e.g. one per group of regions, are pooled; their settings must agree) and
optionally ``loro_selection.csv`` and ``loro_predictions.parquet``. Prints: the three LORO
aggregates per model (mean ± 95 % CI over seeds), the per-region table, the nested choices and
the EM settings chosen (``--adapt-priors``), and (where the predictions are stored) the first
model (or each ``--reference``) minus each other one with its seed and cell-bootstrap intervals
(:mod:`model.differences`).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pandas as pd

from model.differences import difference_table, differences_markdown
from model.evaluate import LORO_AGGREGATES, SIZE_WEIGHTED, TUNED_XGBOOST, summary_table
from pipeline.core.legend import legend_for


def _fmt(m: float, h: float) -> str:
    return "–" if pd.isna(m) else f"{m:.2f}" + ("" if pd.isna(h) else f" ± {h:.2f}")


def main(dirs: list[Path], references: list[str] | None = None) -> None:
    """Print the tables (module docstring); the differences take each of ``references`` (default:
    the first model) minus every other model.
    """
    runs = pd.concat([pd.read_csv(d / "loro_runs.csv", keep_default_na=False, na_values=[""]) for d in dirs])
    if runs["settings"].nunique() != 1:
        raise SystemExit("the runs were made with different settings; give folders of one configuration")
    s = summary_table(runs)
    models = list(dict.fromkeys(runs["model"]))
    seeds = runs["seed"].nunique()
    print(f"LORO, {runs['level'].iloc[0]}: weighted F1 / accuracy / ECE (%), mean ± 95 % CI over {seeds} seeds\n")
    print("| model | " + " | ".join(f"{a} wF1" for a in LORO_AGGREGATES) + " | size-weighted acc | size-weighted ECE |")
    print("|---|" + "---|" * (len(LORO_AGGREGATES) + 2))
    for m in models:
        g = s[s["model"] == m].set_index("split")
        cells = [
            _fmt(g.loc[a, "weighted_f1"], g.loc[a, "weighted_f1_ci95"]) if a in g.index else "–"
            for a in LORO_AGGREGATES
        ]
        acc = _fmt(g.loc[SIZE_WEIGHTED, "accuracy"], g.loc[SIZE_WEIGHTED, "accuracy_ci95"])
        ece = _fmt(g.loc[SIZE_WEIGHTED, "ece"], g.loc[SIZE_WEIGHTED, "ece_ci95"])
        print(f"| {m} | " + " | ".join(cells) + f" | {acc} | {ece} |")
    per = s[s["split"].str.startswith("loro-")]
    print("\nPer held-out region (weighted F1 %, mean over seeds; ECE % in brackets)\n")
    print("| region (test n) | " + " | ".join(models) + " |")
    print("|---|" + "---|" * len(models))
    for split, g in per.groupby("split", sort=False):
        g = g.set_index("model")
        cells = [f"{g.loc[m, 'weighted_f1']:.2f} ({g.loc[m, 'ece']:.1f})" if m in g.index else "–" for m in models]
        print(f"| {str(split)[5:]} ({int(g['n_test'].iloc[0]):,}) | " + " | ".join(cells) + " |")
    sel = [d / "loro_selection.csv" for d in dirs if (d / "loro_selection.csv").is_file()]
    if sel:
        df = pd.concat([pd.read_csv(p) for p in sel])
        em = df["split"].astype(str).str.endswith("+em)")
        rt = df["split"].astype(str).str.endswith("+rt)")
        trees = df["split_key"].astype(str).str.contains(f":{TUNED_XGBOOST}:")  # the key evaluate writes
        for title, part, scale in (
            (
                "Nested choice (inner blocked hold-out inside each split's training side; weighted F1 %)",
                df[~em & ~rt & ~trees],
                100,
            ),
            ("xgboost-tuned setting (the same inner blocked hold-out; weighted F1 %)", df[trees], 100),
            ("EM setting (inner held-out regions of each split's training side; weighted-F1 gain, points)", df[em], 1),
            ("Region temperature (fitted on the same inner held-out regions)", df[rt], 1),
        ):
            if not len(part):
                continue
            # each kind of choice has its own candidates: the columns every row of this kind scored
            cols = [c for c in part.columns if c.startswith("inner_wf1_") and part[c].notna().all()]
            print(f"\n{title}\n")
            print("| " + " | ".join(["split", "seed", *(c[10:] for c in cols), "chosen", "scored on"]) + " |")
            print("|---|---|" + "---|" * (len(cols) + 2))
            for r in part.sort_values(["seed", "split"], kind="stable").to_dict("records"):
                vals = "".join(f" {scale * r[c]:.2f} |" for c in cols)
                print(f"| {str(r['split'])[5:]} | {int(r['seed'])} |{vals} {r['winner']} | {r.get('inner', '')} |")

    pred = [d / "loro_predictions.parquet" for d in dirs if (d / "loro_predictions.parquet").is_file()]
    if pred:
        key = hashlib.sha256(str(runs["settings"].iloc[0]).encode()).hexdigest()[:16]
        p = pd.concat([pd.read_parquet(f) for f in pred])
        p = p[p["settings_key"] == key]
        n_classes = len(legend_for(str(runs["level"].iloc[0])).names)
        print()
        for ref in references or [models[0]]:
            print(differences_markdown(difference_table(p, n_classes, ref), "loro"))


if __name__ == "__main__":
    args = sys.argv[1:]
    refs = [a.split("=", 1)[1] for a in args if a.startswith("--reference=")]
    main([Path(a) for a in args if not a.startswith("--reference=")], refs)
