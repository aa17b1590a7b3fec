"""Random-Forest feature importance and top-k selection, with its stability across seeds and
the accuracy-versus-k curve (paper §2: 109 of the 196 features kept by Random-Forest
importance, after Ghassemi et al. 2024).

Importances are computed per seed with the paper's RF (130 trees, min_samples_leaf 2, sqrt),
either as mean decrease in impurity (``mdi``, scikit-learn's ``feature_importances_``) or as
permutation importance (``permutation``: drop in weighted F1 on a spatially blocked hold-out
when one feature is shuffled; Breiman 2001). Per-seed scores are normalised to sum to 1 and
averaged; the ranking is by the mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import f1_score
from sklearn.model_selection import GroupShuffleSplit

from pipeline.core.atomic import atomic_path
from pipeline.core.errors import SchemaError
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import FeatureSpec

Method = Literal["mdi", "permutation"]
PAPER_K, PAPER_N = 109, 196


def default_k(n_features: int) -> int:
    """The paper's k = 109 for the 196-feature spec; otherwise the same fraction (109/196) of
    ``n_features``, rounded, at least 1.
    """
    return PAPER_K if n_features == PAPER_N else max(1, round(n_features * PAPER_K / PAPER_N))


def _rf(seed: int) -> RandomForestClassifier:
    return RandomForestClassifier(
        n_estimators=130, min_samples_leaf=2, max_features="sqrt", n_jobs=-1, random_state=seed
    )


def _blocked(y: np.ndarray, cells: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    gss = GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=seed)
    tr, te = next(gss.split(np.zeros(len(y)), y, groups=cells))
    return tr, te


@dataclass
class Importance:
    """Importance of each feature: ``scores`` (F,) mean normalised importance over seeds,
    ``per_seed`` (S, F), ``names`` (F,) in spec order, ``method`` and the ``seeds``.
    """

    names: list[str]
    scores: np.ndarray
    per_seed: np.ndarray
    method: str
    seeds: list[int]

    def ranking(self) -> list[str]:
        """Feature names by decreasing mean importance (ties by spec order)."""
        order = sorted(range(len(self.names)), key=lambda i: (-self.scores[i], i))
        return [self.names[i] for i in order]

    def stability(self, k: int) -> dict[str, float]:
        """How stable the top-k set is across seeds: mean pairwise Jaccard index of the
        per-seed top-k sets, and the share of the final top-k chosen by every seed.
        """
        tops = [set(np.argsort(-s, kind="stable")[:k].tolist()) for s in self.per_seed]
        pairs = [len(a & b) / len(a | b) for i, a in enumerate(tops) for b in tops[i + 1 :]]
        final = {self.names.index(n) for n in self.ranking()[:k]}
        always = final.intersection(*tops) if tops else set()
        return {
            "jaccard_mean": float(np.mean(pairs)) if pairs else 1.0,
            "share_in_every_seed": len(always) / max(len(final), 1),
        }


def rf_importance(
    x: np.ndarray,
    y: np.ndarray,
    cells: np.ndarray,
    names: list[str],
    method: Method = "mdi",
    seeds: tuple[int, ...] = (0, 1, 2),
    on_seed: Callable[[int], None] | None = None,
) -> Importance:
    """RF importance of each feature, averaged over seeds.

    Args:
        x: float32 (N, F) features in the spec's stored units; y: int (N,) classes;
        cells: (N,) EEA 100 km cell codes (the permutation hold-out is whole cells).
        names: the F feature names.
        method: ``mdi`` or ``permutation``.
        seeds: RF (and hold-out) seeds.
        on_seed: progress callback.

    Raises:
        SchemaError: shapes disagree or fewer than 2 classes.
    """
    if x.shape[1] != len(names) or len(x) != len(y):
        raise SchemaError(
            f"{x.shape} features for {len(names)} names and {len(y)} labels", "Pass the arrays of one table"
        )
    if len(np.unique(y)) < 2:
        raise SchemaError("fewer than 2 classes in the table", "Use a labelled table")
    per_seed = []
    for seed in seeds:
        if method == "mdi":
            imp = _rf(seed).fit(x, y).feature_importances_
        else:
            tr, te = _blocked(y, cells, seed)
            rf = _rf(seed).fit(x[tr], y[tr])
            r = permutation_importance(
                rf,
                x[te],
                y[te],
                n_repeats=3,
                random_state=seed,
                n_jobs=1,
                scoring=lambda m, a, b: f1_score(b, m.predict(a), average="weighted"),
            )
            imp = np.clip(r.importances_mean, 0, None)
        tot = imp.sum()
        per_seed.append(imp / tot if tot > 0 else np.full(len(names), 1 / len(names)))
        if on_seed:
            on_seed(seed)
    ps = np.asarray(per_seed)
    return Importance(list(names), ps.mean(0), ps, method, list(seeds))


def select_top_k(spec: FeatureSpec, imp: Importance, k: int) -> FeatureSelection:
    """The top-k features as a FeatureSelection (ordered by importance, scores = mean
    normalised importance, method ``rf-<method>``, seed = first seed, stability in the note).

    Raises:
        SchemaError: k outside 1 … F.
    """
    if not 1 <= k <= len(imp.names):
        raise SchemaError(
            f"k = {k} but the table has {len(imp.names)} features", f"Give `k` between 1 and {len(imp.names)}"
        )
    top = imp.ranking()[:k]
    added = [n for f in top for n in spec.derived_inputs(spec.feature(f)) if n not in top]
    top += list(dict.fromkeys(added))  # a derived feature is computed from its inputs: keep them
    st = imp.stability(k)
    sel = FeatureSelection.of(
        spec,
        top,
        f"rf-{imp.method}",
        note=f"seeds {imp.seeds}; top-{k} Jaccard across seeds "
        f"{st['jaccard_mean']:.3f}, share chosen by every seed "
        f"{st['share_in_every_seed']:.3f}"
        + (f"; inputs of derived features added: {sorted(set(added))}" if added else ""),
    )
    return sel.with_scores(imp.seeds[0], {n: float(imp.scores[imp.names.index(n)]) for n in top})


def default_ks(n: int) -> list[int]:
    """The k values of :func:`accuracy_vs_k` for ``n`` features: about 8 from 5 to n on a
    geometric grid, always with n and :func:`default_k`.
    """
    grid = np.unique(np.round(np.geomspace(min(5, n), n, 8)).astype(int)).tolist()
    return sorted(set(grid) | {n, default_k(n)})


def accuracy_vs_k(
    x: np.ndarray,
    y: np.ndarray,
    cells: np.ndarray,
    names: list[str],
    method: Method = "mdi",
    ks: list[int] | None = None,
    seed: int = 0,
    on_k: Callable[[int, float], None] | None = None,
) -> pd.DataFrame:
    """Weighted F1 and accuracy of the paper's RF on the top-k features, for each k, on a
    spatially blocked 75/25 split (whole EEA 100 km cells held out).

    The ranking is fitted on the split's training rows only (one RF seed), never on the rows
    the curve is scored on; it may therefore differ slightly from the ranking of the selection
    itself, which uses every row.

    Args:
        x: float32 (N, F); y: int (N,); cells: (N,) EEA 100 km cell codes; names: the F names.
        method: the importance method of the ranking.
        ks: the k values (default: about 8 values from 5 to F, always including F and the
            default k).

    Returns:
        Columns ``k, weighted_f1, accuracy``.
    """
    n = len(names)
    if ks is None:
        ks = default_ks(n)
    tr, te = _blocked(y, cells, seed)
    imp = rf_importance(x[tr], y[tr], cells[tr], names, method, (seed,))
    rank = [names.index(f) for f in imp.ranking()]
    rows = []
    for k in ks:
        cols = rank[:k]
        p = _rf(seed).fit(x[tr][:, cols], y[tr]).predict(x[te][:, cols])
        f1 = float(f1_score(y[te], p, average="weighted"))
        rows.append({"k": k, "weighted_f1": f1, "accuracy": float((p == y[te]).mean())})
        if on_k:
            on_k(k, f1)
    return pd.DataFrame(rows)


def curve_png(curve: pd.DataFrame, dest: str, title: str = "", k_marked: int | None = None) -> None:
    """Plot weighted F1 and accuracy (%) against k; mark the chosen k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(curve["k"], curve["weighted_f1"] * 100, "o-", label="weighted F1")
    ax.plot(curve["k"], curve["accuracy"] * 100, "s--", label="accuracy")
    if k_marked is not None:
        ax.axvline(k_marked, color="grey", lw=0.8, ls=":", label=f"k = {k_marked}")
    ax.set_xlabel("k (top features by RF importance)")
    ax.set_ylabel("% on blocked hold-out (EEA 100 km cells)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
