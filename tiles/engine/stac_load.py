"""Sentinel-2 stacks from STAC: a static catalogue (file) or STAC items, read onto the EEA grid
window, into the same :class:`~tiles.engine.stack.Stack` the local-file loader
produces, so the feature engine cannot tell them apart (issue #7).

- Items are filtered to the window's footprint and the map year.
- Each item is one time slice (time order); its band assets are decoded and put onto the window
  (EPSG:3035, 10 m, nearest neighbour as in paper §2.1.1: the source pixel under each pixel
  centre, :class:`pipeline.core.warp.NearestMap`) straight into the block's float32 array,
  NaN = nodata, by :class:`~tiles.engine.asset_reader.AssetReader` (datasets open across a
  tile's blocks, threads). Until issue #28 this was ``odc.stac.load``, whose GDAL warp
  approximates coordinates: about 1 % of a tile's pixels took a neighbouring source pixel
  (``benchmarks/RESULTS.md``).
- Digital numbers → reflectance: ``(DN + BOA_ADD_OFFSET) · 1e-4`` for L2A items of processing
  baseline ≥ 04.00 (ESA's harmonization: offset −1000 from 2022-01-25; the baseline is read
  from ``s2:processing_baseline`` or, when absent, from the acquisition date), ``DN · 1e-4``
  otherwise (L1C, older L2A). Values ≤ 0 after the offset are nodata, as in GEE's
  ``COPERNICUS/S2_SR_HARMONIZED``. Mask layers (``SCL``, ``CLP`` in percent) are not scaled.
- Items whose COGs were harmonized by the provider (Earth Search's
  ``earthsearch:boa_offset_applied: true``, formerly ``sentinel:boa_offset_applied``) get no
  offset. Earth Search's flag is known to be wrong on some items (Element84/earth-search#66 and
  #71), so the data are checked too: when more than :data:`NOT_OFFSET_SHARE` (5 %) of an item's
  valid values in a visible-to-NIR band (:data:`CHECK_BANDS`) are below 1000 DN (negative surface
  reflectance once the offset is subtracted), the values are taken as already harmonized, with a
  warning naming the item. A scene bright everywhere (cloud, snow) cannot be told apart this way
  and keeps its metadata's offset; the cloud mask removes cloud.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pystac

from pipeline.core.dates import utc_datetime64
from pipeline.core.errors import NoSceneError, RasterError
from pipeline.core.grid import GridWindow, footprint_lonlat
from tiles.engine.asset_reader import AssetRead, AssetReader
from tiles.engine.stack import MASK_VARIABLES, Encoding, Stack, canonical_band

DEM_VARIABLE = "elevation"
DEM_ASSETS = ("elevation", "data", "dem", "DEM")
"""Asset keys of a DEM item, in order of preference (Copernicus DEM on Earth Search and
Planetary Computer: ``data``)."""

HARMONIZATION_DATE = np.datetime64("2022-01-25")
NOT_OFFSET_SHARE = 0.05
CHECK_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A")
"""Bands whose valid L2A values stay above 1000 DN once offset (visible to NIR: water and dark
vegetation have positive surface reflectance there; SWIR over water may be < 0, so it is not used)."""
OFFSET_APPLIED_KEYS = ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")
BOA_ADD_OFFSET = -1000.0
DN_TO_REFLECTANCE = 1e-4


def items_from_catalog(path: Path, allow_roots: tuple[Path, ...] = ()) -> list[pystac.Item]:
    """Every item under a static STAC catalogue or collection file (recursively).

    A static catalogue is data, not a trusted program: its links and asset hrefs must lie inside
    the catalogue's own folder tree (or under ``allow_roots``, e.g. ``--allow-root DIR``) or be
    ``http(s)`` URLs; anything else (``/etc/passwd``, ``../../``, ``file://`` elsewhere, other
    schemes) is refused before any file is opened.

    Raises:
        RasterError: the file does not exist, is not a STAC catalogue, or names a file outside
            the allowed folders (the message names the item, the asset and the href).
    """
    if not Path(path).is_file():
        raise RasterError("does not exist", "Give the path of a catalog.json or collection.json", path=path)
    try:
        cat = pystac.read_file(str(path))
    except (pystac.STACError, pystac.errors.STACTypeError, ValueError, KeyError, TypeError) as e:
        raise RasterError(
            f"is not a STAC catalogue ({e})", "Give a catalog.json or collection.json", path=path
        ) from None
    roots = (Path(path).resolve().parent, *(Path(r).resolve() for r in allow_roots))
    if isinstance(cat, pystac.Item):
        items = [cat]
    elif isinstance(cat, pystac.Catalog):
        items = []
        try:  # children and items are read lazily: a malformed one fails here
            for child in _walk(cat, roots, Path(path)):
                items.extend(child.get_items())
        except (
            pystac.STACError,
            pystac.errors.STACTypeError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            OSError,
        ) as e:
            raise RasterError(
                f"holds a child or item that is not valid STAC ({' '.join(str(e).split())[:200]})",
                "Fix or remove that item (pystac / stac-validator name the field)",
                path=path,
            ) from None
    else:
        raise RasterError("is not a STAC catalogue", "Give a catalog.json or collection.json", path=path)
    for it in items:
        for key, asset in it.assets.items():
            _check_href(asset.get_absolute_href() or asset.href, roots, f"asset {key!r} of item {it.id!r}", Path(path))
    return items


def _check_href(href: str, roots: tuple[Path, ...], what: str, catalogue: Path, depth: int = 0) -> None:
    """Refuse an href outside the allowed folders that is not an http(s) URL, a GDAL virtual path
    (``/vsicurl/``, ``/vsizip/`` ...), and a VRT whose sources (recursively) do either.
    """
    from urllib.parse import urlparse

    u = urlparse(href)
    if u.scheme in ("http", "https"):
        return
    if u.scheme not in ("", "file") and len(u.scheme) > 1:  # s3://, gs://, ... (a drive letter is 1 char)
        raise RasterError(
            f"{what} names {href!r}, a {u.scheme}:// href",
            "Use files inside the catalogue's folder "
            "or http(s) URLs (a STAC API with `stac` signs and serves cloud assets)",
            path=catalogue,
        )
    raw = u.path if u.scheme == "file" else href
    if raw.startswith("/vsi"):
        raise RasterError(
            f"{what} names {href!r}, a GDAL virtual path",
            "Use plain files inside the catalogue's folder or http(s) URLs",
            path=catalogue,
        )
    target = Path(raw).resolve()
    if not any(target.is_relative_to(r) for r in roots):
        raise RasterError(
            f"{what} names {href!r}, outside the catalogue's folder tree",
            "Move the files under the catalogue's folder, or allow their folder with `allow_root` DIR",
            path=catalogue,
        )
    if depth < MAX_VRT_DEPTH and target.is_file() and _is_vrt(target):
        for source in _vrt_sources(target, what, catalogue):
            _check_href(source, roots, f"{what} (VRT source in {target.name})", catalogue, depth + 1)
    elif depth >= MAX_VRT_DEPTH:
        raise RasterError(f"{what}: VRT files nest deeper than {MAX_VRT_DEPTH}", "Flatten the VRTs", path=catalogue)


MAX_VRT_DEPTH = 4
"""How deep VRT files may reference VRT files in a static catalogue."""


def _is_vrt(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(512).lstrip()
    except OSError:
        return False
    return path.suffix.lower() == ".vrt" or head.startswith(b"<VRTDataset")


def _vrt_sources(vrt: Path, what: str, catalogue: Path) -> list[str]:
    """The files a GDAL VRT reads (``SourceFilename``, relative ones resolved against the VRT's
    folder as GDAL does with ``relativeToVRT="1"``).

    Raises:
        RasterError: the VRT is not XML, or it runs code (``PixelFunctionLanguage``).
    """
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(vrt).getroot()
    except (ET.ParseError, OSError) as e:
        raise RasterError(
            f"{what}: {vrt.name} is not a readable VRT ({e})", "Give a valid VRT or a GeoTIFF", path=catalogue
        ) from None
    if any(el.tag == "PixelFunctionLanguage" or el.tag == "PixelFunctionCode" for el in root.iter()):
        raise RasterError(
            f"{what}: {vrt.name} holds pixel-function code",
            "eulc does not run code from a catalogue; give a plain VRT or a GeoTIFF",
            path=catalogue,
        )
    out = []
    for el in root.iter():
        if el.tag in ("SourceFilename", "SourceDataset") and el.text:
            name = el.text.strip()
            if el.get("relativeToVRT", "0") == "1" or (el.tag != "SourceFilename" and not name.startswith("/")):
                name = str(vrt.parent / name)
            out.append(name)
    return out


def _walk(cat: pystac.Catalog, roots: tuple[Path, ...], catalogue: Path) -> list[pystac.Catalog]:
    """The catalogue and its sub-catalogues, each child link checked before it is read."""
    out, todo = [], [cat]
    while todo:
        c = todo.pop()
        out.append(c)
        for link in c.get_links("child") + c.get_links("item"):
            _check_href(link.get_absolute_href() or link.href, roots, f"link {link.rel!r} of {c.id!r}", catalogue)
        todo.extend(c.get_children())
    return out


def _item_time(item: pystac.Item) -> np.datetime64:
    """The acquisition time as UTC datetime64[ns] (``datetime`` or ``start_datetime``)."""
    raw = item.datetime or item.properties.get("start_datetime")
    if raw is None:
        raise RasterError(f"STAC item {item.id!r} has no datetime", "Give items with datetime or start_datetime")
    try:
        return utc_datetime64(raw)
    except (ValueError, TypeError) as e:
        raise RasterError(f"STAC item {item.id!r}: {e}", "Give an ISO 8601 datetime or start_datetime") from None


def item_year(item: pystac.Item) -> int:
    """The calendar year (UTC) of a STAC item's acquisition (``datetime`` or ``start_datetime``).

    Raises:
        RasterError: the item has no date (names the item).
    """
    return int(_item_time(item).astype("datetime64[Y]").astype(int)) + 1970


def _offset(item: pystac.Item, level: str) -> float:
    if level != "L2A" or any(item.properties.get(k) is True for k in OFFSET_APPLIED_KEYS):
        return 0.0
    base = item.properties.get("s2:processing_baseline")
    if base is not None:
        try:
            return BOA_ADD_OFFSET if float(base) >= 4.0 else 0.0
        except ValueError:
            pass
    return BOA_ADD_OFFSET if _item_time(item) >= HARMONIZATION_DATE else 0.0


def load_stac_stack(
    items: Iterable[pystac.Item],
    window: GridWindow,
    bands: list[str],
    year: int | None = None,
    level: str = "L2A",
    kind: str = "s2",
    as_stored: set[str] | None = None,
    reader: AssetReader | None = None,
    encoded: bool = False,
) -> Stack:
    """Load the ``bands`` of S2 (or S1) ``items`` onto ``window``.

    Args:
        items: STAC items (one per acquisition), assets keyed by band (``B02``/``B2``, ``SCL``).
        window: the EEA grid window (EPSG:3035, 10 m).
        bands: band names as in the spec (``B2``, ``B8``, ``SCL``, ``CLP``).
        year: keep only acquisitions of this calendar year (None = all).
        level: ``L2A`` (harmonization offset applies) or ``L1C``; for S1 ``GRD``/``RTC``.
        kind: ``s2`` (digital numbers → reflectance), ``s1`` (linear σ⁰ as stored, values ≤ 0
            are nodata; assets ``vv``/``vh``) or ``dem`` (metres as stored, asset ``elevation``
            or ``data`` as in Copernicus DEM GLO-30 collections; the tiles are mosaicked into
            one layer, whatever their dates).
        as_stored: variables loaded as stored, without the DN → reflectance step (precomputed
            index assets such as ``ndvi``, unitless).
        reader: the tile's :class:`~tiles.engine.asset_reader.AssetReader` (datasets open across
            its blocks); default: one for this call.
        encoded: hold each S2/S1 band whose assets all share one integer dtype and nodata value
            as stored (uint16 DN, uint8 masks), with an :class:`~tiles.engine.stack.Encoding`
            that decodes it per series to the same float32 values (half or a quarter of the
            memory, issue #28); read the variables through :meth:`Stack.values`. Other bands
            (float files, mixed dtypes, no nodata) and DEMs are float32 as without it.

    Returns:
        A :class:`Stack` with ``variables[band] = (times, float32 (T, H, W))`` in reflectance
        0–1 (bands) or native units (masks), NaN = nodata (``encoded``: some as stored, with
        their ``encodings``).

    Raises:
        NoSceneError: no item in the window/year.
        RasterError: a band missing from the items (the message lists the assets the items have),
            an asset that cannot be read.
    """
    w, s, e, n = footprint_lonlat(window)[1]
    chosen = []
    for it in items:
        if it.bbox and (it.bbox[0] > e or it.bbox[2] < w or it.bbox[1] > n or it.bbox[3] < s):
            continue
        if year is not None and item_year(it) != year:
            continue
        chosen.append(it)
    if not chosen:
        raise NoSceneError(
            f"no scene in the window {tuple(round(v) for v in window.bounds)} (EPSG:3035)"
            + (f" in {year}" if year is not None else ""),
            "Widen the search (dates, cloud cover) or check the tile",
        )
    keys = {canonical_band(k): k for it in chosen for k in it.assets}
    dem_key = next((k for k in DEM_ASSETS if k in keys), None)
    if kind == "dem" and dem_key is not None:
        keys[DEM_VARIABLE] = keys[dem_key]
    missing = [b for b in bands if canonical_band(b) not in keys]
    if missing:
        raise RasterError(
            f"band(s) {missing} are missing from the STAC items (assets: {sorted(keys.values())})",
            "Use a collection with these assets, or select features that do not need them",
        )
    # one time slice per item, in time order; items at the same time keep their order (the daily
    # mosaic puts the later one on top), as odc-stac's load(groupby="id") ordered them before
    chosen = sorted(chosen, key=_item_time)  # stable
    times = np.array([_item_time(it) for it in chosen], dtype="datetime64[ns]")
    offsets = np.array([_offset(it, level) for it in chosen], np.float32)
    names = [canonical_band(b) for b in bands]
    reads = []
    for k, name in enumerate(names):
        for i, it in enumerate(chosen):
            asset = it.assets.get(keys[name])
            if asset is not None:  # an item without the band: its slice stays nodata
                href = asset.get_absolute_href() or asset.href
                reads.append(AssetRead(href, i, _asset_nodata(asset), f"{it.id}/{keys[name]}", array=k))
    with ExitStack() as closing:
        if reader is None:
            reader = closing.enter_context(AssetReader())
        stored = _stored_as(reader, reads, len(names)) if encoded and kind != "dem" else [None] * len(names)
        shape = (len(chosen), window.height, window.width)
        raw = {  # one array per band: a band no series needs any more is freed alone
            name: np.full(shape, np.nan, np.float32) if how is None else np.full(shape, how[1], how[0])
            for name, how in zip(names, stored, strict=True)
        }
        reader.read(reads, window, list(raw.values()))
    reflectance = [n for n in raw if n not in MASK_VARIABLES and n not in (as_stored or set())]
    nodata = {name: (None if how is None else int(how[1])) for name, how in zip(names, stored, strict=True)}
    if kind == "s2":
        _drop_offsets_the_data_lack(offsets, chosen, {n: raw[n] for n in reflectance}, nodata)
    variables: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    encodings: dict[str, Encoding] = {}
    for name, v in raw.items():
        if kind == "dem":  # one terrain layer: the first valid tile value at each pixel
            first = np.argmax(np.isfinite(v), axis=0)
            variables[name] = (times[:1], np.take_along_axis(v, first[None], axis=0))
            continue
        variables[name] = (times, v)
        scaled = kind == "s2" and name in reflectance
        if (nod := nodata[name]) is not None:  # held as stored: decoded per series, same values
            encodings[name] = Encoding(
                nod,
                offsets if scaled else np.zeros(len(chosen), np.float32),
                np.float32(DN_TO_REFLECTANCE if scaled else 1.0),
                positive=kind == "s1" or (scaled and level == "L2A"),
            )
        elif kind == "s1":
            v[v <= 0] = np.nan  # linear backscatter is positive; 0 = no data
        elif scaled:
            v += offsets[:, None, None]  # in place: the block's buffer is the stack
            v *= np.float32(DN_TO_REFLECTANCE)
            if level == "L2A":
                v[v <= 0] = np.nan
    orbits: dict[str, np.ndarray] = {}
    if kind == "s1":  # the pass of each acquisition (STAC sat extension), for features with `orbit`
        passes = np.array([str(it.properties.get("sat:orbit_state", "")).upper() for it in chosen])
        orbits = {name: passes for name in variables}
    sources = sorted(
        {
            a.href
            for it in chosen
            for k, a in it.assets.items()
            if canonical_band(k) in {canonical_band(b) for b in bands}
        }
    )
    return Stack(window, variables, level, sources, orbits, encodings)


def held_bytes(items: list[pystac.Item], bands: list[str], kind: str, reader: AssetReader) -> int:
    """Bytes per pixel that one acquisition of ``bands`` takes in the stack
    :func:`load_stac_stack` (``encoded=True``) builds: each band's dtype size when it is held as
    stored (as probed on the first item that carries it: 2 for uint16 DN, 1 for uint8 masks), 4
    (float32) otherwise. For sizing row blocks (:func:`tiles.engine.run.block_rows_for`).

    Raises:
        RasterError: the probed asset cannot be opened (names it).
    """
    total = 0
    for band in bands:
        name = canonical_band(band)
        found = next(((it, k) for it in items for k in it.assets if canonical_band(k) == name), None)
        if kind == "dem" or found is None:  # a DEM is float32; a band no item has stays NaN
            total += 4
            continue
        it, key = found
        asset = it.assets[key]
        read = AssetRead(asset.get_absolute_href() or asset.href, 0, _asset_nodata(asset), f"{it.id}/{key}")
        how = _stored_as(reader, [read], 1)[0]
        total += 4 if how is None else how[0].itemsize
    return total


def _stored_as(reader: AssetReader, reads: list[AssetRead], n: int) -> list[tuple[np.dtype, int] | None]:
    """Per band (``AssetRead.array``): ``(dtype, nodata)`` when every asset of it has that one
    integer dtype and a nodata value it can hold, so the band can be held as stored; else None
    (float32).
    """
    infos = reader.info(reads)
    out: list[tuple[np.dtype, int] | None] = []
    for k in range(n):
        kinds = {(i.dtype, i.nodata) for r, i in zip(reads, infos, strict=True) if r.array == k}
        if len(kinds) != 1:
            out.append(None)
            continue
        dtype, nod = kinds.pop()
        holds = (
            np.issubdtype(dtype, np.integer)
            and nod is not None
            and float(nod).is_integer()
            and np.iinfo(dtype).min <= nod <= np.iinfo(dtype).max
        )
        out.append((dtype, int(nod)) if holds else None)  # type: ignore[arg-type]
    return out


def _asset_nodata(asset: pystac.Asset) -> float | None:
    """The nodata value the asset's metadata state (``raster:bands``), or None: the file's own."""
    bands = asset.extra_fields.get("raster:bands")
    if isinstance(bands, list) and bands and isinstance(bands[0], dict):
        v = bands[0].get("nodata")
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        if v == "nan":
            return float("nan")
    return None


def _drop_offsets_the_data_lack(
    offsets: np.ndarray, items: list[pystac.Item], dn: dict[str, np.ndarray], nodata: dict[str, int | None]
) -> None:
    """Set ``offsets[i]`` to 0 where acquisition ``i``'s values are already harmonized although
    its metadata say otherwise (see the module docstring); warn once per such item.

    Args:
        offsets: float32 (T,) BOA_ADD_OFFSET per acquisition, changed in place.
        items: the T items, for the warning.
        dn: band → (T, H, W) digital numbers: float32 with NaN = nodata, or as stored.
        nodata: band → the stored nodata value of a band held as stored, None for float32.
    """
    import warnings

    for i in np.flatnonzero(offsets != 0):
        for band, v in ((b, a) for b, a in dn.items() if b in CHECK_BANDS):
            valid = v[i] > 0  # NaN compares False
            if (nod := nodata.get(band)) is not None:
                valid &= v[i] != nod
            n = np.count_nonzero(valid)
            low = np.count_nonzero(valid & (v[i] < -offsets[i]))
            if n and (share := low / n) > NOT_OFFSET_SHARE:
                warnings.warn(
                    f"STAC item {items[i].id}: its metadata call for the L2A offset "
                    f"{offsets[i]:g} DN, but {share:.0%} of its valid {band} values are below "
                    f"{-offsets[i]:g} DN: taken as already harmonized (no offset)",
                    stacklevel=3,
                )
                offsets[i] = 0.0
                break
