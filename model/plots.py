"""Figures for evaluation reports (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.atomic import atomic_path


def confusion_png(cm: np.ndarray, class_names: list[str], dest: Path, title: str = "") -> Path:
    """A confusion-matrix heat map, rows = map (predicted), columns = reference (as everywhere in
    eulc, Olofsson et al. 2014), cells = column share (producer's view) with the counts printed.

    Args:
        cm: int (C, C) counts, rows map (predicted), columns reference.
        class_names: C names in id order.
        dest: PNG path (written atomically).
        title: figure title.

    Returns:
        ``dest``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    share = cm / np.maximum(cm.sum(0, keepdims=True), 1)
    n = len(class_names)
    size = max(5.0, 0.45 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("reference")
    ax.set_ylabel("map (predicted)")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{cm[i, j]}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if share[i, j] > 0.5 else "black",
                    )
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the reference class (column)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return dest
