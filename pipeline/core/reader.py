"""Windowed reading of a feature COG on the EEA grid, by band name, in row blocks.

A feature COG (``eulc features`` or a GEE tile export) is EPSG:3035 with 10 m pixels whose
edges fall on the grid (DESIGN.md §2). :class:`FeatureReader` opens one, checks the CRS and the
pixel grid, maps the bundle's feature names to band indices (band descriptions, the
``features`` tag, or a ``bands.json`` sidecar) and reads any grid window — part of the file,
all of it, or a tile that overhangs its edge (the overhang is nodata). Values come back in the
spec's stored units (physical × scale) whatever the file holds: int16 COGs with GDAL scale
metadata 1/scale, float32 COGs, GEE int16 exports. The band's nodata becomes NaN, and a band
``scale`` (tag or ``bands.json``) that disagrees with the spec's is an error: the model was
trained on the spec's stored units.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from pipeline.core.errors import RasterError
from pipeline.core.featurecog import band_names, sidecar
from pipeline.core.grid import EEA_10M, Grid, GridWindow


@dataclass(frozen=True)
class Block:
    """Rows ``row0 : row0 + values.shape[1]`` of a window: features float32 (F, h, W), NaN =
    nodata, in the order asked for.
    """

    row0: int
    values: np.ndarray


class FeatureReader:
    """An open feature COG, read by name in grid windows.

    Args:
        path: the feature COG (or VRT) in EPSG:3035 on the 10 m grid.
        names: the features to read, in the model's order.
        expected_scales: optional ``{feature: scale}`` from the spec, checked against the
            band tag ``scale`` where the file has one, else the ``scale`` list of its
            ``bands.json`` sidecar (GEE exports).
        grid: the grid the file must lie on.
        threads: GDAL decoding threads (``NUM_THREADS`` open option; 1 inside single-threaded
            dask workers, the core count in a process of its own).

    Raises:
        RasterError: unreadable/corrupt file, a CRS other than the grid's, pixels off the grid,
            unnamed bands, a missing band, or a band stored at another scale (each message names
            the file and the band).
    """

    def __init__(
        self,
        path: Path,
        names: list[str],
        expected_scales: Mapping[str, float] | None = None,
        grid: Grid = EEA_10M,
        threads: int = 1,
    ) -> None:
        self.path = Path(path)
        self.names = list(names)
        self.grid = grid
        try:
            self._src = rasterio.open(self.path, NUM_THREADS=str(max(1, threads)))
        except RasterioIOError as e:
            raise RasterError(
                f"cannot be read, it may be corrupt or truncated ({e})",
                "Re-create it with `eulc features` or re-export it",
                path=self.path,
            ) from None
        try:
            self._check_grid()
            desc = band_names(self._src, self.path)
            missing = [n for n in self.names if n not in desc]
            if missing:
                raise RasterError(
                    f"band(s) {missing} are missing",
                    "Compute the features the model was trained on (the file has "
                    f"{desc[:8]}{'...' if len(desc) > 8 else ''})",
                    path=self.path,
                )
            self._index = [desc.index(n) + 1 for n in self.names]
            self._scale, self._offset = self._to_stored()
            self._check_scales(expected_scales or {})
        except BaseException:
            self._src.close()
            raise

    def _check_grid(self) -> None:
        src = self._src
        if src.crs is None:
            raise RasterError("has no CRS", f"Write feature COGs in the grid CRS {self.grid.crs}", path=self.path)
        if src.crs != rasterio.crs.CRS.from_user_input(self.grid.crs):
            raise RasterError(
                f"is in {src.crs}, not the grid CRS {self.grid.crs}",
                "Compute or export the features on the EEA grid (eulc features / eulc gee "
                "export-tiles), or warp with `gdalwarp -t_srs EPSG:3035 -tr 10 10 -tap`",
                path=self.path,
            )
        t: Affine = src.transform
        r = self.grid.res_m
        off_x = (t.c - self.grid.origin_x_m) / r
        off_y = (t.f - self.grid.origin_y_m) / r
        if not (
            abs(t.a - r) < 1e-6
            and abs(t.e + r) < 1e-6
            and t.b == 0
            and t.d == 0
            and abs(off_x - round(off_x)) < 1e-6
            and abs(off_y - round(off_y)) < 1e-6
        ):
            raise RasterError(
                f"its pixels ({t.a:g} × {-t.e:g} m at {t.c:g}, {t.f:g}) are not on the {r:g} m grid",
                "Warp it with `gdalwarp -tr 10 10 -tap`",
                path=self.path,
            )

    def _to_stored(self) -> tuple[np.ndarray, np.ndarray]:
        """Per band (factor, offset) turning raw values into stored units (physical × spec scale).

        GDAL scale/offset say physical = raw × s + o. An eulc int16 COG stores physical × S with
        s = 1/S (band tag ``scale`` = S), so raw is already stored: factor 1. A file without GDAL
        scaling (float32 COGs, GEE exports) also holds stored values. A third-party file with GDAL
        scaling and no eulc scale is taken as stored after GDAL's scaling (raw × s + o).
        """
        factor, offset = [], []
        for i in self._index:
            s, o = float(self._src.scales[i - 1]), float(self._src.offsets[i - 1])
            tag = self._src.tags(i).get("scale")
            if s == 1.0 and o == 0.0:
                f, off = 1.0, 0.0
            elif tag is not None:
                spec_scale = float(tag)
                f, off = s * spec_scale, o * spec_scale
                if abs(f - 1.0) < 1e-6 and off == 0.0:
                    f = 1.0
            else:
                f, off = s, o
            factor.append(f)
            offset.append(off)
        return np.array(factor, np.float32), np.array(offset, np.float32)

    def _check_scales(self, expected: Mapping[str, float]) -> None:
        side = sidecar(self.path) if expected else None
        side_scales = side[1].get("scale", []) if side else []
        for name, i in zip(self.names, self._index, strict=True):
            tag = self._src.tags(i).get("scale")
            if tag is None and i - 1 < len(side_scales):  # a GEE export: scales in bands.json
                tag = side_scales[i - 1]
            if tag is None or name not in expected:
                continue
            try:
                stored = float(tag)
            except (TypeError, ValueError):
                continue
            if not np.isclose(stored, expected[name]):
                raise RasterError(
                    f"band {name!r} is stored at scale {stored:g} but the spec says {expected[name]:g}",
                    "Recompute the features with the model's spec",
                    path=self.path,
                )

    def __enter__(self) -> FeatureReader:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._src.close()

    @property
    def tags(self) -> dict[str, str]:
        """The file's dataset tags (spec, spec_hash, year, ...); for a file without them (a GEE
        export) the ``spec``, ``spec_hash`` and ``year`` of its ``bands.json`` sidecar.
        """
        tags = dict(self._src.tags())
        side = sidecar(self.path) if "year" not in tags else None
        if side:
            tags.update({k: str(side[1][k]) for k in ("spec", "spec_hash", "year") if k in side[1] and k not in tags})
        return tags

    @property
    def window(self) -> GridWindow:
        """The whole file as a grid window."""
        return GridWindow(self.grid, self._src.transform, self._src.height, self._src.width)

    @property
    def block_rows(self) -> int:
        """The file's internal block height (rows read together)."""
        return int(self._src.block_shapes[0][0])

    def blocks(self, window: GridWindow, rows: int | None = None) -> Iterator[Block]:
        """Read ``window`` in row blocks of ``rows`` (default: a multiple of the file's block
        height near 256 rows), each float32 (F, rows, width); pixels outside the file are NaN.

        Raises:
            RasterError: a read error (truncated data) — the message names the file.
        """
        r = self.grid.res_m
        t = self._src.transform
        col0 = int(round((window.transform.c - t.c) / r))
        row_w0 = int(round((t.f - window.transform.f) / r))
        step = rows or max(self.block_rows, (256 // self.block_rows) * self.block_rows)
        for r0 in range(0, window.height, step):
            h = min(step, window.height - r0)
            yield Block(r0, self._read(row_w0 + r0, col0, h, window.width))

    def _read(self, row: int, col: int, h: int, w: int) -> np.ndarray:
        r_lo, r_hi = max(row, 0), min(row + h, self._src.height)
        c_lo, c_hi = max(col, 0), min(col + w, self._src.width)
        inside = (r_lo, r_hi, c_lo, c_hi) == (row, row + h, col, col + w)
        # a window inside the file (the usual case) is decoded straight into the output array,
        # pixel-major in memory ((h, w, F) seen as (F, h, w)): a pixel's features are adjacent,
        # which is the row layout the model reads, so no transpose is ever made
        out = (
            np.empty((h, w, len(self.names)), np.float32).transpose(2, 0, 1)
            if inside
            else np.full((len(self.names), h, w), np.nan, np.float32)
        )
        if r_lo >= r_hi or c_lo >= c_hi:
            return out
        try:
            win = Window(c_lo, r_lo, c_hi - c_lo, r_hi - r_lo)
            if inside:
                vals = self._src.read(self._index, window=win, out=out)
            else:
                vals = self._src.read(self._index, window=win, out_dtype=np.float32)
        except RasterioIOError as e:
            raise RasterError(
                f"cannot be read, it may be corrupt or truncated ({e})",
                "Re-create it with `eulc features` or re-export it",
                path=self.path,
            ) from None
        nod = self._src.nodata
        if nod is not None and not np.isnan(nod):
            vals[vals == np.float32(nod)] = np.nan
        if (self._scale != 1).any() or (self._offset != 0).any():
            vals *= self._scale[:, None, None]
            vals += self._offset[:, None, None]
        if not inside:
            out[:, r_lo - row : r_hi - row, c_lo - col : c_hi - col] = vals
        return out

    def read(self, window: GridWindow | None = None) -> np.ndarray:
        """The whole ``window`` (default: the file) as float32 (F, H, W), NaN = nodata."""
        win = window or self.window
        return np.concatenate([b.values for b in self.blocks(win)], axis=1)


def read_feature_cog(path: Path, names: list[str]) -> tuple[np.ndarray, Affine, str, dict[str, str]]:
    """Read the bands ``names`` of a feature COG, in that order (the whole file).

    Args:
        path: the feature COG (EPSG:3035, 10 m grid).
        names: the feature names the model needs (its order is the output's).

    Returns:
        ``(values float32 (len(names), H, W) with NaN = nodata, transform, crs, tags)``.

    Raises:
        RasterError: unreadable/corrupt/truncated file, off-grid pixels, no band names, or a
            needed band missing (see :class:`pipeline.core.reader.FeatureReader`).
    """
    with FeatureReader(path, names) as r:
        return r.read(), r.window.transform, r.window.grid.crs, r.tags
