"""The report's figures (matplotlib, Agg): quicklooks with legend and scale bar, the confusion
heatmap, per-class accuracy bars, the area estimates with 95 % error bars, block agreement, and
the change chart. Each function returns PNG bytes (embedded in the HTML report).
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar  # noqa: E402

from pipeline.assess.compare import DISAGREE_RGB  # noqa: E402
from pipeline.core.legend import Legend  # noqa: E402
from pipeline.core.ood_codes import OOD_CODES, OOD_COLORS  # noqa: E402

DPI = 110
DISAGREE = "#{:02x}{:02x}{:02x}".format(*DISAGREE_RGB)
"""Colour of disagreeing pixels: black, which no Level-1 or Level-2 class uses (Artificial
land is red), as in ``disagreement.tif``'s colour table."""


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _scale_bar(ax: Any, width_m: float) -> None:
    nice = [10, 20, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000]
    length = max([v for v in nice if v <= width_m / 4] or [nice[0]])
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    ax.add_artist(
        AnchoredSizeBar(
            ax.transData,
            length,
            label,
            "lower left",
            pad=0.4,
            color="black",
            frameon=True,
            size_vertical=width_m / 150,
            fontproperties={"size": 7},
        )
    )


def quicklooks(
    map_ids: np.ndarray, ref_ids: np.ndarray, extent: tuple[float, float, float, float], legend: Legend, crs: str
) -> bytes:
    """Map, reference (crosswalked) and disagreement side by side, with a legend and scale bar.

    Args:
        map_ids: uint8 (H, W) map classes (255 = nodata).
        ref_ids: int (H, W) reference classes (< 0 = nodata).
        extent: (left, right, bottom, top) in ``crs`` metres.
    """
    k = len(legend)
    cmap = ListedColormap([c.colour for c in legend.classes])
    m = np.where(map_ids < k, map_ids, np.nan).astype(float)
    r = np.where(ref_ids >= 0, ref_ids, np.nan).astype(float)
    dis = np.where(np.isfinite(m) & np.isfinite(r), (m != r).astype(float), np.nan)
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.9))
    for ax, arr, title in ((axes[0], m, "map"), (axes[1], r, "reference (crosswalked to Level-1)")):
        ax.imshow(arr, cmap=cmap, vmin=-0.5, vmax=k - 0.5, extent=extent, interpolation="nearest")
        ax.set_title(title, fontsize=10)
    axes[2].imshow(
        dis, cmap=ListedColormap(["#dddddd", DISAGREE]), vmin=0, vmax=1, extent=extent, interpolation="nearest"
    )
    axes[2].set_title(f"disagreement ({np.nanmean(dis) * 100:.1f} % of compared pixels)", fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        _scale_bar(ax, extent[1] - extent[0])
    present = {int(v) for a in (m, r) for v in np.unique(a[np.isfinite(a)])}
    handles = [Patch(color=c.colour, label=c.name) for c in legend.classes if c.id in present]
    handles += [Patch(color="#dddddd", label="agree"), Patch(color=DISAGREE, label="disagree")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8, frameon=False)
    fig.text(0.99, 0.01, crs, ha="right", fontsize=7, color="#555")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return _png(fig)


def ood_quicklook(
    map_ids: np.ndarray, ood_codes: np.ndarray, extent: tuple[float, float, float, float], legend: Legend, crs: str
) -> bytes:
    """The map beside its OOD layer (``eulc map --ood``), with both legends and a scale bar.

    Args:
        map_ids: uint8 (H, W) map classes (255 = nodata).
        ood_codes: uint8 (H, W) codes of :data:`pipeline.core.ood_codes.OOD_CODES` (255 = none).
        extent: (left, right, bottom, top) in ``crs`` metres.
    """
    k = len(legend)
    m = np.where(map_ids < k, map_ids, np.nan).astype(float)
    o = np.where(ood_codes < 4, ood_codes, np.nan).astype(float)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 5.1))
    axes[0].imshow(
        m,
        cmap=ListedColormap([c.colour for c in legend.classes]),
        vmin=-0.5,
        vmax=k - 0.5,
        extent=extent,
        interpolation="nearest",
    )
    axes[0].set_title("map", fontsize=10)
    colours = ["#{:02x}{:02x}{:02x}".format(*OOD_COLORS[c][:3]) for c in range(4)]
    axes[1].imshow(o, cmap=ListedColormap(colours), vmin=-0.5, vmax=3.5, extent=extent, interpolation="nearest")
    n = np.isfinite(o).sum()
    flagged = float((o > 0).sum() / n * 100) if n else 0.0
    axes[1].set_title(f"out of distribution ({flagged:.1f} % of mapped pixels flagged)", fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        _scale_bar(ax, extent[1] - extent[0])
    present = {int(v) for v in np.unique(m[np.isfinite(m)])}
    handles = [Patch(color=c.colour, label=c.name) for c in legend.classes if c.id in present]
    handles += [Patch(color=colours[c], label=f"{c}: {OOD_CODES[c]}") for c in range(4)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8, frameon=False)
    fig.text(0.99, 0.01, crs, ha="right", fontsize=7, color="#555")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return _png(fig)


def landscape_bars(hist: pd.DataFrame, max_tiles: int = 6) -> bytes:
    """Training vs tile landscape histograms (``tiles.mapping.landscapes.landscape_drift``'s
    first table: ``tile``, ``cluster``, ``train_share``, ``tile_share``): the training share as
    grey bars, the pooled tiles and up to ``max_tiles`` single tiles as markers.
    """
    k = int(hist["cluster"].max()) + 1
    train = hist[hist["tile"] == "all tiles"].sort_values("cluster")["train_share"].to_numpy()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * k + 2), 3.6))
    x = np.arange(k)
    ax.bar(x, train * 100, color="#c9ced6", label="training rows")
    tiles = [t for t in hist["tile"].unique() if t != "all tiles"]
    for t in tiles[:max_tiles] if len(tiles) > 1 else []:
        ax.plot(
            x, hist[hist["tile"] == t].sort_values("cluster")["tile_share"] * 100, "o", ms=3.5, alpha=0.7, label=str(t)
        )
    ax.plot(
        x,
        hist[hist["tile"] == "all tiles"].sort_values("cluster")["tile_share"] * 100,
        "D",
        color="#003399",
        ms=5,
        label="all tiles" if len(tiles) > 1 else str(tiles[0]) if tiles else "tiles",
    )
    ax.set_xticks(x)
    ax.set_xlabel("landscape cluster (K-Means on the S2 band medians of the training rows)")
    ax.set_ylabel("share (%)")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def confusion_heatmap(cm_ha: np.ndarray, names: list[str]) -> bytes:
    """Area-weighted confusion (ha), coloured by the share of each reference class (column)."""
    k = len(names)
    col = cm_ha.sum(0, keepdims=True)
    share = np.divide(cm_ha, col, out=np.zeros_like(cm_ha, dtype=float), where=col > 0)
    fig, ax = plt.subplots(figsize=(0.62 * k + 2.4, 0.52 * k + 1.8))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if cm_ha[i, j] > 0:
                ax.text(
                    j,
                    i,
                    f"{cm_ha[i, j]:,.1f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if share[i, j] > 0.6 else "black",
                )
    short = [n.split(" ")[0].split("/")[0] for n in names]
    ax.set_xticks(range(k), short, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(k), short, fontsize=8)
    ax.set_xlabel("reference")
    ax.set_ylabel("map")
    ax.set_title("confusion (ha); colour = share of the reference class", fontsize=9)
    return _png(fig)


def class_bars(per_class: dict[str, dict[str, Any]]) -> bytes:
    """User's accuracy, producer's accuracy and F1 per class (classes absent on both sides left out)."""
    names = [n for n, v in per_class.items() if v["map_pixels"] or v["reference_pixels"]]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 3.6))
    for off, key, lab, colour in (
        (-0.27, "users_accuracy", "user's", "#2b83ba"),
        (0.0, "producers_accuracy", "producer's", "#fdae61"),
        (0.27, "f1", "F1", "#5e3c99"),
    ):
        vals = [per_class[n][key] if per_class[n][key] is not None else 0 for n in names]
        ax.bar(x + off, vals, width=0.27, label=lab, color=colour)
    ax.set_xticks(x, [n.split(" ")[0].split("/")[0] for n in names], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("agreement")
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, 1.15), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def area_bars(names: list[str], mapped_ha: np.ndarray, est_ha: np.ndarray, ci_ha: np.ndarray) -> bytes:
    """Mapped area against the stratified estimate with its 95 % confidence interval; an estimate
    that is not estimable (NaN: a stratum without sample, Olofsson et al. 2014) is drawn as no bar
    with the words "not estimable", never as 0 ha.
    """
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 3.6))
    ax.bar(x - 0.2, mapped_ha, width=0.4, label="mapped (pixel count)", color="#bbbbbb")
    ok = np.isfinite(est_ha)
    ax.bar(
        x[ok] + 0.2,
        est_ha[ok],
        width=0.4,
        yerr=np.where(np.isfinite(ci_ha[ok]), ci_ha[ok], 0),
        capsize=3,
        label="estimated from the reference sample ± 95 % CI",
        color="#2b83ba",
    )
    for xi in x[~ok]:
        ax.text(xi + 0.2, 0, "not estimable", rotation=90, ha="center", va="bottom", fontsize=7, color="#b2182b")
    ax.set_xticks(x, [n.split(" ")[0].split("/")[0] for n in names], fontsize=8)
    ax.set_ylabel("area (ha)")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def block_map(
    blocks: pd.DataFrame, extent: tuple[float, float, float, float], block_m: float, max_cells: int = 800
) -> bytes:
    """Agreement per block as a raster (red = low), with the ten worst blocks numbered as in the
    report's hotspot table.

    Args:
        blocks: from :func:`pipeline.assess.compare.block_agreement` (``x_m``, ``y_m`` block
            centres, ``n_pixels``, ``n_agree``), worst first.
        extent: (left, right, bottom, top) of the map in its CRS (metres).
        block_m: the block side.
        max_cells: the longest side of the drawn raster; larger maps pool blocks into cells of
            several blocks (agreement = agreeing / compared pixels of the cell).
    """
    left, right, bottom, top = extent
    cell = block_m * max(1, int(np.ceil(max(right - left, top - bottom) / block_m / max_cells)))
    nc = max(1, int(np.ceil((right - left) / cell - 1e-9)))
    nr = max(1, int(np.ceil((top - bottom) / cell - 1e-9)))
    c = np.minimum(nc - 1, ((blocks["x_m"].to_numpy() - left) // cell).astype(np.int64))
    r = np.minimum(nr - 1, ((top - blocks["y_m"].to_numpy()) // cell).astype(np.int64))
    agree = np.zeros(nr * nc)
    n = np.zeros(nr * nc)
    np.add.at(agree, r * nc + c, blocks["n_agree"].to_numpy(float))
    np.add.at(n, r * nc + c, blocks["n_pixels"].to_numpy(float))
    img = np.divide(agree, n, out=np.full(nr * nc, np.nan), where=n > 0).reshape(nr, nc)
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    im = ax.imshow(
        img,
        cmap="RdYlGn",
        vmin=0,
        vmax=1,
        extent=(left, left + nc * cell, top - nr * cell, top),
        interpolation="nearest",
    )
    for i, b in enumerate(blocks.head(10).itertuples(), start=1):  # the hotspot table's ten
        ax.annotate(str(i), (b.x_m, b.y_m), ha="center", va="center", fontsize=9, weight="bold")
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_xticks([])
    ax.set_yticks([])
    _scale_bar(ax, right - left)
    fig.colorbar(im, ax=ax, fraction=0.046, label=f"agreement per {cell:g} m block")
    return _png(fig)


def change_bars(names: list[str], trans_ha: np.ndarray) -> bytes:
    """Gross gain, gross loss and net change per class from a transition matrix (ha)."""
    stay = np.diag(trans_ha)
    gain = trans_ha.sum(0) - stay
    loss = trans_ha.sum(1) - stay
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 3.6))
    ax.bar(x, gain, color="#1a9641", label="gain")
    ax.bar(x, -loss, color="#d7191c", label="loss")
    ax.scatter(x, gain - loss, color="black", zorder=3, label="net")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(x, [n.split(" ")[0].split("/")[0] for n in names], fontsize=8)
    ax.set_ylabel("ha")
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)
