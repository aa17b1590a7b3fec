"""The feature contract: what a set of features *means*, carried by every artifact and checked
at every hand-over (selection → table → bundle → feature COG → class COG / STAC item).

A feature's **semantics** are the fields that change its values: the sensor kind, its
processing level, the band units, the DN scale, the scene and pixel cloud masks, the S1 mode,
polarisations, orbit pass and speckle filter, the source expression (indices expanded,
whitespace removed), the temporal window, the statistic (and texture kernel), a derived
expression with its inputs' semantics, and the stored scale. Names, descriptions and the GEE
asset ID are not semantics (the local engine reads other collections of the same product).

The **features digest** is the SHA-256 (first 16 hex) of the ordered ``[name, semantics]``
list: equal digests mean equal features in equal order. Every artifact also embeds the spec of
its features (``feature_spec``: the selected sub-spec as JSON), so a consumer can say *which*
feature differs and *how*, and a bundle can recompute its own features without naming the spec
a second time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from pipeline.core.errors import ContractError
from pipeline.core.spec import FeatureSpec, load_spec, shipped_specs

MASK_FIELDS = ("scene_cloud_max_pct", "cloud_probability", "scl_mask")
"""Semantic fields that together form the cloud mask (``accept={"cloud_mask"}`` tolerates them)."""

FIELD_GROUPS: dict[str, str] = {f: "cloud_mask" for f in MASK_FIELDS}
"""Semantic field → the group name an ``accept`` set may name (others are named as themselves)."""


def feature_semantics(spec: FeatureSpec, name: str) -> dict[str, Any]:
    """The JSON-able semantics of feature ``name`` of ``spec`` (see the module docstring).

    Raises:
        SpecError: ``spec`` has no feature ``name``.
    """
    f = spec.feature(name)
    s = spec.sensors[f.sensor]
    sem: dict[str, Any] = {
        "sensor": s.kind,
        "level": s.level,
        "units": s.units,
        "dn_per_unit": s.dn_per_unit,
        "scene_cloud_max_pct": s.scene_cloud_max_pct,
        "cloud_probability": s.cloud_probability.model_dump() if s.cloud_probability else None,
        "scl_mask": list(s.scl_mask),
        "daily_mosaic": s.daily_mosaic,
        "instrument_mode": s.instrument_mode,
        "polarisations": list(s.polarisations),
        "focal_median_radius_m": s.focal_median_radius_m,
        "orbit": f.orbit,
        "window_months": list(f.window.months),
        "scale": f.scale,
    }
    if f.derived:
        sem["derived"] = "".join(f.derived.split())
        sem["inputs"] = {n: feature_semantics(spec, n) for n in spec.derived_inputs(f)}
    else:
        sem["source"] = "".join(spec.expression(f).split())
        sem["stat"] = f.stat
        sem["kernel_radius_px"] = f.kernel_radius_px
    return sem


def features_digest(spec: FeatureSpec, names: Iterable[str] | None = None) -> str:
    """SHA-256 (first 16 hex) of the ordered semantics of ``names`` (default: every feature)."""
    order = list(spec.names if names is None else names)
    blob = json.dumps([[n, feature_semantics(spec, n)] for n in order], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def embed(spec: FeatureSpec, names: Iterable[str] | None = None) -> dict[str, Any]:
    """The sub-spec of ``names`` (default: all) as JSON, to store inside an artifact."""
    sub = spec if names is None else spec.subset(list(names))
    return sub.model_dump(mode="json")


def embedded_spec(obj: Mapping[str, Any] | str, where: str) -> FeatureSpec:
    """Rebuild an embedded spec (a dict or its JSON text), through the spec's validators.

    Raises:
        ContractError: the JSON is not a valid spec (the message names ``where`` it came from).
    """
    try:
        raw = json.loads(obj) if isinstance(obj, str) else dict(obj)
        return FeatureSpec.model_validate(raw)
    except (json.JSONDecodeError, ValidationError, TypeError) as e:
        raise ContractError(
            f"{where}: the embedded feature spec is not valid ({str(e).splitlines()[0]})",
            "Re-create the artifact with this version of eulc",
        ) from None


def _diff(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[tuple[str, Any, Any]] = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        return out
    return [] if a == b else [(path, a, b)]


def _group(path: str) -> str:
    parts = path.split(".")
    return next((FIELD_GROUPS[p] for p in parts if p in FIELD_GROUPS), parts[-1])


def compare_features(
    expected: FeatureSpec,
    actual: FeatureSpec,
    names: Iterable[str],
    expected_what: str,
    actual_what: str,
    accept: Iterable[str] = (),
) -> list[str]:
    """Check that ``actual`` computes ``names`` as ``expected`` does.

    Args:
        expected: the consumer's spec (e.g. the bundle's embedded spec).
        actual: the producer's spec (e.g. the feature COG's embedded spec).
        names: the features the consumer needs, in its order.
        expected_what, actual_what: the two artifacts, for the message (``bundle models/x``).
        accept: semantic fields or groups whose difference is tolerated (``cloud_mask``,
            ``level``): the caller chose to go on and says so.

    Returns:
        One line per tolerated difference (empty when the features are the same).

    Raises:
        ContractError: a needed feature is missing from ``actual``, or differs in a field not
            in ``accept``; the message names the first such feature, the field and both values.
    """
    ok = set(accept)
    tolerated: list[str] = []
    for n in names:
        if n not in actual.names:
            raise ContractError(
                f"{actual_what} has no feature {n!r}, which {expected_what} needs",
                "Compute the features with the consumer's spec",
            )
        diffs = _diff(feature_semantics(expected, n), feature_semantics(actual, n))
        for path, want, got in diffs:
            if _group(path) in ok:
                tolerated.append(f"{n}: {path} {want!r} -> {got!r}")
                continue
            raise ContractError(
                f"feature {n!r} differs: {expected_what} has {path}={want!r}, {actual_what} has {got!r}",
                "Recompute the features with the spec embedded in the consumer"
                + (
                    f", or accept the difference explicitly (`accept` {_group(path)})"
                    if _group(path) in ("cloud_mask", "level")
                    else ""
                ),
            )
    return tolerated


def check_digest(spec: FeatureSpec, names: list[str], recorded: str, what: str) -> None:
    """Check that ``recorded`` (a digest written into an artifact) matches ``spec``'s ``names``.

    Raises:
        ContractError: the digest differs: the artifact was made from another version of the
            features than the spec it embeds, i.e. it was edited by hand.
    """
    if recorded and recorded != features_digest(spec, names):
        raise ContractError(
            f"{what}: the recorded features digest {recorded} does not match its embedded spec "
            f"({features_digest(spec, names)})",
            "Re-create it with eulc; do not edit it by hand",
        )


def artifact_spec(record: Mapping[str, Any], names: list[str], where: str) -> FeatureSpec:
    """The feature spec an artifact was made with, from its metadata ``record``.

    ``record`` is a selection, a table's ``eulc`` metadata, a bundle's ``spec`` entry or a
    feature COG's tags. It embeds ``feature_spec`` (this version of eulc) and is then checked
    against its recorded ``features_digest``; an artifact of an earlier version names only the
    shipped spec (``spec``/``name``) and its full-spec hash (``spec_hash``/``hash``), which must
    equal the shipped spec's today.

    Raises:
        ContractError: the embedded spec is invalid or disagrees with the recorded digest; or
            the artifact names a spec that is not shipped, or one whose content has changed since.
    """
    emb = record.get("feature_spec")
    if emb:
        spec = embedded_spec(emb, where)
        check_digest(spec, spec.names, str(record.get("features_digest", "")), where)
        return spec
    name = str(record.get("spec") if isinstance(record.get("spec"), str) else record.get("name", ""))
    recorded = str(record.get("spec_hash") or record.get("hash") or "")
    if name not in shipped_specs():
        raise ContractError(
            f"{where} embeds no feature spec and names {name!r}, which is not a shipped spec",
            "Re-create it with this version of eulc (it then carries its spec)",
        )
    spec = load_spec(name)
    if recorded and recorded != spec.digest():
        raise ContractError(
            f"{where} was made with another version of spec {name!r} "
            f"(hash {recorded}, the shipped spec is {spec.digest()})",
            "Re-create it with this version of eulc",
        )
    return spec
