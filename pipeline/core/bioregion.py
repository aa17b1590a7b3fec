"""EEA biogeographical region of a point, from the EEA 10 km reference grid.

Source: ``eea_biogeo_regions/biogeoregions10km_cells.csv.gz`` (Habitats Directive Art. 17
10 km grid; SOURCES.md §3), one row per (cell, region). Cell codes are
``10kmE{x // 10000}N{y // 10000}`` with x, y in EPSG:3035 metres. eulc ships the same table as a
30 KB raster (``pipeline/reference/biogeoregions_10km.tif``, built by
``scripts/build_reference_tables.py``; ``pipeline/reference/SOURCES.md``), the default, so an
installed eulc needs no shared data for it; a CSV of the same columns can still be given.

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

from pipeline.core.eea import cell_index
from pipeline.core.errors import SchemaError

REGIONS: tuple[str, ...] = (
    "Alpine",
    "Atlantic",
    "BlackSea",
    "Boreal",
    "Continental",
    "Mediterranean",
    "Pannonian",
    "Steppic",
)
"""The paper's 8 EEA biogeographical regions, in the paper's order (index = region id)."""

CODE_TO_REGION = {
    "ALP": "Alpine",
    "ATL": "Atlantic",
    "BLS": "BlackSea",
    "BOR": "Boreal",
    "CON": "Continental",
    "MED": "Mediterranean",
    "PAN": "Pannonian",
    "STE": "Steppic",
}
CELLS_FILE = Path("eea_biogeo_regions") / "biogeoregions10km_cells.csv.gz"
"""The EEA 10 km region table in the shared data (its SOURCES.md §3)."""
SHIPPED_CELLS = Path(__file__).resolve().parents[1] / "reference" / "biogeoregions_10km.tif"
"""The same table shipped in the package: one uint16 pixel per EEA 10 km cell (EPSG:3035), the
OR of ``1 << i`` over the cell's regions with ``i`` their index in :data:`BITS`; 0 = no row."""
BITS: tuple[str, ...] = ("ALP", "ATL", "BLS", "BOR", "CON", "MED", "PAN", "STE", "ARC", "ANA", "MAC", "OUT")
"""Region codes of the EEA table, in bit order of :data:`SHIPPED_CELLS` (the shared bitmask's order)."""


def _shipped_cells(path: Path) -> dict[tuple[int, int], frozenset[str]]:
    import rasterio

    with rasterio.open(path) as src:
        grid, t = src.read(1), src.transform
        bits = src.tags().get("bits", "").split(",")
    if tuple(bits) != BITS:
        raise SchemaError(
            f"the tag 'bits' is {bits}, not {list(BITS)}",
            "Rebuild it with `python scripts/build_reference_tables.py`",
            path=path,
        )
    e0, n1 = round(t.c / 10_000), round(t.f / 10_000)
    rows, cols = np.nonzero(grid)
    sets = {int(v): frozenset(c for i, c in enumerate(BITS) if int(v) >> i & 1) for v in np.unique(grid[rows, cols])}
    return {(e0 + int(c), n1 - 1 - int(r)): sets[int(grid[r, c])] for r, c in zip(rows, cols, strict=True)}


@cache
def _cell_regions(path: Path) -> dict[tuple[int, int], frozenset[str]]:
    if path.suffix == ".tif":
        return _shipped_cells(path)
    df = pd.read_csv(path, dtype=str)
    for col in ("region", "CELLCODE"):
        if col not in df.columns:
            raise SchemaError(f"column {col!r} is missing", "Use the EEA 10 km region table", path=path)
    xy = df["CELLCODE"].str.extract(r"10kmE(\d+)N(\d+)").astype(int)
    out: dict[tuple[int, int], set[str]] = {}
    for e, n, r in zip(xy[0].to_numpy(), xy[1].to_numpy(), df["region"].to_numpy(), strict=True):
        out.setdefault((int(e), int(n)), set()).add(str(r))
    return {k: frozenset(v) for k, v in out.items()}


def assign_bioregion(
    x_3035_m: np.ndarray, y_3035_m: np.ndarray, cells_csv: Path | None = None
) -> tuple[np.ndarray, Counter[str]]:
    """Assign each point one of the 8 regions, applying the documented border rule.

    Args:
        x_3035_m, y_3035_m: float or int arrays of shape (N,), EPSG:3035 easting/northing in m.
        cells_csv: the 10 km table (a CSV with ``region`` and ``CELLCODE``); default the table
            shipped in the package (:data:`SHIPPED_CELLS`, the same rows as the shared data's).

    Returns:
        ``(regions, report)``: object array (N,) of region names or None, and a Counter with
        ``border_cells`` (points resolved by the rule) and ``no_region`` (points left without).

    Raises:
        SchemaError: ``cells_csv`` lacks a column.
    """
    path = cells_csv or SHIPPED_CELLS
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
