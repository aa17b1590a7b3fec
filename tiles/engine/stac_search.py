"""STAC API searches for the feature engine (issue #7): which items of which collection cover
an EEA grid window in the map year.

- The search is ``collections=[collection]``, the window's lon/lat bounding box (EPSG:4326,
  lon/lat order, of the densified EPSG:3035 outline: :func:`pipeline.core.grid.footprint_lonlat`),
  ``datetime=YEAR-01-01/YEAR-12-31``.
- Sentinel-2 scene filter (the spec's ``scene_cloud_max_pct``, as GEE's
  ``CLOUDY_PIXEL_PERCENTAGE``) on ``eo:cloud_cover``: sent to the API as the Query extension or
  a CQL2 filter when the API conforms to one, and always re-applied to the returned items
  (an API without either still returns the right items, only more of them).
- Planetary Computer asset URLs are signed with ``planetary_computer.sign_inplace``.
- Sentinel-1 collections must hold calibrated backscatter: the GRD collections of public APIs
  (``sentinel-1-grd`` on Earth Search and Planetary Computer) hold uncalibrated amplitude
  digital numbers, not σ⁰, and are refused (use Planetary Computer's ``sentinel-1-rtc``: γ⁰
  terrain-flattened, linear power; GEE's ``S1_GRD`` is σ⁰ without terrain flattening, so
  expect a small shift on slopes, which ``eulc drift`` shows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pystac

from pipeline.core.errors import RasterError
from pipeline.core.grid import GridWindow, footprint_lonlat

PLANETARY_COMPUTER_HOST = "planetarycomputer.microsoft.com"


@dataclass(frozen=True)
class StacApi:
    """A STAC API and the collection to search for each sensor kind of the spec.

    Attributes:
        url: the API root, e.g. ``https://earth-search.aws.element84.com/v1``.
        collections: sensor kind → collection id: ``s2`` (required), ``s1`` and ``dem``
            (needed only when the selected features use those sensors).
        max_items: the most items one search returns (per collection and tile).
    """

    url: str
    collections: dict[str, str] = field(default_factory=dict)
    max_items: int = 1000

    def collection(self, kind: str) -> str:
        """The collection for a sensor kind.

        Raises:
            RasterError: no collection was given for it (the message names the option).
        """
        if kind not in self.collections:
            option = {"s2": "`collection`", "s1": "`s1_collection`", "dem": "`dem_collection`"}.get(kind, kind)
            example = {
                "s1": " (e.g. sentinel-1-rtc on Planetary Computer)",
                "dem": " (e.g. cop-dem-glo-30 on Earth Search or Planetary Computer)",
            }.get(kind, "")
            raise RasterError(
                f"the selected features need {kind.upper()} items from the STAC API {self.url}",
                f"Give {option}{example}, or select features without {kind.upper()}",
            )
        return self.collections[kind]


@lru_cache(maxsize=8)
def open_api(url: str) -> Any:
    """``pystac_client.Client`` for ``url``; Planetary Computer hrefs are signed on the fly.
    Cached per URL, so the landing page is read once per run, not once per tile and sensor
    (a failure is not cached).

    Raises:
        RasterError: the API cannot be reached or is not a STAC API; Planetary Computer without
            the ``planetary-computer`` package.
    """
    from pystac_client import Client

    modifier = None
    if PLANETARY_COMPUTER_HOST in url:
        try:
            import planetary_computer
        except ImportError:
            raise RasterError("Planetary Computer assets must be signed", "pip install planetary-computer") from None
        modifier = planetary_computer.sign_inplace
    try:
        return Client.open(url, modifier=modifier, timeout=60)
    except Exception as e:  # noqa: BLE001 - network and API errors of many kinds
        raise RasterError(
            f"the STAC API {url} could not be searched ({type(e).__name__}: {e})",
            "Check the URL and the network, or use `catalog` with a static catalogue",
        ) from None


def search_items(
    api: StacApi, kind: str, window: GridWindow, year: int, max_cloud_pct: float | None = None, client: Any = None
) -> list[pystac.Item]:
    """The items of ``api``'s collection for ``kind`` over ``window`` in ``year``.

    Args:
        api: the API and its collections.
        kind: ``s2``, ``s1`` or ``dem`` (DEM items are searched without a date).
        window: the EEA grid window (EPSG:3035).
        year: the map year.
        max_cloud_pct: keep S2 items with ``eo:cloud_cover`` below this (items without the
            property are kept); None = no scene filter.
        client: an open client (default: :func:`open_api`).

    Raises:
        RasterError: the API cannot be searched, no collection for ``kind``, or an S1
            collection of uncalibrated GRD digital numbers.
    """
    collection = api.collection(kind)
    if kind == "s1":
        check_s1_calibrated(collection, api.url)
    cl = client if client is not None else open_api(api.url)
    params: dict[str, Any] = {
        "collections": [collection],
        "bbox": footprint_lonlat(window)[1],
        "max_items": api.max_items,
    }
    if kind != "dem":
        params["datetime"] = f"{year}-01-01/{year}-12-31"
    if max_cloud_pct is not None:
        if cl.conforms_to("QUERY"):
            params["query"] = {"eo:cloud_cover": {"lt": max_cloud_pct}}
        elif cl.conforms_to("FILTER"):
            params["filter"] = {"op": "<", "args": [{"property": "eo:cloud_cover"}, max_cloud_pct]}
            params["filter_lang"] = "cql2-json"
    try:
        items = list(cl.search(**params).items())
    except Exception as e:  # noqa: BLE001 - network and API errors of many kinds
        raise RasterError(
            f"the STAC API {api.url} could not be searched ({type(e).__name__}: {e})",
            "Check the URL, the collection name and the network",
        ) from None
    if max_cloud_pct is not None:
        items = [it for it in items if float(it.properties.get("eo:cloud_cover", 0.0)) < max_cloud_pct]
    return items


def check_s1_calibrated(collection: str, url: str) -> None:
    """Refuse a Sentinel-1 GRD collection of a public API: its assets are amplitude digital
    numbers (ESA Level-1 GRD before calibration), not σ⁰; GEE's ``COPERNICUS/S1_GRD`` is
    calibrated and ortho-rectified, so features from DN would be out of every model's range.
    Planetary Computer's ``sentinel-1-rtc`` items also say ``sar:product_type: GRD`` (the
    product they derive from), so the collection id decides.

    Raises:
        RasterError: the collection id names GRD and not RTC.
    """
    name = collection.lower()
    if "grd" in name and "rtc" not in name:
        raise RasterError(
            f"the S1 collection {collection!r} of {url} holds GRD scenes: uncalibrated amplitude digital numbers, "
            "not backscatter σ⁰",
            "Use a calibrated collection (Planetary Computer: `s1_collection` sentinel-1-rtc), or calibrated σ⁰ "
            "files in a stack manifest",
        )
