"""EEA biogeographical region of a point, from the EEA 10 km reference grid.

Source: ``eea_biogeo_regions/biogeoregions10km_cells.csv.gz`` (Habitats Directive Art. 17
10 km grid; SOURCES.md §3), one row per (cell, region). Cell codes are
``10kmE{x // 10000}N{y // 10000}`` with x, y in EPSG:3035 metres.

Border rule. A cell that touches several regions lists each of them. Such a point gets
the region that holds the most of the 3 × 3 block of 10 km cells centred on its cell
(each neighbouring cell votes once for each of its regions); ties go to the region that
comes first in :data:`REGIONS` (the paper's order). Regions outside the paper's eight
(Arctic, Anatolian, Macaronesia, OUT) never win against one of the eight; a point whose
cell has none of the eight gets no region and is reported.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.config import data_dir
from pipeline.core.eea import cell_index
from pipeline.core.errors import SchemaError

REGIONS: tuple[str, ...] = ("Alpine", "Atlantic", "BlackSea", "Boreal", "Continental",
                            "Mediterranean", "Pannonian", "Steppic")
"""The paper's 8 EEA biogeographical regions, in the paper's order (index = region id)."""

CODE_TO_REGION = {"ALP": "Alpine", "ATL": "Atlantic", "BLS": "BlackSea", "BOR": "Boreal",
                  "CON": "Continental", "MED": "Mediterranean", "PAN": "Pannonian",
                  "STE": "Steppic"}
CELLS_FILE = Path("eea_biogeo_regions") / "biogeoregions10km_cells.csv.gz"


@cache
def _cell_regions(path: Path) -> dict[tuple[int, int], frozenset[str]]:
    df = pd.read_csv(path, dtype=str)
    for col in ("region", "CELLCODE"):
        if col not in df.columns:
            raise SchemaError(f"column {col!r} is missing", "Use the EEA 10 km region table",
                              path=path)
    xy = df["CELLCODE"].str.extract(r"10kmE(\d+)N(\d+)").astype(int)
    out: dict[tuple[int, int], set[str]] = {}
    for e, n, r in zip(xy[0].to_numpy(), xy[1].to_numpy(), df["region"].to_numpy(), strict=True):
        out.setdefault((int(e), int(n)), set()).add(str(r))
    return {k: frozenset(v) for k, v in out.items()}


def assign_bioregion(x_3035_m: np.ndarray, y_3035_m: np.ndarray,
                     cells_csv: Path | None = None) -> tuple[np.ndarray, Counter[str]]:
    """Assign each point one of the 8 regions, applying the documented border rule.

    Args:
        x_3035_m, y_3035_m: float or int arrays of shape (N,), EPSG:3035 easting/northing in m.
        cells_csv: the 10 km table; default ``$EULC_DATA/eea_biogeo_regions/...csv.gz``.

    Returns:
        ``(regions, report)``: object array (N,) of region names or None, and a Counter with
        ``border_cells`` (points resolved by the rule) and ``no_region`` (points left without).

    Raises:
        DataDirError: the default table is not found through ``EULC_DATA``.
    """
    path = cells_csv or data_dir((str(CELLS_FILE),)) / CELLS_FILE
    cells = _cell_regions(Path(path))
    ex = cell_index(x_3035_m, 10_000)
    ny = cell_index(y_3035_m, 10_000)
    out = np.empty(len(ex), dtype=object)
    report: Counter[str] = Counter()
    resolved: dict[tuple[int, int], str | None] = {}
    for i, key in enumerate(zip(ex.tolist(), ny.tolist(), strict=True)):
        if key not in resolved:
            own = [CODE_TO_REGION[c] for c in cells.get(key, ()) if c in CODE_TO_REGION]
            if len(own) <= 1:
                resolved[key] = own[0] if own else None
            else:
                votes: Counter[str] = Counter()
                for dx in (-1, 0, 1):
                    for dy in (-1, 0, 1):
                        for c in cells.get((key[0] + dx, key[1] + dy), ()):
                            if CODE_TO_REGION.get(c) in own:
                                votes[CODE_TO_REGION[c]] += 1
                best = max(votes.values())
                resolved[key] = next(r for r in REGIONS if votes.get(r) == best)
        r = resolved[key]
        out[i] = r
        if r is None:
            report["no_region"] += 1
        elif sum(c in CODE_TO_REGION for c in cells.get(key, ())) > 1:
            report["border_cells"] += 1
    return out, report
