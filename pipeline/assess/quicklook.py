"""A PNG quicklook of a class map beside its reference and its confidence, for people to look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from pipeline.assess.compare import align_reference
from pipeline.core.atomic import atomic_path
from pipeline.core.legend import Crosswalk, Legend


def quicklook(
    class_cog: Path,
    confidence_cog: Path,
    reference: Path | None,
    crosswalk: Crosswalk | None,
    legend: Legend,
    dest: Path,
    title: str = "",
) -> Path:
    """Write a PNG with the class map, the reference crosswalked to the legend (when given), and
    the confidence (0–100 %), all on the class map's grid (EPSG:3035, 10 m).

    Args:
        class_cog: uint8 class COG (nodata 255).
        confidence_cog: uint8 confidence COG (0–100, nodata 255).
        reference: a reference raster in any CRS, or None.
        crosswalk: reference codes → legend ids (needed with ``reference``).
        legend: the map legend (colours and names).
        dest: output PNG path (written atomically).
        title: figure title.

    Returns:
        ``dest``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    with rasterio.open(class_cog) as s:
        cls = s.read(1).astype(float)
        extent = (s.bounds.left, s.bounds.right, s.bounds.bottom, s.bounds.top)
    with rasterio.open(confidence_cog) as s:
        conf = s.read(1).astype(float)
    cls[cls == 255] = np.nan
    conf[conf == 255] = np.nan
    panels: list[tuple[str, np.ndarray]] = [("map", cls)]
    if reference is not None and crosswalk is not None:
        codes, _ = align_reference(reference, class_cog)
        ids, _ = crosswalk.apply(np.nan_to_num(codes, nan=-9999).astype(np.int64))
        panels.append(("reference", np.where(ids >= 0, ids, np.nan)))
    cmap = ListedColormap([c.colour for c in legend.classes])
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.2 * (len(panels) + 1) + 1.5, 4.6))
    for ax, (name, arr) in zip(axes, panels, strict=False):
        ax.imshow(arr, cmap=cmap, vmin=-0.5, vmax=len(legend) - 0.5, extent=extent, interpolation="nearest")
        ax.set_title(name)
    im = axes[-1].imshow(conf, cmap="viridis", vmin=0, vmax=100, extent=extent, interpolation="nearest")
    axes[-1].set_title("confidence (%)")
    fig.colorbar(im, ax=axes[-1], fraction=0.046)
    for ax in axes:
        ax.set_xlabel("x (m, EPSG:3035)")
        ax.tick_params(labelsize=6)
        ax.ticklabel_format(useOffset=False, style="plain")
    present = {int(v) for p in panels for v in np.unique(p[1][np.isfinite(p[1])])}
    handles = [Patch(color=c.colour, label=c.name) for c in legend.classes if c.id in present]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(dest)
