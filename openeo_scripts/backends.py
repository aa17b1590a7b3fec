"""What an openEO back-end offers the spec's sensors: collection IDs, band names and layers.

A :class:`Backend` says, for each sensor kind (and Sentinel-2 processing level), which collection
the graph loads and how the spec's band names are called there. A sensor kind a back-end has no
collection for (MODIS LST and learned embeddings on the Copernicus Data Space Ecosystem) is
refused by the graph builder in one line.

:data:`CDSE` follows the collections of ``openeo.dataspace.copernicus.eu`` (the openEO "Collections"
page of the Copernicus Data Space Ecosystem documentation): ``SENTINEL2_L2A`` with the Sen2Cor
scene classification ``SCL``, ``SENTINEL2_L1C`` (no cloud layer), ``SENTINEL1_GRD`` (``VV``/``VH``,
calibrated by ``sar_backscatter``) and the Copernicus DEM ``COPERNICUS_30`` (band ``DEM``). Neither
Sentinel-2 collection carries s2cloudless probabilities at 10 m, so a spec that masks by ``CLP``
is computed with the Sen2Cor fallback (:mod:`pipeline.core.cloud_mask`), recorded in the plan.

Not verified against a live back-end (no network here): the collection and band names above, and
whether CDSE removes the +1000 DN offset of Sentinel-2 products of processing baseline 04.00 and
later (Collection-1 reprocessing included); the graphs divide the DN by the spec's
``dn_per_unit`` and subtract nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

S2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
"""Sentinel-2 band names as specs write them (``B4``); back-ends write ``B04``."""


def s2_band_names(bands: tuple[str, ...] = S2_BANDS) -> dict[str, str]:
    """Spec band name → the two-digit name openEO back-ends use (``B4`` → ``B04``, ``B8A`` kept)."""
    return {b: (b if b == "B8A" else f"B{int(b[1:]):02d}") for b in bands}


@dataclass(frozen=True)
class Collection:
    """One collection of a back-end.

    Attributes:
        id: the collection ID ``load_collection`` takes.
        bands: spec band or variable name → the collection's band name.
        layers: mask layers the collection carries, by canonical name (``SCL``, ``CLP``,
            ``VALID``): what :func:`pipeline.core.cloud_mask.resolve_cloud_mask` may use.
        cloud_cover: the scene cloud-cover property ``load_collection`` filters on
            (``eo:cloud_cover``), or None when the collection has none.
        dn_scaled: the bands hold DN (divided by the spec's ``dn_per_unit``) rather than
            physical values.
    """

    id: str
    bands: dict[str, str]
    layers: tuple[str, ...] = ()
    cloud_cover: str | None = "eo:cloud_cover"
    dn_scaled: bool = True


@dataclass(frozen=True)
class Backend:
    """An openEO back-end's collections per sensor kind.

    Attributes:
        name: a short label (``cdse``), recorded in the plan.
        url: the back-end's API root.
        s2: processing level (``L1C``/``L2A``) → collection.
        s1: the Sentinel-1 GRD collection (backscatter computed by ``sar_backscatter``), or None.
        dem: the DEM collection, or None.
        s1_backscatter: whether Sentinel-1 needs ``sar_backscatter`` (GRD) or is already σ⁰.
    """

    name: str
    url: str
    s2: dict[str, Collection] = field(default_factory=dict)
    s1: Collection | None = None
    dem: Collection | None = None
    s1_backscatter: bool = True


CDSE = Backend(
    name="cdse",
    url="https://openeo.dataspace.copernicus.eu",
    s2={
        "L2A": Collection("SENTINEL2_L2A", {**s2_band_names(tuple(b for b in S2_BANDS if b != "B10"))}, ("SCL",)),
        "L1C": Collection("SENTINEL2_L1C", s2_band_names()),
    },
    s1=Collection("SENTINEL1_GRD", {"VV": "VV", "VH": "VH"}, cloud_cover=None, dn_scaled=False),
    dem=Collection("COPERNICUS_30", {"elevation": "DEM"}, cloud_cover=None, dn_scaled=False),
)
"""The Copernicus Data Space Ecosystem's openEO federation (see the module docstring)."""

BACKENDS = {"cdse": CDSE}
"""Back-ends by name."""
