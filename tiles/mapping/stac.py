"""STAC metadata of a map run (pystac): one Item per tile and one self-contained Catalog.

Items carry the tile footprint in EPSG:4326 (lon/lat, densified from the EPSG:3035 cell),
the map year as ``start_datetime``/``end_datetime``, the projection extension (EPSG:3035,
shape, transform) and one asset per COG; the class assets list their classes (and the OOD
layer its codes) with the classification extension (value, name, colour), and the item links the run's copy of the
model's STAC MLM item (``model.json``) as ``derived_from``. Everything is relative (``./``), so the output
folder can be moved or uploaded as it is. Files are written atomically.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pystac
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.projection import ProjectionExtension

from model.mlm import bundle_item, item_dict
from pipeline.core.atomic import write_json
from pipeline.core.grid import GridWindow, footprint_lonlat
from pipeline.core.legend import Legend
from pipeline.core.ood_codes import OOD_CODES, OOD_COLORS, OOD_NODATA

MODEL_ITEMS = {"class": "model.json", "level2": "model_level2.json"}
"""The run folder's copy of each bundle's STAC MLM item (:mod:`model.mlm`), by the asset it made."""

ASSET_ROLES = {
    "class": ["data"],
    "level2": ["data"],
    "confidence": ["metadata", "quality"],
    "proba": ["data", "probability"],
    "ood": ["metadata", "quality"],
}


def _classes(legend: Legend) -> list[Classification]:
    out = []
    colours = legend.colormap()
    for c in legend.classes:
        r, g, b, _ = colours[c.id]
        out.append(
            Classification.create(
                value=c.id,
                description=c.name,
                name=c.name.lower().replace("/", "_").replace(" ", "_"),
                color_hint=f"{r:02X}{g:02X}{b:02X}",
            )
        )
    return out


def _ood_classes() -> list[Classification]:
    """The OOD layer's codes (:data:`pipeline.core.ood_codes.OOD_CODES`) with its colormap's
    colours, and its nodata value.
    """
    out = [
        Classification.create(
            value=code,
            description=meaning,
            name=meaning.replace(" ", "_"),
            color_hint="{:02X}{:02X}{:02X}".format(*OOD_COLORS[code][:3]),
        )
        for code, meaning in OOD_CODES.items()
    ]
    out.append(Classification.create(value=OOD_NODATA, description="no class", name="nodata", nodata=True))
    return out


def tile_item(
    tile_id: str,
    window: GridWindow,
    year: str,
    files: dict[str, str],
    legends: dict[str, Legend],
    properties: dict[str, Any],
    models: dict[str, str] | None = None,
) -> pystac.Item:
    """The STAC Item of one mapped tile.

    Args:
        tile_id: the item id (the cell code).
        window: the tile's grid window (EPSG:3035).
        year: the map year (``""`` if unknown, as for a feature file GDAL or QGIS wrote without eulc's
            ``year`` tag: the item's ``datetime`` is then the time of mapping and ``eulc:year`` says
            ``unknown``; STAC requires a datetime or a range).
        files: asset key (``class``, ``confidence``, ``proba``, ``level2``, ``ood``) → file name in the
            output folder.
        legends: asset key → legend, for the classification extension.
        properties: extra properties (``eulc:model_hash``, ``eulc:spec_hash``, ...).
        models: the run folder's model item file → its ``mlm:name`` (:func:`write_model_items`),
            each linked with ``rel: derived_from`` and ``processing:level`` L4 (the MLM best practice
            for inference outputs).
    """
    geom, bbox = footprint_lonlat(window)
    props: dict[str, Any] = dict(properties)
    when: dt.datetime | None = None
    if year:
        props |= {"start_datetime": f"{year}-01-01T00:00:00Z", "end_datetime": f"{year}-12-31T23:59:59Z"}
    else:
        when = dt.datetime.now(dt.UTC).replace(microsecond=0)
        props["eulc:year"] = "unknown (the feature file has no year tag; datetime is the time of mapping)"
    item = pystac.Item(tile_id, geom, bbox, when, props)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.code = window.grid.crs
    proj.shape = [window.height, window.width]
    proj.transform = list(window.transform)[:6]
    for key, name in files.items():
        asset = pystac.Asset(
            f"./{name}", media_type=pystac.MediaType.COG, roles=ASSET_ROLES.get(key, ["data"]), title=key
        )
        item.add_asset(key, asset)
        if key in legends:
            ClassificationExtension.ext(asset, add_if_missing=True).classes = _classes(legends[key])
        elif key == "ood":
            ClassificationExtension.ext(asset, add_if_missing=True).classes = _ood_classes()
    for fname, name in (models or {}).items():
        item.add_link(
            pystac.Link(
                "derived_from",
                f"./{fname}",
                media_type=pystac.MediaType.GEOJSON,
                extra_fields={"mlm:name": name, "processing:level": "L4"},
            )
        )
    return item


def write_model_items(out_dir: Path, bundles: dict[str, Path]) -> dict[str, str]:
    """Copy the STAC MLM item of each bundle a run uses into its folder (:data:`MODEL_ITEMS`,
    asset hrefs absolute: where the model was when it mapped), through the guarded writer.

    Args:
        out_dir: the run folder.
        bundles: ``class`` → the Level-1 bundle folder, ``level2`` → the Level-2 one.

    Returns:
        File name → the item's ``mlm:name``, for :func:`tile_item`'s ``models``.

    Raises:
        BundleError: a bundle cannot be described (:func:`model.mlm.bundle_item`).
        WriteError: a file of that name is there and not eulc's.
    """
    names: dict[str, str] = {}
    for key, folder in bundles.items():
        item = bundle_item(folder, absolute=True)
        write_json(out_dir / MODEL_ITEMS[key], item_dict(item))
        names[MODEL_ITEMS[key]] = item.id
    return names


def write_item(item: pystac.Item, out_dir: Path) -> Path:
    """Write ``<out_dir>/<item id>.json`` atomically, with root/parent links to
    ``./catalog.json``, its ``derived_from`` model links and the item's relative asset hrefs;
    returns the path.
    """
    dest = out_dir / f"{item.id}.json"
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    d["links"] = [
        {"rel": rel, "href": "./catalog.json", "type": pystac.MediaType.JSON.value} for rel in ("root", "parent")
    ] + [link for link in d["links"] if link["rel"] == "derived_from"]
    write_json(dest, d)
    return dest


def write_catalog(out_dir: Path, item_ids: Iterable[str], description: str) -> Path:
    """Write ``<out_dir>/catalog.json`` atomically: a self-contained STAC Catalog linking
    ``./<id>.json`` for each item id (sorted, so reruns write the same bytes); returns the path.
    """
    cat = pystac.Catalog("eulc-map", description, catalog_type=pystac.CatalogType.SELF_CONTAINED)
    cat.set_self_href(str(out_dir / "catalog.json"))
    for i in sorted(item_ids):
        cat.add_link(pystac.Link(pystac.RelType.ITEM, f"./{i}.json", media_type=pystac.MediaType.GEOJSON))
    dest = out_dir / "catalog.json"
    write_json(dest, cat.to_dict(include_self_link=False, transform_hrefs=True))
    return dest
