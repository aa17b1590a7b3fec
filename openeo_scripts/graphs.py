"""openEO process graphs of a feature spec: the third engine, beside Earth Engine and the local one.

Every feature is built from the spec, as :mod:`gee_scripts.images` builds it for Earth Engine and
:mod:`tiles.engine.features` computes it locally (one spec, three engines):

- **Load**: ``load_collection`` of the back-end's collection for the sensor
  (:mod:`openeo_scripts.backends`) over the tile's EPSG:3035 extent and the calendar year, scenes
  with ``eo:cloud_cover`` below the spec's ``scene_cloud_max_pct``; each variable is then
  resampled (``resample_spatial``) to the 10 m EEA grid (EPSG:3035, nearest neighbour: the 20 m
  bands and the DEM are used at 10 m as Earth Engine samples them).
- **Cloud mask**: what :func:`pipeline.core.cloud_mask.resolve_cloud_mask` decides for the
  collection's layers (the spec's s2cloudless rule where the collection has ``CLP``, its SCL
  classes where it has ``SCL``, the SCL fallback for an s2cloudless-only spec) applied with
  ``mask``; a ``VALID`` layer masks its zeros. What was applied is returned and recorded.
- **Variables**: the spec's expression strings (indices expanded) as openEO band math on
  reflectance (DN / ``dn_per_unit``), or the collection's precomputed index of that name.
  Sentinel-1: ``sar_backscatter`` (σ⁰ ellipsoid, linear) on the scenes of the feature's pass
  (``sat:orbit_state``), in dB where the spec reads dB (10·log10).
- **Daily mosaic**: ``aggregate_temporal_period(day, last)``, the later acquisition on top.
- **Window**: the feature's months, ``filter_temporal`` per run of consecutive months, joined
  with ``merge_cubes`` (``[12, 1, 2]``: January–February and December of the year).
- **Statistics** over ``t`` (``reduce_dimension``, nodata ignored): ``pN`` = ``quantiles``
  (type 7, linear interpolation, as ``numpy.nanpercentile``); ``median``, ``mean``, ``min``,
  ``max``; ``stddev`` = the population standard deviation (``sd`` is the sample one:
  × √((n − 1)/n)); ``texture_sd`` = the population standard deviation over the (2r+1)² square
  of the annual median, over valid pixels (three box sums with ``apply_kernel``, as
  :func:`tiles.engine.features` computes it: Σx²/n − (Σx/n)²); DEM = its one layer.
- **Derived** features are band math over the other features' physical values.
- Each feature × its ``scale`` becomes a band named as the feature; bands in spec order.

Refused in one line (:class:`~pipeline.core.errors.SpecError`): a sensor kind the back-end has
no collection for (MODIS LST, learned embeddings on CDSE), the Sentinel-1 focal median (openEO
has no focal-median process), an expression function openEO band math lacks.
"""

from __future__ import annotations

import ast
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openeo.metadata import Band, BandDimension, CollectionMetadata, SpatialDimension, TemporalDimension
from openeo.rest.datacube import DataCube

from openeo_scripts.backends import Backend, Collection
from pipeline.core.cloud_mask import CloudMaskChoice, resolve_cloud_mask
from pipeline.core.errors import SpecError
from pipeline.core.grid import TileId
from pipeline.core.spec import Feature, FeatureSpec, check_year, expression_inputs

RES_M = 10
"""The output grid's pixel size (the EEA 10 m grid)."""

SENSOR_NAMES = {
    "lst": "MODIS MOD21C3 LST",
    "embedding": "a learned embedding",
    "s1": "Sentinel-1",
    "s2": "Sentinel-2",
    "dem": "a DEM",
}
"""How a refusal names each sensor kind."""


@dataclass(frozen=True)
class Built:
    """A spec's features as one openEO cube.

    Attributes:
        cube: bands = the spec's feature names, in order; values physical × scale (float).
        computed: the spec as computed (cloud mask adapted to the collection, S2 level set to
            the collection's): what the plan's sidecar records as the feature contract.
        cloud_mask: one sentence per S2 sensor saying which mask was applied.
        collections: sensor key → the collection ID loaded.
    """

    cube: DataCube
    computed: FeatureSpec
    cloud_mask: str
    collections: dict[str, str]


def tile_extent(tile: TileId) -> dict[str, Any]:
    """The tile's bounds as an openEO spatial extent in EPSG:3035 (metres)."""
    w, s, e, n = tile.bounds
    return {"west": w, "south": s, "east": e, "north": n, "crs": 3035}


def _months_runs(months: tuple[int, ...]) -> list[tuple[int, int]]:
    """Runs of consecutive calendar months (first, last) within the year: [12, 1, 2] → [(1, 2), (12, 12)]."""
    ms = sorted(set(months))
    runs: list[tuple[int, int]] = []
    for m in ms:
        if runs and m == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], m)
        else:
            runs.append((m, m))
    return runs


def _month_start(year: int, month: int) -> str:
    return dt.date(year + (month > 12), (month - 1) % 12 + 1, 1).isoformat()


def _in_window(cube: DataCube, months: tuple[int, ...], year: int) -> DataCube:
    """The acquisitions of ``year`` in the calendar ``months``."""
    if set(months) == set(range(1, 13)):
        return cube
    parts = [cube.filter_temporal(_month_start(year, a), _month_start(year, b + 1)) for a, b in _months_runs(months)]
    out = parts[0]
    for p in parts[1:]:
        out = out.merge_cubes(p)
    return out


def _evaluate(expr: str, refs: dict[str, Any], where: str) -> Any:
    """The spec expression string ``expr`` as openEO band math over ``refs`` (name → cube).

    Raises:
        SpecError: a construct or function openEO band math lacks (naming ``where``).
    """
    funcs: dict[str, Callable[[Any], Any]] = {
        "log10": lambda x: x.log10(),
        "log": lambda x: x.ln(),
        "sqrt": lambda x: x**0.5,
    }

    def ev(node: ast.AST) -> Any:
        match node:
            case ast.Expression(body=body):
                return ev(body)
            case ast.BinOp(left=left, op=op, right=right):
                a, b = ev(left), ev(right)
                match op:
                    case ast.Add():
                        return a + b
                    case ast.Sub():
                        return a - b
                    case ast.Mult():
                        return a * b
                    case ast.Div():
                        return a / b
                    case ast.Pow():
                        return a**b
            case ast.UnaryOp(op=ast.USub(), operand=operand):
                return -ev(operand)
            case ast.Constant(value=v) if isinstance(v, int | float):
                return v
            case ast.Name(id=name) if name in refs:
                return refs[name]
            case ast.Call(func=ast.Name(id=fn), args=[arg]) if fn in funcs:
                return funcs[fn](ev(arg))
        raise SpecError(
            f"{where}: {ast.unparse(node)!r} in {expr!r} has no openEO band-math form",
            "Write the expression with + - * / ** and log10, log or sqrt, or select features without it",
        )

    return ev(ast.parse(expr, mode="eval"))


def _reduce(cube: DataCube, f: Feature) -> DataCube:
    """Reduce the feature's window over ``t`` with its statistic."""
    p = f.percentile
    if p is not None:
        return cube.reduce_dimension(
            dimension="t", reducer=lambda x: x.quantiles(probabilities=[p / 100]).array_element(0)
        )
    if f.stat in ("median", "mean", "min", "max"):
        return cube.reduce_dimension(dimension="t", reducer=f.stat)
    if f.stat == "stddev":  # population (ee.Reducer.stdDev, ddof 0) from the sample sd
        return cube.reduce_dimension(dimension="t", reducer=lambda x: x.sd() * ((x.count() - 1) / x.count()) ** 0.5)
    if f.stat == "value":
        return cube.reduce_dimension(dimension="t", reducer="first")
    if f.stat == "texture_sd":
        med = cube.reduce_dimension(dimension="t", reducer="median")
        r = f.kernel_radius_px or 1
        box = [[1.0] * (2 * r + 1) for _ in range(2 * r + 1)]
        n = med.apply(lambda x: x * 0 + 1).apply_kernel(box, border=0, replace_invalid=0)  # valid pixels
        s1 = med.apply_kernel(box, border=0, replace_invalid=0)
        s2 = med.apply(lambda x: x * x).apply_kernel(box, border=0, replace_invalid=0)
        var: DataCube = s2 / n - (s1 / n).apply(lambda x: x * x)
        sd = var.apply(lambda x: ((x + x.absolute()) / 2).sqrt())  # max(var, 0)^½
        return sd + med.apply(lambda x: x * 0)  # NaN where the median is
    raise SpecError(f"feature {f.name!r}: statistic {f.stat!r} has no openEO form", "Use another statistic")


def _metadata(extent: dict[str, Any], start: str, end: str, bands: list[str]) -> CollectionMetadata:
    """The dimensions of a loaded collection (x, y in EPSG:3035, t, bands), as a back-end reports them."""
    return CollectionMetadata(
        metadata={},
        dimensions=[
            SpatialDimension("x", extent=[extent["west"], extent["east"]], crs=3035),
            SpatialDimension("y", extent=[extent["south"], extent["north"]], crs=3035),
            TemporalDimension("t", extent=[start, end]),
            BandDimension("bands", bands=[Band(b) for b in bands]),
        ],
    )


def _refuse(spec: FeatureSpec, f: Feature, backend: Backend, why: str) -> SpecError:
    s = spec.sensors[f.sensor]
    return SpecError(
        f"feature {f.name!r} needs {SENSOR_NAMES.get(s.kind, s.kind)} ({s.collection}), and the openEO back-end "
        f"{backend.name} {why}",
        "Select features without it, or build them with Earth Engine or the local engine",
    )


def _reads(spec: FeatureSpec, f: Feature, coll: Collection) -> set[str]:
    """The spec band names feature ``f`` reads from ``coll``: a precomputed index of that name
    (the collection has it), else the bands of its expression.
    """
    if f.source in spec.indices and f.source in coll.bands:
        return {f.source}
    return spec.inputs(f)


def _collection(spec: FeatureSpec, f: Feature, backend: Backend, level: str) -> Collection:
    kind = spec.sensors[f.sensor].kind
    coll = {"s2": backend.s2.get(level), "s1": backend.s1, "dem": backend.dem}.get(kind)
    if coll is None:
        raise _refuse(spec, f, backend, "has no collection for it")
    return coll


def feature_cube(
    spec: FeatureSpec,
    year: int,
    extent: dict[str, Any],
    backend: Backend,
    level: str = "L2A",
    cloud_mask: CloudMaskChoice = "auto",
) -> Built:
    """Build the openEO cube of every feature of ``spec`` (a selection's sub-spec) for ``year``.

    Args:
        spec: the features to build, in band order.
        year: the calendar year composited.
        extent: the spatial extent (:func:`tile_extent`: EPSG:3035 bounds of a tile).
        backend: the back-end's collections (:data:`openeo_scripts.backends.CDSE`).
        level: the Sentinel-2 processing level loaded (``L2A`` carries SCL).
        cloud_mask: ``auto`` or ``none`` (:func:`pipeline.core.cloud_mask.resolve_cloud_mask`).

    Returns:
        :class:`Built`: the cube (bands = feature names, physical × scale), the spec as computed,
        the cloud mask applied and the collections loaded.

    Raises:
        SpecError: a year outside a sensor's collection, or a feature the back-end cannot build
            (the module docstring lists them); the message names the feature.
        RasterError: the spec masks clouds by layers the collection does not carry.
    """
    check_year(spec, year)
    for f in spec.features:
        if f.derived:
            continue
        s = spec.sensors[f.sensor]
        coll = _collection(spec, f, backend, level)
        if s.kind == "s1" and s.focal_median_radius_m:
            raise _refuse(spec, f, backend, "has no focal-median process for its speckle filter")
        for band in sorted(_reads(spec, f, coll)):
            if band not in coll.bands:
                raise _refuse(spec, f, backend, f"has no band {band!r} in its collection {coll.id}")
    s2_layers = set(backend.s2[level].layers) if level in backend.s2 else set()
    computed, said = resolve_cloud_mask(spec, s2_layers, cloud_mask)
    sensors = {k: (s.model_copy(update={"level": level}) if s.kind == "s2" else s) for k, s in computed.sensors.items()}
    computed = computed.model_copy(update={"sensors": sensors})
    start, end = f"{year}-01-01", f"{year + 1}-01-01"
    loads: dict[tuple[str, str | None], DataCube] = {}
    collections: dict[str, str] = {}

    def load(key: str, orbit: str | None) -> DataCube:
        if (key, orbit) in loads:
            return loads[(key, orbit)]
        s = computed.sensors[key]
        feats = [f for f in computed.features if f.sensor == key and not f.derived]
        coll = _collection(computed, feats[0], backend, level)
        bands = sorted({coll.bands[b] for f in feats for b in _reads(computed, f, coll)})
        layers = [m for m, on in (("SCL", bool(s.scl_mask)), ("CLP", s.cloud_probability is not None)) if on]
        layers += ["VALID"] if "VALID" in coll.layers else []
        props: dict[str, Any] = {}
        if orbit:
            state = orbit.lower()  # STAC sat:orbit_state values are lower case
            props["sat:orbit_state"] = lambda x, o=state: x == o
        if s.instrument_mode:
            props["sar:instrument_mode"] = lambda x, m=s.instrument_mode: x == m
        if s.scene_cloud_max_pct is not None and coll.cloud_cover:
            props[coll.cloud_cover] = lambda x, v=s.scene_cloud_max_pct: x < v
        names = bands + [m for m in layers if m not in bands]
        loaded = DataCube.load_collection(
            coll.id,
            connection=None,
            spatial_extent=extent,
            temporal_extent=[start, end] if s.kind != "dem" else None,
            bands=names,
            fetch_metadata=False,
            properties=props or None,
        )
        # offline, the client knows the cube's dimensions only if told (x, y, t, bands)
        cube = DataCube(graph=loaded.from_node(), connection=None, metadata=_metadata(extent, start, end, names))
        if s.kind == "s1" and backend.s1_backscatter:
            cube = cube.sar_backscatter(coefficient="sigma0-ellipsoid")
        masks: list[DataCube] = []
        if s.cloud_probability is not None:
            clp = cube.band("CLP")
            masks.append(
                clp >= s.cloud_probability.value if s.cloud_probability.op == ">=" else clp > s.cloud_probability.value
            )
        for c in s.scl_mask:
            masks.append(cube.band("SCL") == c)
        if "VALID" in layers:
            masks.append(cube.band("VALID") == 0)
        if masks:
            cond = masks[0]
            for m in masks[1:]:
                cond = cond | m
            cube = cube.mask(cond)
        loads[(key, orbit)] = cube
        collections[key] = coll.id
        return cube

    variables: dict[tuple[str, str, str | None], DataCube] = {}

    def variable(f: Feature) -> DataCube:
        k = (f.sensor, f.source, f.orbit)
        if k in variables:
            return variables[k]
        s = computed.sensors[f.sensor]
        cube = load(f.sensor, f.orbit)
        coll = _collection(computed, f, backend, level)
        if f.source in coll.bands and f.source in computed.indices:  # a precomputed index, as stored
            v = cube.band(coll.bands[f.source])
        else:
            refs: dict[str, Any] = {}
            for b in expression_inputs(computed.expression(f)):
                x: Any = cube.band(coll.bands[b])
                if s.kind == "s1" and s.units == "dB":
                    x = x.log10() * 10
                elif coll.dn_scaled and s.dn_per_unit != 1:
                    x = x / s.dn_per_unit
                refs[b] = x
            v = _evaluate(computed.expression(f), refs, f"feature {f.name!r}")
        # onto the 10 m EEA grid (nearest: masking before or after gives the same pixels)
        v = v.resample_spatial(resolution=RES_M, projection=3035, method="near")
        if s.daily_mosaic:
            v = v.aggregate_temporal_period(period="day", reducer="last")
        variables[k] = v
        return v

    physical: dict[str, DataCube] = {}  # feature → a one-band cube (the band named as the feature)
    for f in computed.features:
        if f.derived:
            names = computed.derived_inputs(f)
            inputs = physical[names[0]]
            for n in names[1:]:
                inputs = inputs.merge_cubes(physical[n])
            value = _evaluate(f.derived, {n: inputs.band(n) for n in names}, f"feature {f.name!r}")
            physical[f.name] = value.add_dimension(name="bands", label=f.name, type="bands")
        else:
            # the one-band cube of the variable (merge_cubes of the window's runs needs a band dimension)
            v = variable(f).add_dimension(name="bands", label=f.source, type="bands")
            reduced = _reduce(_in_window(v, f.window.months, year), f)
            physical[f.name] = reduced.rename_labels(dimension="bands", target=[f.name], source=[f.source])
    bands = [physical[f.name] * f.scale if f.scale != 1 else physical[f.name] for f in computed.features]
    out = bands[0]
    for b in bands[1:]:
        out = out.merge_cubes(b)
    return Built(out.filter_bbox(**extent), computed, said, collections)


def tile_graph(built: Built) -> dict[str, Any]:
    """The batch job's process graph (flat JSON): the cube saved as a GeoTIFF."""
    return dict(built.cube.save_result(format="GTiff").flat_graph())
