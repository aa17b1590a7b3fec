"""Build the small reference tables eulc ships in its package (``pipeline/reference/``), so that
an installed eulc assigns EEA biogeographical regions without the shared data (issue #27).

``biogeoregions_10km.tif``: the EEA 10 km table of biogeographical regions
(``eea_biogeo_regions/biogeoregions10km_cells.csv.gz``, the shared data's SOURCES.md §3: 259,033
(cell, region) rows) as one uint16 raster on the EEA 10 km grid (EPSG:3035): each pixel is the
cell ``10kmE{col + x0}N{y0 - row - 1}`` and holds the bitwise OR of ``1 << i`` over the cell's
regions, ``i`` their position in :data:`pipeline.core.bioregion.BITS` (0 = a cell not in the
table). DEFLATE with a horizontal predictor: about 30 KB instead of 0.6 MB, and the same
(cell → regions) table exactly (``tests/test_bioregion.py`` compares it with the CSV).

Run from the repository root: ``python scripts/build_reference_tables.py`` (``--out PATH`` writes
elsewhere, e.g. to compare with the shipped file).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.transform import from_origin

from pipeline.core.bioregion import BITS, CELLS_FILE, SHIPPED_CELLS
from pipeline.core.config import data_dir


def main(out: Path = SHIPPED_CELLS) -> None:
    """Write :data:`pipeline.core.bioregion.SHIPPED_CELLS` (or ``out``) from the shared data's CSV.

    Raises:
        DataDirError: the shared data is not found.
        SystemExit: a CELLCODE or region code the table format does not know.
    """
    src = data_dir((str(CELLS_FILE),)) / CELLS_FILE
    df = pd.read_csv(src, dtype=str)
    xy = df["CELLCODE"].str.extract(r"^10kmE(\d+)N(\d+)$")
    if xy.isna().any().any():
        raise SystemExit(f"{src}: a CELLCODE is not 10kmE<e>N<n>")
    e, n = xy[0].astype(int).to_numpy(), xy[1].astype(int).to_numpy()
    bit = df["region"].map({c: 1 << i for i, c in enumerate(BITS)})
    if bit.isna().any():
        raise SystemExit(f"{src}: unknown region code(s) {sorted(set(df['region'][bit.isna()]))}")
    e0, n1 = int(e.min()), int(n.max()) + 1
    grid = np.zeros((n1 - int(n.min()), int(e.max()) - e0 + 1), np.uint16)
    np.bitwise_or.at(grid, (n1 - 1 - n, e - e0), bit.to_numpy(np.uint16))
    transform = from_origin(e0 * 10_000, n1 * 10_000, 10_000, 10_000)
    profile = {
        "driver": "GTiff",
        "width": grid.shape[1],
        "height": grid.shape[0],
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:3035",
        "transform": transform,
        "nodata": 0,
        "compress": "deflate",
        "predictor": 2,
        "zlevel": 9,
        "tiled": False,
    }
    out.parent.mkdir(exist_ok=True)
    with rasterio.open(out, "w", **profile) as dst:  # a file of the repository, rewritten on purpose
        dst.write(grid, 1)
        dst.update_tags(bits=",".join(BITS), source=f"{CELLS_FILE} (EEA Art. 17 biogeographical regions, 10 km)")
    print(
        f"{out}: {grid.shape[1]} x {grid.shape[0]} cells, {int((grid > 0).sum()):,} with a region, "
        f"{out.stat().st_size:,} bytes"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=SHIPPED_CELLS)
    main(ap.parse_args().out)
