"""Map-versus-reference agreement on the map's pixel grid.

The comparison reads window by window (:func:`pipeline.assess.compare.compare`), so the
reference may be pan-European and the map a VRT mosaic of many tiles. The reference raster is
reprojected onto the class map's grid with GDAL's warper: **mode** when
the reference is finer than the map (e.g. 2 m → 10 m), **nearest** otherwise; the method is
recorded. Reference codes are crosswalked to Level-1 (``pipeline/legends/*.csv``). Pixels that
are nodata on either side are left out and counted.

The confusion matrix has rows = map class and columns = reference class (Olofsson et al.
2014 convention). User's accuracy = diagonal / row total (map), producer's accuracy =
diagonal / column total (reference), F1 their harmonic mean; overall accuracy = trace / total.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.assess.compare import align_reference, compare, summary
from pipeline.core.legend import Crosswalk, Legend

__all__ = ["agreement", "align_reference"]


def agreement(
    map_path: Path,
    reference: Path,
    crosswalk: Crosswalk,
    legend: Legend,
    on_window: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Agreement of a class COG with a reference raster (:func:`pipeline.assess.compare.compare`).

    Args:
        map_path: class COG (uint8 Level-1 ids, nodata 255), projected CRS in metres (EPSG:3035).
        reference: reference raster in any CRS.
        crosswalk: reference codes → Level-1 ids.
        legend: the map's legend (Level-1).
        on_window: progress, called with (windows done, windows in all).

    Returns:
        A JSON-able dict with ``overall_accuracy``, ``per_class`` (name → user's, producer's,
        F1, map and reference pixel counts), ``confusion`` (rows = map, cols = reference, pixel
        counts), ``n_pixels``, ``excluded`` counts, ``resampling`` and the crosswalk report.

    Raises:
        RasterError: unreadable rasters, no CRS/transform, no overlap, or reference codes
            missing from the crosswalk (listed).
    """
    c = compare(map_path, reference, crosswalk, legend, on_window=on_window)
    s = summary(c, legend)
    return {
        "overall_accuracy": s["overall_agreement"],
        "per_class": s["per_class"],
        "confusion": {
            "rows": "map",
            "columns": "reference",
            "classes": legend.names,
            "matrix": np.asarray(c.confusion).tolist(),
        },
        "n_pixels": s["n_pixels"],
        "excluded": {
            "map_nodata": s["excluded"]["map_nodata"],
            "reference_nodata_or_unmapped": s["excluded"]["reference_nodata_or_dropped"],
        },
        "resampling": c.resampling,
        "reference": str(reference),
        "crosswalk": c.crosswalk_report,
    }
