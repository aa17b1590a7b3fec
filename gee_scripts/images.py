"""Feature images from a spec: Sentinel-2, Sentinel-1, MODIS LST and DEM (paper §2.1).

Every builder reads the spec, never hard-coded thresholds, so a spec change changes the graph
(and its golden file). Expression strings are the spec's, evaluated with ``ee.Image.expression``.

- **Sentinel-2** (§2.1.1): ``COPERNICUS/S2_SR_HARMONIZED`` for the calendar year; scenes with
  ``CLOUDY_PIXEL_PERCENTAGE < scene_cloud_max_pct``; ``COPERNICUS/S2_CLOUD_PROBABILITY`` joined on
  ``system:index`` (``ee.Join.saveFirst``) and pixels masked by the spec's rule (> 75); SCL classes
  in ``scl_mask`` masked (1, 9, 10, 11); DN / 10000 to reflectance before the expressions. The
  20 m bands are used at 10 m with nearest-neighbour resampling, Earth Engine's default when
  the image is sampled or exported on the 10 m grid.
- **Sentinel-1** (§2.1.2): ``COPERNICUS/S1_GRD_FLOAT`` (linear σ⁰), ``instrumentMode == IW``,
  scenes with both VV and VH, both orbit directions unless a feature names one
  (``orbitProperties_pass``); a focal median over a circle of 30 m radius, then the band values
  in the sensor's ``units`` (a collection stored in other units is converted: ELC10's
  ``COPERNICUS/S1_GRD`` is dB, ``S1_GRD_FLOAT`` linear) and the spec's variables.
- **LST** (§2.1.3): ``MODIS/061/MOD21C3`` ``LST_Day`` × 0.02 → kelvin, one value per month.
- **DEM**: the configured asset's elevation band (ASTER GDEM v3 by default).
- **Embedding**: the year's image of an annual embedding collection (AlphaEarth Foundations,
  ``GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL``: one image per UTM zone tile and year, bands
  ``A00``–``A63``, unitless coordinates of a unit-length 64-d vector), filtered to the region and
  the calendar year and mosaicked; bands renamed to the spec's names (GEE catalogue page).

Monthly windows always produce their band: the month's images are merged with a fully masked
placeholder carrying the same bands, so a month without acquisitions gives a masked band,
not a missing band.
"""

from __future__ import annotations

from collections import defaultdict

import ee

from pipeline.core.errors import SpecError
from pipeline.core.spec import SNAPSHOT_KINDS, Feature, FeatureSpec, Sensor, check_year, expression_inputs

# Known DEM assets and their elevation band: single images, and tiled collections (mosaicked).
DEM_IMAGES = {"NASA/NASADEM_HGT/001": "elevation", "USGS/SRTMGL1_003": "elevation"}
DEM_COLLECTIONS = {"COPERNICUS/DEM/GLO30": "DEM", "projects/sat-io/open-datasets/ASTER/GDEM": "b1"}


def with_dem_asset(spec: FeatureSpec, asset: str | None, band: str | None = None) -> FeatureSpec:
    """The spec with its ``dem`` sensor pointed at another asset (and band); unchanged if None.

    Known assets (:data:`DEM_IMAGES`, :data:`DEM_COLLECTIONS`) get their elevation band and
    image/collection kind automatically; others default to an ImageCollection with band
    ``elevation`` unless ``band`` is given.
    """
    if not (asset or band) or "dem" not in spec.sensors:
        return spec
    upd: dict[str, object] = {}
    if asset:
        upd["collection"] = asset
        upd["is_image"] = asset in DEM_IMAGES
    name = band or (DEM_IMAGES.get(asset or "") or DEM_COLLECTIONS.get(asset or "") or "elevation")
    upd["bands"] = {"elevation": name}
    dem = spec.sensors["dem"].model_copy(update=upd)
    return spec.model_copy(update={"sensors": {**spec.sensors, "dem": dem}})


def _date_range(year: int) -> tuple[str, str]:
    return f"{year}-01-01", f"{year + 1}-01-01"


def _variables(spec: FeatureSpec, features: list[Feature]) -> list[str]:
    seen: list[str] = []
    for f in features:
        if f.source not in seen:
            seen.append(f.source)
    return seen


def _add_variables(img: ee.Image, spec: FeatureSpec, variables: list[str]) -> ee.Image:
    """Per-image variable bands named by variable: a band, or an index expression."""
    bands = []
    for v in variables:
        expr = spec.indices.get(v)
        if expr is None:
            bands.append(img.select([v]).rename([v]))
        else:
            names = sorted(expression_inputs(expr))
            bands.append(img.expression(expr, {n: img.select([n]) for n in names}).rename([v]))
    return ee.Image(ee.Image.cat(bands).copyProperties(img, ["system:time_start"]))


def s2_collection(
    spec: FeatureSpec, key: str, variables: list[str], year: int, region: ee.Geometry
) -> ee.ImageCollection:
    """Masked Sentinel-2 variables (reflectance 0–1 / index values) for the year."""
    s = spec.sensors[key]
    start, end = _date_range(year)
    col = ee.ImageCollection(s.collection).filterBounds(region).filterDate(start, end)
    if s.scene_cloud_max_pct is not None:
        col = col.filter(ee.Filter.lt("CLOUDY_PIXEL_PERCENTAGE", s.scene_cloud_max_pct))
    if s.cloud_probability is not None and s.cloud_probability_collection:
        clp = ee.ImageCollection(s.cloud_probability_collection).filterBounds(region).filterDate(start, end)
        col = ee.ImageCollection(
            ee.Join.saveFirst("cloud_probability").apply(
                primary=col,
                secondary=clp,
                condition=ee.Filter.equals(leftField="system:index", rightField="system:index"),
            )
        )
    bands = sorted({b for v in variables for b in (expression_inputs(spec.indices[v]) if v in spec.indices else {v})})

    def prepare(image: ee.Image) -> ee.Image:
        img = ee.Image(image)
        keep = ee.Image.constant(1)
        if s.cloud_probability is not None and s.cloud_probability_collection:
            prob = ee.Image(img.get("cloud_probability")).select(["probability"])
            keep = keep.And(
                prob.lte(s.cloud_probability.value)
                if s.cloud_probability.op == ">"
                else prob.lt(s.cloud_probability.value)
            )
        if s.scl_mask:
            scl = img.select(["SCL"])
            for c in s.scl_mask:
                keep = keep.And(scl.neq(c))
        refl = img.select(bands).divide(s.dn_per_unit).updateMask(keep)
        return _add_variables(ee.Image(refl.copyProperties(img, ["system:time_start"])), spec, variables)

    return col.map(prepare)


S1_NATIVE_UNITS = {"COPERNICUS/S1_GRD": "dB", "COPERNICUS/S1_GRD_FLOAT": "linear"}
"""How Earth Engine stores σ⁰ in its Sentinel-1 collections (GEE catalogue pages); other
collections are taken to be in the spec's ``units``."""


def s1_collection(
    spec: FeatureSpec, key: str, variables: list[str], year: int, region: ee.Geometry, orbit: str | None = None
) -> ee.ImageCollection:
    """Speckle-filtered Sentinel-1 variables for the year, in the sensor's ``units``; scenes of
    one pass when ``orbit`` is ``ASCENDING``/``DESCENDING`` (``orbitProperties_pass``), else both.
    """
    s = spec.sensors[key]
    start, end = _date_range(year)
    col = ee.ImageCollection(s.collection).filterBounds(region).filterDate(start, end)
    if orbit:
        col = col.filter(ee.Filter.eq("orbitProperties_pass", orbit))
    if s.instrument_mode:
        col = col.filter(ee.Filter.eq("instrumentMode", s.instrument_mode))
    for pol in s.polarisations:
        col = col.filter(ee.Filter.listContains("transmitterReceiverPolarisation", pol))
    pols = list(s.polarisations) or ["VV", "VH"]

    def prepare(image: ee.Image) -> ee.Image:
        img = ee.Image(image).select(pols)
        if s.focal_median_radius_m:
            img = img.focalMedian(radius=s.focal_median_radius_m, kernelType="circle", units="meters")
        native = S1_NATIVE_UNITS.get(s.collection, s.units)
        if native == "linear" and s.units == "dB":
            img = img.log10().multiply(10)
        elif native == "dB" and s.units == "linear":
            img = ee.Image.constant(10).pow(img.divide(10))
        return _add_variables(ee.Image(img.rename(pols).copyProperties(image, ["system:time_start"])), spec, variables)

    return col.map(prepare)


def lst_collection(
    spec: FeatureSpec, key: str, variables: list[str], year: int, region: ee.Geometry
) -> ee.ImageCollection:
    """MOD21C3 LST in kelvin (DN / dn_per_unit), renamed to the spec's band names."""
    s = spec.sensors[key]
    start, end = _date_range(year)
    src = [s.bands.get(v, v) for v in variables]

    def prepare(image: ee.Image) -> ee.Image:
        img = ee.Image(image)
        return ee.Image(
            img.select(src).divide(s.dn_per_unit).rename(variables).copyProperties(img, ["system:time_start"])
        )

    return ee.ImageCollection(s.collection).filterBounds(region).filterDate(start, end).map(prepare)


def dem_image(spec: FeatureSpec, key: str, variables: list[str]) -> ee.Image:
    """The DEM's elevation band(s), renamed to the spec's names (metres)."""
    s = spec.sensors[key]
    src = [s.bands.get(v, v) for v in variables]
    img = ee.Image(s.collection) if s.is_image else ee.ImageCollection(s.collection).select(src).mosaic()
    return img.select(src).rename(variables)


def embedding_image(spec: FeatureSpec, key: str, variables: list[str], year: int, region: ee.Geometry) -> ee.Image:
    """The year's embedding bands (``variables``, e.g. ``A00``), mosaicked over ``region``.

    The annual collection holds one image per UTM zone tile and year, dated 1 January
    (``system:time_start``); ``filterDate`` of the calendar year keeps that year's tiles and
    ``mosaic`` joins them (tiles do not overlap). Values are unitless (−1 … 1).
    """
    s = spec.sensors[key]
    start, end = _date_range(year)
    src = [s.bands.get(v, v) for v in variables]
    col = ee.ImageCollection(s.collection).filterBounds(region).filterDate(start, end)
    return col.select(src).mosaic().rename(variables)


def _placeholder(variables: list[str]) -> ee.Image:
    return ee.Image.constant([0] * len(variables)).rename(variables).float().updateMask(0)


def _reduce(col: ee.ImageCollection, features: list[Feature], variables: list[str]) -> ee.Image:
    """Reduce one window's collection for features sharing that window; bands = feature names."""
    pct = sorted({int(f.percentile) for f in features if f.percentile is not None})
    parts = []
    padded = col.merge(ee.ImageCollection([_placeholder(variables)]))
    if pct:
        parts.append(padded.reduce(ee.Reducer.percentile(pct)))
    if any(f.stat == "median" for f in features):
        parts.append(padded.reduce(ee.Reducer.median()))
    if any(f.stat == "mean" for f in features):
        parts.append(padded.reduce(ee.Reducer.mean()))
    if any(f.stat == "stddev" for f in features):
        parts.append(padded.reduce(ee.Reducer.stdDev()))
    for stat, reducer in (("min", ee.Reducer.min()), ("max", ee.Reducer.max())):
        if any(f.stat == stat for f in features):
            parts.append(padded.reduce(reducer))
    for f in features:  # focal stdDev of the annual median (ELC10's ndvi_texture_sd)
        if f.stat == "texture_sd":
            med = padded.select([f.source]).reduce(ee.Reducer.median())
            parts.append(
                med.reduceNeighborhood(
                    reducer=ee.Reducer.stdDev(), kernel=ee.Kernel.square(f.kernel_radius_px or 1, "pixels")
                ).rename([f"{f.name}__texture"])
            )
    img = ee.Image.cat(parts)
    # GEE names the outputs <variable>_p5 / <variable>_median / _mean / _stdDev / _min / _max
    suffix = {"median": "median", "mean": "mean", "stddev": "stdDev", "min": "min", "max": "max"}
    src = [
        f"{f.name}__texture"
        if f.stat == "texture_sd"
        else f"{f.source}_{f.stat if f.percentile is not None else suffix[f.stat]}"
        for f in features
    ]
    return img.select(src, [f.name for f in features])


def _sensor_image(spec: FeatureSpec, key: str, features: list[Feature], year: int, region: ee.Geometry) -> ee.Image:
    sensor: Sensor = spec.sensors[key]
    variables = _variables(spec, features)
    if sensor.kind in SNAPSHOT_KINDS:
        bad = [f.name for f in features if f.stat != "value"]
        if bad:
            raise SpecError(f"{sensor.kind} features {bad} need stat 'value'", "Set stat: value")
        if sensor.kind == "dem":
            img = dem_image(spec, key, variables)
        else:
            img = embedding_image(spec, key, variables, year, region)
        return img.select([f.source for f in features], [f.name for f in features])
    by_orbit: dict[str | None, dict[tuple[int, ...], list[Feature]]] = defaultdict(lambda: defaultdict(list))
    for f in features:
        if f.stat == "value":
            raise SpecError(
                f"feature {f.name!r}: stat 'value' is for DEM and embedding features only", "Use a temporal statistic"
            )
        if f.orbit and sensor.kind != "s1":
            raise SpecError(
                f"feature {f.name!r}: orbit {f.orbit} is for Sentinel-1 features only",
                "Remove `orbit` from this feature",
            )
        by_orbit[f.orbit][f.window.months].append(f)
    parts = []
    for orbit, by_window in by_orbit.items():  # one collection per orbit pass (None: both)
        feats_o = [f for fs in by_window.values() for f in fs]
        if sensor.kind == "s1":
            col = s1_collection(spec, key, _variables(spec, feats_o), year, region, orbit)
        else:
            col = {"s2": s2_collection, "lst": lst_collection}[sensor.kind](spec, key, variables, year, region)
        for months, feats in by_window.items():
            sub = col
            if months != tuple(range(1, 13)):
                sub = col.filter(ee.Filter.Or(*[ee.Filter.calendarRange(m, m, "month") for m in months]))
            parts.append(_reduce(sub, feats, _variables(spec, feats)))
    return ee.Image.cat(parts)


def feature_image(spec: FeatureSpec, year: int, region: ee.Geometry) -> ee.Image:
    """All features of ``spec`` (or of a subset spec) as one image, bands in spec order.

    Args:
        spec: the feature spec; ``spec.subset(selection.names)`` for a FeatureSelection.
        year: the map year (calendar year).
        region: the area, used for ``filterBounds`` (EPSG:4326 or any ee projection).

    Returns:
        ``ee.Image`` with ``len(spec.names)`` float bands named ``spec.names``, physical units.

    Raises:
        SpecError: a year the spec's sensors do not cover, a statistic outside its sensor
            (``value`` off the DEM), or an orbit on a non-S1 feature.
    """
    check_year(spec, year)
    groups: dict[str, list[Feature]] = defaultdict(list)
    for f in spec.features:
        if not f.derived:
            groups[f.sensor].append(f)
    img = ee.Image.cat([_sensor_image(spec, key, feats, year, region) for key, feats in groups.items()])
    derived = [f for f in spec.features if f.derived]
    if derived:  # expressions over other features' physical values (ELC10's dpol = VH dB / VV dB)
        img = img.addBands(
            ee.Image.cat(
                [
                    img.expression(f.derived, {n: img.select([n]) for n in spec.derived_inputs(f)}).rename([f.name])
                    for f in derived
                ]
            )
        )
    return img.select(spec.names)


def export_image(spec: FeatureSpec, year: int, region: ee.Geometry) -> ee.Image:
    """The image both sampling and tile exports use: features × spec scale, rounded, cast to
    the spec's export dtype (int16 for ``bridge-lc-196``); masked pixels stay masked.
    """
    img = feature_image(spec, year, region)
    scaled = img.multiply(ee.Image.constant([f.scale for f in spec.features])).rename(spec.names)
    if spec.export_dtype == "int16":
        return scaled.round().toInt16()
    return scaled.toFloat()
