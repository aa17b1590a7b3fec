"""Assemble docs/results.md tables from `eulc evaluate` outputs, next to the paper's numbers.

    python scripts/results_tables.py L1_DIR L2_DIR > tables.md

Reads ``<scenario>_summary.csv`` (extrap, extrap-blocked, loro, ablation) in each directory.
The paper's figures are FEATURES.md §6 (LUCAS 2022, 109 features) and Table 12.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

PAPER = {  # (scenario, model) → (L1 F1, L1 Acc, L2 F1, L2 Acc)
    ("extrap", "svm"): (77.68, 78.03, 55.83, 58.25),
    ("extrap", "rf"): (78.03, 78.56, 58.01, 59.85),
    ("extrap", "xgboost"): (79.33, 79.75, 61.58, 62.88),
    ("extrap", "bridge-lc"): (80.30, 80.49, 64.01, 64.24),
    ("loro", "svm"): (71.94, 72.93, 47.45, 52.18),
    ("loro", "rf"): (70.10, 72.15, 48.14, 52.93),
    ("loro", "xgboost"): (71.15, 72.98, 52.88, 56.70),
    ("loro", "bridge-lc"): (73.59, 74.77, 54.44, 58.29),
}
PAPER_ABLATION = {  # Table 12: L1 Acc, L1 F1, L2 Acc, L2 F1
    "no geographic information": (74.49, 73.17, 57.76, 53.93),
    "+ region": (74.59, 73.26, 58.18, 54.37),
    "+ fixed PE": (71.90, 70.20, 55.70, 52.14),
    "+ fixed PE + region": (70.93, 69.18, 55.61, 52.21),
    "+ learnt PE": (74.47, 73.03, 58.27, 54.88),
    "+ learnt PE + region (full)": (74.77, 73.59, 58.29, 54.44),
}
ORDER = ["svm", "rf", "xgboost", "mlp", "bridge-lc", "eulc"]
LABEL = {
    "svm": "SVM (≤ 15k rows)",
    "rf": "RF",
    "xgboost": "XGBoost",
    "mlp": "MLP, no geography",
    "bridge-lc": "BRIDGE-LC (faithful)",
    "eulc": "**eulc default**",
}


def _fmt(r: pd.Series, k: str) -> str:
    h = r[f"{k}_ci95"]
    return f"{r[k]:.2f}" + ("" if pd.isna(h) else f" ± {h:.2f}")


def _row(s: pd.DataFrame, split: str, model: str) -> pd.Series | None:
    m = s[(s["split"] == split) & (s["model"] == model)]
    return None if m.empty else m.iloc[0]


def main_table(l1: Path, l2: Path) -> str:
    """Scenario × model: weighted F1 / accuracy, eulc (L1, L2) and paper (L1, L2)."""
    lines = [
        "| scenario | model | L1 wF1 | L1 acc | L2 wF1 | L2 acc | paper L1 wF1 / acc | paper L2 wF1 / acc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scen, split in (("extrap", "extrap"), ("extrap-blocked", "extrap-blocked"), ("loro", "mean")):
        s1 = _read(l1, scen)
        s2 = _read(l2, scen)
        for model in ORDER:
            r1 = _row(s1, split, model) if s1 is not None else None
            r2 = _row(s2, split, model) if s2 is not None else None
            if r1 is None and r2 is None:
                continue
            p = PAPER.get((scen, model))
            cells = [_fmt(r, k) if r is not None else "–" for r in (r1, r2) for k in ("weighted_f1", "accuracy")]
            paper = [f"{p[0]:.2f} / {p[1]:.2f}", f"{p[2]:.2f} / {p[3]:.2f}"] if p else ["", ""]
            name = scen if scen != "loro" else "LORO (mean of regions)"
            lines.append(f"| {name} | {LABEL[model]} | " + " | ".join(cells + paper) + " |")
    return "\n".join(lines)


def loro_regions(d: Path) -> str:
    """Per held-out region weighted F1 (mean over seeds) for every model."""
    s = _read(d, "loro")
    if s is None:
        return ""
    s = s[s["split"].str.startswith("loro-")]  # the regions, not the aggregates
    models = [m for m in ORDER if m in set(s["model"])]
    lines = ["| region (test n) | " + " | ".join(LABEL[m] for m in models) + " |", "|---|" + "---|" * len(models)]
    for split, g in s.groupby("split", sort=False):
        best = g["weighted_f1"].max()
        cells = []
        for m in models:
            r = g[g["model"] == m]
            v = float(r["weighted_f1"].iloc[0]) if len(r) else float("nan")
            cells.append(f"**{v:.2f}**" if v == best else f"{v:.2f}")
        region = str(split).removeprefix("loro-")
        lines.append(f"| {region} ({int(g['n_test'].iloc[0]):,}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation(l1: Path, l2: Path) -> str:
    """Table 12 layout: LORO mean accuracy / weighted F1 at L1 and L2, eulc vs paper."""
    s1, s2 = _read(l1, "ablation"), _read(l2, "ablation")
    lines = [
        "| variant | L1 acc | L1 wF1 | L2 acc | L2 wF1 | paper L1 acc / wF1 | paper L2 acc / wF1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for v, p in PAPER_ABLATION.items():
        cells = []
        for s in (s1, s2):
            r = _row(s, "mean", v) if s is not None else None
            cells += [_fmt(r, k) if r is not None else "–" for k in ("accuracy", "weighted_f1")]
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {p[0]:.2f} / {p[1]:.2f} | {p[2]:.2f} / {p[3]:.2f} |")
    return "\n".join(lines)


def _read(d: Path, scen: str) -> pd.DataFrame | None:
    f = d / f"{scen}_summary.csv"
    return pd.read_csv(f) if f.is_file() else None


if __name__ == "__main__":
    l1, l2 = Path(sys.argv[1]), Path(sys.argv[2])
    print("## Main table\n\n" + main_table(l1, l2))
    print("\n## LORO per region, Level-1\n\n" + loro_regions(l1))
    print("\n## LORO per region, Level-2\n\n" + loro_regions(l2))
    print("\n## Ablation (Table 12)\n\n" + ablation(l1, l2))
