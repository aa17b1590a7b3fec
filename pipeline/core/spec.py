"""The declarative feature spec: one YAML file that both feature engines read.

A spec names every feature with its sensor, its source (a band, a named index, or an
expression string such as ``(B8 - B4) / (B8 + B4)``), its temporal window, its statistic and
its scale. The Earth Engine engine (``gee_scripts``) evaluates the expression strings with
``ee.Image.expression``; the local engine (``tiles.engine.features``) evaluates the same strings
with numexpr. One definition, two engines: training and inference features cannot drift
(DESIGN.md §2).

Units: every value a feature engine produces is ``physical * scale``, where the physical
value is reflectance (0–1) for optical bands, unitless for indices, dB for σ⁰ in dB,
kelvin for LST and metres for elevation.

Shipped specs live in ``pipeline/specs/<name>.yaml``; :func:`load_spec` takes a name or a path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.core.errors import SpecError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PERCENTILE = re.compile(r"p(\d{1,2})$")
STATS = ("median", "mean", "stddev", "texture_sd", "min", "max", "value")


EXPRESSION_FUNCTIONS = frozenset({"sqrt", "log", "log10", "exp", "abs"})
"""Function names allowed in expression strings (numexpr and ``ee.Image.expression`` both have them)."""


def expression_inputs(expr: str) -> set[str]:
    """The band/variable names an expression string reads (its identifiers minus functions)."""
    return set(_IDENT.findall(expr)) - EXPRESSION_FUNCTIONS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CloudMask(_Strict):
    """Mask pixels whose s2cloudless probability (0–100) satisfies ``probability <op> value``.

    ELC10 keeps ``probability < 40`` (``op: ">="``, 40); BRIDGE-LC masks ``probability > 75``
    (``op: ">"``, 75).
    """

    op: Literal[">=", ">"]
    value: float


UNITS_BY_KIND: dict[str, tuple[str, ...]] = {
    "s2": ("reflectance",),
    "s1": ("dB", "linear"),
    "lst": ("K",),
    "dem": ("m",),
    "embedding": ("unitless",),
}
"""The units each engine can give a sensor's band values: S1 expressions read σ⁰ in dB or linear
(both engines convert from what the source stores); the other sensors have one unit (learned
embedding coordinates have none)."""

SNAPSHOT_KINDS = ("dem", "embedding")
"""Sensor kinds with one layer per year or none (terrain; AlphaEarth's annual embedding): their
features take stat ``value`` and no other, and have no temporal window to reduce."""


class Sensor(_Strict):
    """One sensor's collection, bands and masking rules.

    Attributes:
        kind: ``s2`` (optical), ``s1`` (SAR), ``lst``, ``dem``, or ``embedding`` (an annual
            learned embedding such as AlphaEarth Foundations' ``GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL``,
            Brown et al. 2025, arXiv 2507.22291: one image per year, 64 unitless bands ``A00``–``A63``).
        collection: the GEE asset ID the features come from (e.g. ``COPERNICUS/S2``).
        is_image: the asset is a single ``ee.Image`` (a DEM), not an ImageCollection.
        level: processing level, e.g. ``L1C`` (TOA) or ``L2A`` (BOA); for an embedding, the
            embedding model's version (``V1``), since another version gives other values.
        units: the unit of the band values the expressions read: ``reflectance`` (0–1, S2),
            ``dB`` or ``linear`` (S1 σ⁰: both engines convert from the stored unit), ``K``
            (LST), ``m`` (DEM) or ``unitless`` (embedding); see :data:`UNITS_BY_KIND`.
        dn_per_unit: stored DN per physical unit (S2: 10000 DN per reflectance; MOD21C3
            LST_Day: 50 DN per kelvin, i.e. scale factor 0.02).
        bands: spec band name → asset band name where they differ (``LST: LST_Day``).
        available_from: first date the collection covers (ISO); earlier years are refused.
        scene_cloud_max_pct: keep scenes with CLOUDY_PIXEL_PERCENTAGE strictly below this.
        cloud_probability: the s2cloudless pixel mask rule.
        cloud_probability_collection: the collection joined on ``system:index`` for it.
        scl_mask: Sen2Cor SCL classes to mask (L2A only), e.g. ``[1, 9, 10, 11]``.
        daily_mosaic: mosaic acquisitions of the same day before compositing.
        instrument_mode: S1 instrument mode filter (``IW``).
        polarisations: S1 polarisations every scene must have (``[VV, VH]``).
        focal_median_radius_m: S1 speckle filter: focal median over a circle of this radius.
    """

    kind: Literal["s2", "s1", "lst", "dem", "embedding"]
    collection: str
    is_image: bool = False
    level: str | None = None
    units: Literal["reflectance", "dB", "linear", "K", "m", "unitless"]
    dn_per_unit: float = 1.0
    bands: dict[str, str] = Field(default_factory=dict)
    available_from: str | None = None
    scene_cloud_max_pct: float | None = None
    cloud_probability: CloudMask | None = None
    cloud_probability_collection: str | None = None
    scl_mask: tuple[int, ...] = ()
    daily_mosaic: bool = False
    instrument_mode: str | None = None
    polarisations: tuple[str, ...] = ()
    focal_median_radius_m: float | None = None

    @model_validator(mode="after")
    def _units_fit_kind(self) -> Sensor:
        allowed = UNITS_BY_KIND[self.kind]
        if self.units not in allowed:
            raise ValueError(f"a {self.kind} sensor's units must be one of {list(allowed)}, not {self.units!r}")
        return self


class Window(_Strict):
    """A temporal window inside the map year: the calendar months it keeps (1–12).

    ``months: [12, 1, 2]`` keeps January, February and December of the same year, as GEE's
    ``ee.Filter.calendarRange(12, 2, 'month')`` does.
    """

    months: tuple[int, ...] = tuple(range(1, 13))

    @field_validator("months")
    @classmethod
    def _months_valid(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        bad = [m for m in v if not 1 <= m <= 12]
        if bad or not v:
            raise ValueError(f"months must be a non-empty list of 1..12, got {list(v)}")
        return v


class Feature(_Strict):
    """One feature of a spec.

    Attributes:
        name: the stable column / band name (e.g. ``ndvi_p50``).
        sensor: a key of the spec's ``sensors``.
        source: a band (``B8``), an index name defined in ``indices``, or an expression string.
            Ignored when ``derived`` is set.
        window: the months of the map year that are composited.
        stat: ``pN`` (percentile N of the masked time series), ``median``, ``mean``,
            ``stddev`` (population), ``min``, ``max``, ``texture_sd`` (focal standard
            deviation of the annual median over a square of ``kernel_radius_px``), or ``value``
            (the one layer of a DEM or of the year's embedding; see :data:`SNAPSHOT_KINDS`).
        kernel_radius_px: radius of the square kernel for ``texture_sd`` (3 → 7 × 7 pixels).
        orbit: S1 orbit direction filter, ``ASCENDING`` or ``DESCENDING``.
        derived: an expression over other features' physical values, computed after
            compositing (e.g. a ratio of medians). Takes precedence over ``source``/``stat``.
        scale: stored value = physical value × scale.
        description: free text, including the source of the definition.
    """

    name: str
    sensor: str
    source: str = ""
    window: Window = Window()
    stat: str = "median"
    kernel_radius_px: int | None = None
    orbit: Literal["ASCENDING", "DESCENDING"] | None = None
    derived: str | None = None
    scale: float = 1.0
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name_valid(cls, v: str) -> str:
        if not _IDENT.fullmatch(v):
            raise ValueError(f"feature name {v!r} must be an identifier like 'ndvi_p50'")
        return v

    @field_validator("stat")
    @classmethod
    def _stat_valid(cls, v: str) -> str:
        m = _PERCENTILE.match(v)
        if v not in STATS and not (m and 0 <= int(m.group(1)) <= 100):
            raise ValueError(f"stat {v!r} is not one of {STATS} or pN (percentile, 0..100)")
        return v

    @model_validator(mode="after")
    def _source_or_derived(self) -> Feature:
        if not self.derived and not self.source:
            raise ValueError(f"feature {self.name!r} needs a 'source' or a 'derived' expression")
        if self.stat == "texture_sd" and not self.kernel_radius_px:
            raise ValueError(f"feature {self.name!r}: texture_sd needs kernel_radius_px")
        return self

    @property
    def percentile(self) -> float | None:
        """The percentile (0–100) when ``stat`` is ``pN``, else None."""
        m = _PERCENTILE.match(self.stat)
        return float(m.group(1)) if m else None


class FeatureSpec(_Strict):
    """A whole feature spec: sensors, named index expressions and the ordered features.

    Attributes:
        name: the spec's name (``elc10``, ``bridge-lc-196``).
        version: an integer bumped on any change of meaning.
        description: what the spec reproduces, and its source.
        year: the default map year.
        export_dtype: the dtype of exported feature rasters (stored values are rounded for int16).
        sensors: sensor key → :class:`Sensor`.
        indices: index name → expression string over band names (reflectance 0–1).
        features: the features, in band/column order.
    """

    name: str
    version: int = 1
    description: str = ""
    year: int
    export_dtype: Literal["int16", "float32"] = "float32"
    sensors: dict[str, Sensor]
    indices: dict[str, str] = Field(default_factory=dict)
    features: tuple[Feature, ...]

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        names = [f.name for f in self.features]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate feature names: {dup}")
        for f in self.features:
            if f.sensor not in self.sensors:
                raise ValueError(
                    f"feature {f.name!r} names sensor {f.sensor!r}, which is not one of {sorted(self.sensors)}"
                )
            kind = self.sensors[f.sensor].kind
            if not f.derived and (kind in SNAPSHOT_KINDS) != (f.stat == "value"):
                raise ValueError(
                    f"feature {f.name!r}: stat 'value' is for DEM and embedding features, and they take "
                    f"stat 'value' only (got {f.stat!r} on a {kind} sensor)"
                )
            if kind in SNAPSHOT_KINDS and f.window.months != tuple(range(1, 13)):
                raise ValueError(f"feature {f.name!r}: a {kind} feature has no months to choose; remove its window")
            if f.orbit and kind != "s1":
                raise ValueError(f"feature {f.name!r}: orbit {f.orbit} is for Sentinel-1 features only")
            if f.derived:
                unknown = set(_IDENT.findall(f.derived)) - set(names)
                if unknown:
                    raise ValueError(f"feature {f.name!r}: derived names unknown features {sorted(unknown)}")
        return self

    @property
    def names(self) -> list[str]:
        """The feature names in spec order."""
        return [f.name for f in self.features]

    def feature(self, name: str) -> Feature:
        """Return the feature called ``name``; raise :class:`SpecError` if there is none."""
        for f in self.features:
            if f.name == name:
                return f
        raise SpecError(f"spec {self.name!r} has no feature {name!r}", "Check the spelling")

    def expression(self, feature: Feature) -> str:
        """The expression string of ``feature``'s source, with named indices expanded."""
        return self.indices.get(feature.source, feature.source)

    def derived_inputs(self, feature: Feature) -> list[str]:
        """The feature names a derived feature's expression reads (empty if not derived)."""
        return sorted(expression_inputs(feature.derived)) if feature.derived else []

    def inputs(self, feature: Feature) -> set[str]:
        """The band names ``feature`` reads (for a derived feature, its inputs' bands)."""
        if feature.derived:
            out: set[str] = set()
            for n in self.derived_inputs(feature):
                out |= self.inputs(self.feature(n))
            return out
        return expression_inputs(self.expression(feature))

    def subset(self, names: list[str]) -> FeatureSpec:
        """A spec with only ``names``, in the given order (inputs of derived ones must be in it).

        Raises:
            SpecError: a name is not in this spec, or a derived feature's inputs are not selected.
        """
        missing = [n for n in names if n not in self.names]
        if missing:
            raise SpecError(
                f"feature selection names {missing} which spec {self.name!r} does not have",
                f"Use names from the spec: {self.names[:6]}...",
            )
        try:  # through the validators: a derived feature without its inputs is refused
            return FeatureSpec.model_validate(
                {**self.model_dump(), "features": [self.feature(n).model_dump() for n in names]}
            )
        except ValidationError as e:
            raise SpecError(
                f"the selection {names[:4]}{'...' if len(names) > 4 else ''} of spec {self.name!r} "
                f"is not a valid spec: {e.errors()[0]['msg']}",
                "Select the features a derived feature reads as well",
            ) from None

    def digest(self) -> str:
        """SHA-256 (hex, first 16 chars) of the canonical JSON of the spec."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def check_year(spec: FeatureSpec, year: int) -> None:
    """Refuse a year that a spec sensor does not cover (e.g. S2 L2A harmonized before 2017);
    every engine that builds features remotely (Earth Engine, openEO) calls it first.

    Raises:
        SpecError: naming the sensor, its collection and its first date.
    """
    this_year = dt.date.today().year
    if year > this_year:
        raise SpecError(f"year {year} is in the future", f"Use a year up to {this_year}")
    for key in {f.sensor for f in spec.features}:
        s = spec.sensors[key]
        if s.available_from and year < int(s.available_from[:4]):
            raise SpecError(
                f"year {year} is outside {s.collection} (sensor {key!r}), which starts on {s.available_from}",
                f"Use a year from {s.available_from[:4]} on",
            )


def shipped_specs() -> list[str]:
    """Names of the specs shipped in ``pipeline/specs``."""
    root = resources.files("pipeline") / "specs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_spec(name_or_path: str | Path) -> FeatureSpec:
    """Load and validate a feature spec by shipped name (``elc10``) or by YAML path.

    Raises:
        SpecError: the file does not exist, is not YAML, has an unknown key, or is
            inconsistent. The message names the file and the key.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        if str(name_or_path) not in shipped_specs():
            raise SpecError(
                f"no shipped spec called {name_or_path!r}",
                f"Use one of {shipped_specs()} or a path to a .yaml spec",
            )
        text = (resources.files("pipeline") / "specs" / f"{name_or_path}.yaml").read_text()
        where: str | Path = f"pipeline/specs/{name_or_path}.yaml"
    else:
        if not path.is_file():
            raise SpecError("spec file not found", "Give an existing .yaml path", path=path)
        text = path.read_text(encoding="utf-8")
        where = path
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(f"not valid YAML ({e})", "Fix the YAML syntax", path=where) from None
    try:
        return FeatureSpec.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        if err["type"] == "extra_forbidden":
            raise SpecError(
                f"unknown spec key {loc!r}",
                "Remove it or fix its spelling (see pipeline/core/spec.py for the allowed keys)",
                path=where,
            ) from None
        raise SpecError(f"invalid spec at {loc!r}: {err['msg']}", "Fix that entry", path=where) from None
