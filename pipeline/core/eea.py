"""EEA reference-grid cell codes for EPSG:3035 coordinates.

LUCAS points sit exactly on 1 km nodes, so a point on a cell edge belongs to the cell whose
lower-left corner it is. Coordinates that went through a lon/lat round trip carry float error
(2,699,999.999 m for 2,700,000 m: LUCAS lon/lat have ~1e-8 degree precision, about 1 mm),
so they are rounded to the centimetre before the floor
division; otherwise such points land in the wrong cell.
"""

from __future__ import annotations

import numpy as np


def cell_index(coord_m: np.ndarray, size_m: int) -> np.ndarray:
    """Cell indices (int64, same shape) of EPSG:3035 coordinates in metres for cells of ``size_m``."""
    return np.floor(np.round(np.asarray(coord_m, dtype=np.float64), 2) / size_m).astype(np.int64)


def cell_code(e: int, n: int, size_m: int) -> str:
    """The EEA reference-grid code of cell (e, n) of ``size_m`` metres (EPSG:3035; e, n = the
    lower-left corner in metres divided by ``size_m``): ``10kmE432N321``; sizes below 1 km (or
    not whole km) in metres, ``250mE18698N10155`` (EEA reference grid naming, SOURCES.md).
    """
    unit = f"{size_m // 1000}km" if size_m % 1000 == 0 else f"{size_m}m"
    return f"{unit}E{e}N{n}"


def cell_codes(x_3035_m: np.ndarray, y_3035_m: np.ndarray, size_km: int) -> list[str]:
    """EEA codes such as ``100kmE43N32`` for points (x, y) in EPSG:3035 metres."""
    e = cell_index(x_3035_m, size_km * 1000)
    n = cell_index(y_3035_m, size_km * 1000)
    return [cell_code(a, b, size_km * 1000) for a, b in zip(e.tolist(), n.tolist(), strict=True)]


def lucas_theoretical_xy(point_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The LUCAS theoretical point of 8-digit POINT_IDs ``EEEENNNN``: x = EEEE km, y = NNNN km
    (EPSG:3035 metres; SOURCES.md conventions). Returns float64 arrays (N,).
    """
    pid = np.asarray(point_id, dtype=np.int64)
    return (pid // 10_000) * 1000.0, (pid % 10_000) * 1000.0


def snap_to_lucas_grid(
    point_id: np.ndarray, x_3035_m: np.ndarray, y_3035_m: np.ndarray, tol_m: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Replace coordinates within ``tol_m`` of their POINT_ID's theoretical point by that point.

    Published LUCAS lon/lat are rounded (up to ~7 cm off here), which puts points that lie
    exactly on a 10/100 km cell edge into the wrong cell. Cells and regions are therefore
    taken from the theoretical point whenever the given coordinates are that point; other
    points (e.g. Copernicus-module polygons' sampled locations) are kept as given.
    """
    tx, ty = lucas_theoretical_xy(point_id)
    x = np.asarray(x_3035_m, dtype=np.float64)
    y = np.asarray(y_3035_m, dtype=np.float64)
    same = (np.abs(x - tx) <= tol_m) & (np.abs(y - ty) <= tol_m)
    return np.where(same, tx, x), np.where(same, ty, y)
