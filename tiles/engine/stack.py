"""Local Sentinel stacks: a small YAML manifest of GeoTIFF/COG files → arrays on the grid.

A manifest lists files of two kinds:

- ``kind: bands``: one acquisition, one band per spectral band; the band names come from
  the GeoTIFF band descriptions (``B02`` or ``B2``) or from ``bands:``; ``time:`` gives the date.
- ``kind: timeseries``: one variable, one band per acquisition; the times come from the band
  descriptions (ISO 8601) or from ``times:``.

Sentinel-1 σ⁰ is linear (``VV``/``VH``); each acquisition's orbit pass (``orbit:`` on a
``bands`` item, ``orbits:`` per band on a ``timeseries`` item, ``ASCENDING``/``DESCENDING``)
is what features with an ``orbit`` filter on. Variables are spectral bands, a precomputed
  index named as in the spec (``ndvi``), or the mask layers ``CLP`` (cloud probability,
  percent), ``SCL`` (Sen2Cor scene classes) and ``VALID`` (1 = valid data).

``to_physical`` multiplies stored values into physical units: reflectance 0–1 for bands (so
1e-4 for L1C/L2A DN; the L2A harmonization offset is issue 7's), percent for CLP.

Every file is reprojected onto the EEA 10 m grid (EPSG:3035) by nearest neighbour (paper
§2.1.1: 20 m bands to 10 m by nearest neighbour): the source pixel under each target pixel's
centre, coordinates transformed exactly (:func:`pipeline.core.warp.nearest_on_grid`, the rule of
the STAC reader too), only the source window needed being decoded.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from rasterio.errors import RasterioIOError

from pipeline.core.config import data_dir, demo_data_dir
from pipeline.core.dates import utc_datetime64
from pipeline.core.errors import RasterError, SpecError
from pipeline.core.grid import EEA_10M, Grid, GridWindow, window_for_bounds
from pipeline.core.warp import nearest_on_grid

MASK_VARIABLES = ("CLP", "SCL", "VALID")


class StackItem(BaseModel):
    """One file of a stack manifest (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    kind: Literal["bands", "timeseries"]
    time: str | None = None
    bands: tuple[str, ...] | None = None
    variable: str | None = None
    times: tuple[str, ...] | None = None
    to_physical: float = 1.0
    nodata: float | None = None
    orbit: Literal["ASCENDING", "DESCENDING"] | None = None
    orbits: tuple[Literal["ASCENDING", "DESCENDING"], ...] | None = None


class StackManifest(BaseModel):
    """A stack manifest: sensor, processing level and its files.

    Attributes:
        name: a label for messages and metadata.
        sensor: the spec sensor key the stack feeds (``s2``).
        level: ``L1C`` or ``L2A``; recorded in the feature COG metadata.
        root: folder the item paths are relative to; ``${EULC_DATA}`` expands to the data dir,
            ``${EULC_DEMO_DATA}`` to the package's demo data (:func:`pipeline.core.config.demo_data_dir`).
        items: the files.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    sensor: str = "s2"
    level: str
    root: str = "."
    items: tuple[StackItem, ...]


COMMON_NAMES = {
    "coastal": "B1",
    "blue": "B2",
    "green": "B3",
    "red": "B4",
    "rededge1": "B5",
    "rededge2": "B6",
    "rededge3": "B7",
    "nir": "B8",
    "nir08": "B8A",
    "nir09": "B9",
    "cirrus": "B10",
    "swir16": "B11",
    "swir22": "B12",
    "scl": "SCL",
    "vv": "VV",
    "vh": "VH",
}
"""STAC common names / Earth Search asset keys → Sentinel-2 band names."""


def canonical_band(name: str) -> str:
    """``B02`` → ``B2``, ``B8A`` stays, STAC common names (``red``, ``nir``, ``scl``) → band
    names; anything else is returned stripped.
    """
    key = name.strip()
    if key.lower() in COMMON_NAMES:
        return COMMON_NAMES[key.lower()]
    m = re.fullmatch(r"B0*(\d+A?)", key.upper())
    return f"B{m.group(1)}" if m else key


def shipped_stacks() -> list[str]:
    """Names of the manifests in ``tiles/stacks``."""
    root = resources.files("tiles") / "stacks"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_manifest(name_or_path: str | Path) -> tuple[StackManifest, Path]:
    """Load a manifest by shipped name or path; return it and its resolved root folder.

    Raises:
        SpecError: unreadable YAML or an unknown key (the message names the file and key).
        DataDirError: ``${EULC_DATA}`` is used and the data directory is missing.
    """
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        if str(name_or_path) not in shipped_stacks():
            raise SpecError(
                f"no stack manifest called {name_or_path!r}",
                f"Use one of {shipped_stacks()} or a path to a .yaml manifest",
            )
        text = (resources.files("tiles") / "stacks" / f"{name_or_path}.yaml").read_text()
        base = Path.cwd()
    else:
        if not p.is_file():
            raise SpecError("stack manifest not found", "Give an existing .yaml path", path=p)
        text, base = p.read_text(encoding="utf-8"), p.parent
    try:
        man = StackManifest.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as e:
        raise SpecError(
            f"invalid stack manifest ({str(e).splitlines()[0]}: {str(e).splitlines()[1:3]})", "Fix the manifest", path=p
        ) from None
    root = man.root
    if "${EULC_DATA}" in root:
        root = root.replace("${EULC_DATA}", str(data_dir()))
    if "${EULC_DEMO_DATA}" in root:
        root = root.replace("${EULC_DEMO_DATA}", str(demo_data_dir()))
    root_path = Path(os.path.expandvars(root))
    return man, (root_path if root_path.is_absolute() else base / root_path)


@dataclass(frozen=True)
class Encoding:
    """How a variable held in its source's integer dtype decodes to physical float32 values, as
    the float32 loader computes them (the same float32 operations in the same order, so the
    values are bit for bit those of a float32 stack): ``v = float32(DN)``; NaN where
    ``DN == nodata``; ``v += offset[t]``; ``v *= scale``; NaN where ``v <= 0`` when ``positive``.

    A Sentinel-2 L2A band as distributed (uint16 DN, nodata 0, ``BOA_ADD_OFFSET`` −1000 from
    baseline 04.00, ``1e-4`` to reflectance: Sentinel-2 L2A Product Specification) takes 2
    bytes a pixel instead of 4, and a uint8 mask layer (``CLP``, ``SCL``) 1 (issue #28).

    Attributes:
        nodata: the stored value of nodata and of pixels outside the source.
        offset: float32 (T,) added to each acquisition's DN (0 when none).
        scale: float32 multiplier to physical units (1 for masks and stored indices).
        positive: whether values <= 0 after scaling are nodata (L2A reflectance, as GEE's
            ``COPERNICUS/S2_SR_HARMONIZED``).
    """

    nodata: int
    offset: np.ndarray
    scale: np.float32
    positive: bool = False

    def decode(self, stored: np.ndarray, index: np.ndarray) -> np.ndarray:
        """float32 (len(index), ...) physical values of the acquisitions ``index`` (int (T',))
        of ``stored`` (integer (T, ...)), NaN = nodata.
        """
        dn = stored[index]
        v = dn.astype(np.float32)
        v[dn == self.nodata] = np.nan
        v += self.offset[index].reshape((-1,) + (1,) * (v.ndim - 1))
        v *= self.scale
        if self.positive:
            v[v <= 0] = np.nan
        return v


@dataclass
class Stack:
    """A stack on a grid window.

    Attributes:
        window: the EPSG:3035 10 m grid window.
        variables: name → (times (T,) datetime64[ns], values (T, H, W)): float32 in physical
            units with NaN for nodata, or, for a variable in ``encodings``, as stored (integer
            DN); read them through :meth:`values`.
        level: processing level (``L1C``/``L2A``).
        sources: the files read.
        orbits: name → the orbit pass of each acquisition (str (T,), ``ASCENDING``,
            ``DESCENDING`` or ``""`` when unknown), for Sentinel-1 variables that have one.
        encodings: name → how that variable's stored integers decode (:class:`Encoding`).
    """

    window: GridWindow
    variables: dict[str, tuple[np.ndarray, np.ndarray]]
    level: str
    sources: list[str]
    orbits: dict[str, np.ndarray] = field(default_factory=dict)
    encodings: dict[str, Encoding] = field(default_factory=dict)

    def values(self, name: str, rows: tuple[int, int] | None = None, keep: np.ndarray | None = None) -> np.ndarray:
        """A variable's float32 (T', rows, W) physical values (NaN = nodata) on the window's rows
        ``rows`` (``(first, end)``, default all) for the acquisitions ``keep`` (bool (T,),
        default all). Read only: without an encoding, every acquisition kept, it is a view of
        the stored array.

        Raises:
            KeyError: ``name`` is not a variable of the stack.
        """
        stored = self.variables[name][1]
        if rows is not None:
            stored = stored[:, rows[0] : rows[1]]
        enc = self.encodings.get(name)
        if enc is not None:
            index = np.arange(len(stored)) if keep is None else np.flatnonzero(keep)
            return enc.decode(stored, index)
        return stored if keep is None or keep.all() else stored[keep]


def _open(path: Path) -> rasterio.DatasetReader:
    if not path.is_file():
        raise RasterError("file not found", "Check the manifest path", path=path)
    try:
        return rasterio.open(path)
    except RasterioIOError as e:
        raise RasterError(f"not a readable GeoTIFF ({e})", "Re-download or re-export the file", path=path) from None


def _times(labels: tuple[str, ...] | list[str], path: Path) -> np.ndarray:
    try:
        return np.array([utc_datetime64(label) for label in labels], dtype="datetime64[ns]")
    except (ValueError, TypeError) as e:
        raise RasterError(
            f"band descriptions are not ISO dates ({e})", "Set `times:` for this item in the manifest", path=path
        ) from None


def _read_on_grid(path: Path, window: GridWindow, nodata: float | None) -> np.ndarray:
    """Read all bands of ``path`` reprojected onto ``window``: float32 (B, H, W), NaN = nodata."""
    with _open(path) as src:  # one open: a clear message for a missing or unreadable file
        return nearest_on_grid(src, window.transform, window.grid.crs, window.shape, src_nodata=nodata)


def manifest_variables(manifest: StackManifest, root: Path) -> set[str]:
    """The canonical variable names a manifest's files carry (bands, timeseries variables and
    mask layers), without reading pixels.

    Raises:
        RasterError: a ``bands`` item's file is missing or unreadable.
    """
    out: set[str] = set()
    for item in manifest.items:
        if item.kind == "timeseries":
            out.add(canonical_band(item.variable or ""))
        elif item.bands:
            out |= {canonical_band(b) for b in item.bands}
        else:
            with _open(root / item.path) as src:
                out |= {canonical_band(d) for d in src.descriptions if d}
    return out


def manifest_window(manifest: StackManifest, root: Path, grid: Grid = EEA_10M) -> GridWindow:
    """The grid window covering the union of a manifest's files.

    Raises:
        RasterError: a file is missing or unreadable, has no CRS, or a CRS the grid cannot take.
    """
    lefts, bottoms, rights, tops = [], [], [], []
    for item in manifest.items:
        path = root / item.path
        with _open(path) as src:
            w = window_for_bounds(tuple(src.bounds), src.crs, grid, source=str(path))
        lefts.append(w.bounds[0])
        bottoms.append(w.bounds[1])  # noqa: E702
        rights.append(w.bounds[2])
        tops.append(w.bounds[3])  # noqa: E702
    return window_for_bounds((min(lefts), min(bottoms), max(rights), max(tops)), grid.crs, grid)


def load_stack(
    manifest: StackManifest,
    root: Path,
    grid: Grid = EEA_10M,
    variables: set[str] | None = None,
    window: GridWindow | None = None,
) -> Stack:
    """Read a stack onto the grid window covering the union of its files (or onto ``window``).

    Args:
        manifest: the manifest, from :func:`load_manifest`.
        root: the folder its item paths are relative to, from :func:`load_manifest`.
        grid: target grid (EEA 10 m).
        variables: only read these (band names canonical, e.g. ``B8``); None = all.
        window: read only this grid window (a block of a tile; outside the files = NaN).

    Raises:
        RasterError: a file is missing, corrupt or truncated, has no CRS, or its CRS cannot
            be transformed to the grid; a band count does not match ``bands``/``times``.
    """
    if not manifest.items:
        raise SpecError(f"stack manifest {manifest.name!r} lists no items", "Add files")
    if window is None:
        window = manifest_window(manifest, root, grid)
    acc: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for item in manifest.items:
        path = root / item.path
        with _open(path) as src:
            desc = [d or "" for d in src.descriptions]
            count = src.count
        if item.kind == "bands":
            names = [canonical_band(b) for b in (item.bands or desc)]
            if len(names) != count or not all(names):
                raise RasterError(
                    f"has {count} bands but {len(names)} band names", "Set `bands:` in the manifest", path=path
                )
            if item.time is None:
                raise RasterError("a `bands` item needs `time:`", "Add the acquisition time", path=path)
            wanted = [n for n in names if variables is None or n in variables or n in MASK_VARIABLES]
            if not wanted:
                continue
            data = _read_on_grid(path, window, item.nodata) * np.float32(item.to_physical)
            t = _times([item.time], path)
            for i, n in enumerate(names):
                if n in wanted:
                    acc.setdefault(n, []).append((t, data[i : i + 1], np.array([item.orbit or ""])))
        else:
            var = item.variable or ""
            if not var:
                raise RasterError("a `timeseries` item needs `variable:`", "Name the variable", path=path)
            var = canonical_band(var)
            if variables is not None and var not in variables and var not in MASK_VARIABLES:
                continue
            t = _times(item.times or tuple(desc), path)
            if len(t) != count:
                raise RasterError(f"has {count} bands but {len(t)} times", "Set `times:` in the manifest", path=path)
            if item.orbits is not None and len(item.orbits) != count:
                raise RasterError(
                    f"has {count} bands but {len(item.orbits)} orbits",
                    "Give one orbit pass per band in `orbits:`",
                    path=path,
                )
            data = _read_on_grid(path, window, item.nodata) * np.float32(item.to_physical)
            orb = np.array(list(item.orbits) if item.orbits is not None else [item.orbit or ""] * count)
            acc.setdefault(var, []).append((t, data, orb))
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    orbits: dict[str, np.ndarray] = {}
    for var, parts in acc.items():
        t = np.concatenate([p[0] for p in parts])
        v = np.concatenate([p[1] for p in parts]).astype(np.float32)
        o = np.concatenate([p[2] for p in parts])
        order = np.argsort(t, kind="stable")
        out[var] = (t[order], v[order])
        if (o != "").any():
            orbits[var] = o[order]
    return Stack(window, out, manifest.level, [str(root / i.path) for i in manifest.items], orbits)
