"""A model bundle as a STAC Item with the Machine Learning Model (MLM) extension (issue #30).

Every bundle folder holds ``item.json``: a STAC 1.1 Item that catalogues and model registries
read (STAC MLM extension v1.6, https://github.com/stac-extensions/mlm, built and validated with
its ``stac-model`` library). It is derived from ``bundle.json`` alone, so it never disagrees with
what :func:`model.bundle.load_bundle` checks:

- ``bands`` (STAC 1.1 Band Objects, in the network's input order): each feature's name, the
  spec's description, its ``unit`` where one applies (σ⁰ in ``dB``, LST in ``K``, elevation in
  ``m``; reflectances and indices are unitless), ``raster:scale`` (stored value × scale =
  physical value; the spec's stored scale), its sensor and statistic;
- ``mlm:input``: the features (shape ``[-1, F]``, ``batch`` × ``bands``, float32) with the
  normaliser's per-feature ``value_scaling`` (``z-score`` with the robust centre and scale, or
  ``min-max``; trees take raw values), and for a network with coordinates a second input, lon/lat
  in degrees (EPSG:4326, lon first);
- ``mlm:output``: class probabilities ``[-1, C]`` with ``classification:classes`` (value, name,
  colour hint) from the legend;
- assets: the weights (``mlm:model``; ``safetensors.torch.save_file`` or XGBoost's JSON),
  ``bundle.json``, the model card, the card's XGBoost comparison and the OOD reference, where present;
- ``eulc:model_digest`` (the map tags' model hash), ``eulc:features_digest``, the spec, level,
  training-data hash and the training rows' year as ``start_datetime``/``end_datetime``; the
  geometry is the area of use of the EEA grid's CRS (EPSG:3035), where the maps are made.

Map runs copy the item of each bundle they use into their folder (``model.json``,
``model_level2.json``, asset hrefs absolute) and link it from every tile item with
``rel: derived_from`` and ``mlm:name`` (the MLM best practice for inference outputs).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pystac
from pydantic import ValidationError
from pyproj import CRS
from pystac.extensions.classification import ClassificationExtension
from pystac.extensions.file import FileExtension
from safetensors import safe_open
from stac_model.base import ProcessingExpression
from stac_model.input import InputStructure, ModelInput, ValueScalingMinMax, ValueScalingZScore
from stac_model.output import MLMClassification, ModelOutput, ModelResult
from stac_model.schema import MLModelExtension, MLModelProperties

from model.bundle import CARD_COMPARISON, ITEM, META, NETWORK, WEIGHTS, folder_digest
from model.ood import OOD_META, OOD_WEIGHTS, in_bundle
from model.trees import TREES
from pipeline.core.atomic import write_json
from pipeline.core.contract import embedded_spec
from pipeline.core.errors import BundleError
from pipeline.core.spec import FeatureSpec

CARD = "MODEL_CARD.md"
MAP_CRS = "EPSG:3035"
"""The CRS of the EEA reference grid the maps are made on; its area of use is the item's footprint."""
UNITS = {"dB": "dB", "K": "K", "m": "m"}
"""Sensor units (:class:`pipeline.core.spec.Sensor`) that are units of a band's value; reflectance
(0–1) and linear σ⁰ ratios are unitless."""
RASTER_V2 = "https://stac-extensions.github.io/raster/v2.0.0/schema.json"
"""The raster extension of STAC 1.1 Band Objects (``raster:scale``)."""
_BAND = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _band(spec: FeatureSpec, name: str) -> dict[str, Any]:
    """The STAC 1.1 Band Object of feature ``name``."""
    f = spec.feature(name)
    sensor = spec.sensors[f.sensor]
    band: dict[str, Any] = {"name": name, "description": f.description or name, "data_type": "float32"}
    single = f.derived is None and _BAND.fullmatch("".join(spec.expression(f).split())) is not None
    if single and sensor.units in UNITS:  # a statistic of one band keeps the band's unit
        band["unit"] = UNITS[sensor.units]
    band["raster:scale"] = 1.0 / f.scale
    band["eulc:sensor"] = sensor.kind
    band["eulc:stat"] = f.stat if f.derived is None else "derived"
    return band


def _scaling(norm: dict[str, Any], n: int) -> list[Any] | None:
    if norm.get("method") == "minmax":
        return [ValueScalingMinMax(minimum=lo, maximum=hi) for lo, hi in zip(norm["min"], norm["max"], strict=True)]
    centre, scale = norm.get("center", []), norm.get("scale", [])
    if len(centre) != n or len(scale) != n:
        return None
    return [ValueScalingZScore(mean=c, stddev=s) for c, s in zip(centre, scale, strict=True)]


def _parameters(path: Path) -> int | None:
    """Number of weights in a safetensors file (its header's shapes; no tensor is read)."""
    n = 0
    with safe_open(str(path), framework="numpy") as fh:
        for key in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
            size = 1
            for d in fh.get_slice(key).get_shape():
                size *= int(d)
            n += size
    return n


def _properties(meta: dict[str, Any], name: str) -> MLModelProperties:
    """The ``mlm:`` fields of a bundle (validated by ``stac-model``)."""
    features: list[str] = meta["features"]
    network = meta.get("model", NETWORK) == NETWORK
    inputs = [
        ModelInput(
            name="features",
            bands=features,
            input=InputStructure(shape=[-1, len(features)], dim_order=["batch", "bands"], data_type="float32"),
            value_scaling=_scaling(meta.get("normalizer", {}), len(features)) if network else None,
            pre_processing_function=ProcessingExpression(
                format="python",
                expression="model.bundle.ModelBundle.predict_proba",
                description="features in the spec's stored units (feature COG values); a network clips each to "
                "the normaliser's [lo, hi] before the z-score; pixels with a missing feature are not classified",
            ),
        )
    ]
    location = meta.get("encoding", {}).get("location", "none")
    if network and location != "none":
        inputs.append(
            ModelInput(
                name="lon/lat (EPSG:4326, degrees, lon first)",
                bands=[],
                input=InputStructure(shape=[-1, 2], dim_order=["batch", "coordinates"], data_type="float32"),
            )
        )
    classes = [
        MLMClassification(
            value=int(c["id"]),
            name=str(c["name"]),
            description=str(c["name"]),
            color_hint=str(c["colour"]).lstrip("#").upper(),
        )
        for c in meta["legend"]["classes"]
    ]
    output = ModelOutput(
        name=f"{meta['legend']['level']} class probabilities",
        tasks={"classification"},
        result=ModelResult(shape=[-1, len(classes)], dim_order=["batch", "class"], data_type="float32"),
        classes=classes,
        post_processing_function=ProcessingExpression(
            format="python",
            expression="numpy.argmax",
            description="calibrated probabilities (temperature scaling); the class map is their argmax, "
            "its value the legend id",
        ),
    )
    versions = meta.get("versions", {})
    arch = meta.get("architecture", {})
    return MLModelProperties(
        name=name,
        architecture="BRIDGE-LC MLP (Ghassemi et al. 2025)" if network else "XGBoost gradient-boosted trees",
        tasks={"classification"},
        framework="pytorch" if network else "xgboost",
        framework_version=str(versions.get("torch" if network else "xgboost", "unknown")),
        accelerator="amd64",
        accelerator_constrained=False,
        accelerator_summary="CPU in float32; a CUDA GPU when present (eulc map --device auto)"
        if network
        else "CPU (XGBoost)",
        pretrained=False,
        input=inputs,
        output=[output],
        hyperparameters={k: v for k, v in arch.items() if isinstance(v, (int, float, str, bool))} or None,
    )


def bundle_item(folder: Path, name: str | None = None, absolute: bool = False) -> pystac.Item:
    """The STAC MLM Item of the bundle in ``folder`` (module docstring), from its ``bundle.json``.

    Args:
        folder: a bundle folder (``bundle.json`` and its weights).
        name: the item id and ``mlm:name`` (default: the folder's name).
        absolute: asset hrefs as absolute paths (a copy kept elsewhere, e.g. in a map run)
            instead of ``./<file>``.

    Raises:
        BundleError: ``bundle.json`` is missing or unreadable, or what it records does not make a
            valid MLM item (the validation error, first line).
    """
    folder = Path(folder)
    mpath = folder / META
    try:
        meta = json.loads(mpath.read_text(encoding="utf-8"))
        spec = embedded_spec(meta["spec"]["feature_spec"], str(mpath))
        props = _properties(meta, name or folder.name)
    except (OSError, ValueError, KeyError, TypeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BundleError(f"cannot be described as a STAC MLM item ({first})", "Re-train the bundle", path=mpath) from e
    network = meta.get("model", NETWORK) == NETWORK
    lon0, lat0, lon1, lat1 = CRS.from_user_input(MAP_CRS).area_of_use.bounds  # type: ignore[union-attr]
    geometry = {
        "type": "Polygon",
        "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]],
    }
    properties: dict[str, Any] = {
        "title": f"eulc {meta['legend']['level']} land-cover model {props.name}",
        "description": f"{'BRIDGE-LC network' if network else 'XGBoost'} on {len(meta['features'])} features of "
        f"spec {meta['spec'].get('name', '?')}, {len(meta['legend']['classes'])} {meta['legend']['level']} classes",
        "bands": [_band(spec, n) for n in meta["features"]],
        "eulc:model_digest": folder_digest(folder),
        "eulc:features_digest": meta["spec"].get("features_digest", ""),
        "eulc:spec": meta["spec"].get("name", ""),
        "eulc:level": meta["legend"]["level"],
        "eulc:data_hash": meta.get("data_hash", ""),
        "eulc:format": meta.get("format", ""),
    }
    # the training rows' year (the spec's, always set)
    properties |= {"start_datetime": f"{spec.year}-01-01T00:00:00Z", "end_datetime": f"{spec.year}-12-31T23:59:59Z"}
    item = pystac.Item(props.name, geometry, [lon0, lat0, lon1, lat1], None, properties)
    MLModelExtension.ext(item, add_if_missing=True).apply(props)
    item.stac_extensions += [FileExtension.get_schema_uri(), ClassificationExtension.get_schema_uri(), RASTER_V2]

    def href(fname: str) -> str:
        return str((folder / fname).resolve()) if absolute else f"./{fname}"

    weights = WEIGHTS if network else TREES
    item.add_asset(
        "weights",
        pystac.Asset(
            href(weights),
            title="network weights (safetensors)" if network else "XGBoost model (its own JSON format)",
            media_type="application/octet-stream; application=safetensors" if network else pystac.MediaType.JSON,
            roles=["mlm:model", "mlm:weights", "data"],
            extra_fields={
                "mlm:artifact_type": "safetensors.torch.save_file" if network else "xgboost.Booster.save_model",
                "file:checksum": "1220" + str(meta.get("weights_sha256", "")),  # multihash: sha2-256
            },
        ),
    )
    item.add_asset(
        "bundle",
        pystac.Asset(
            href(META),
            title="bundle.json: features, spec contract, normaliser, legend, training settings",
            media_type=pystac.MediaType.JSON,
            roles=["metadata", "mlm:hyperparameters"],
        ),
    )
    extras = {
        CARD: ("model card", "text/markdown", ["metadata", "documentation"]),
        CARD_COMPARISON: ("the card's comparison with XGBoost on untouched cells", pystac.MediaType.JSON, ["metadata"]),
        OOD_META: ("OOD reference (metadata)", pystac.MediaType.JSON, ["metadata"]),
        OOD_WEIGHTS: ("OOD reference (arrays)", "application/octet-stream; application=safetensors", ["data"]),
    }
    for fname, (title, media, roles) in extras.items():
        if (folder / fname).is_file():
            item.add_asset(
                fname.split(".")[0].lower(), pystac.Asset(href(fname), title=title, media_type=media, roles=roles)
            )
    if network and (folder / WEIGHTS).is_file():
        item.properties["mlm:total_parameters"] = _parameters(folder / WEIGHTS)
    return item


def item_dict(item: pystac.Item) -> dict[str, Any]:
    """The item as JSON (no self link; relative hrefs kept as written)."""
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def write_bundle_item(folder: Path, name: str | None = None) -> Path:
    """Write (or refresh) ``<folder>/item.json`` through the guarded writer, after checking it with
    :func:`validate_item`; returns the path. Called whenever eulc writes a bundle file; ``name`` as
    :func:`bundle_item`.

    Raises:
        BundleError: as :func:`bundle_item` and :func:`validate_item`.
        WriteError: ``item.json`` is there and not eulc's.
    """
    d = item_dict(bundle_item(folder, name))
    validate_item(d, folder / ITEM)
    dest = Path(folder) / ITEM
    write_json(dest, d, recognise=in_bundle)
    return dest


def validate_item(d: dict[str, Any], where: Path) -> MLModelProperties:
    """Check an MLM item (JSON): its ``mlm:`` fields parse as ``stac-model``'s
    :class:`MLModelProperties`, it declares the MLM schema, every input band is a Band Object of
    the item, and the ``mlm:model`` asset carries ``mlm:artifact_type`` (the spec's requirement).

    Returns:
        The parsed properties.

    Raises:
        BundleError: naming ``where`` and the first failing field.
    """
    props = d.get("properties", {})
    try:
        parsed = MLModelProperties.model_validate(
            {k.removeprefix("mlm:"): v for k, v in props.items() if k.startswith("mlm:")}
        )
    except ValidationError as e:
        raise BundleError(
            f"is not a valid STAC MLM item ({str(e).splitlines()[0]}: {e.errors()[0]['loc']})",
            "Rewrite it with eulc",
            path=where,
        ) from None
    if MLModelExtension.get_schema_uri() not in d.get("stac_extensions", []):
        raise BundleError("does not declare the STAC MLM extension", "Rewrite it with eulc", path=where)
    bands = {b.get("name") for b in props.get("bands", [])}
    for inp in parsed.input:
        missing = [b for b in (inp.bands or []) if (b if isinstance(b, str) else b.name) not in bands]
        if missing:
            raise BundleError(
                f"input {inp.name!r} names bands the item does not define ({missing[:3]})",
                "Rewrite it with eulc",
                path=where,
            )
    models = [a for a in d.get("assets", {}).values() if "mlm:model" in a.get("roles", [])]
    if len(models) != 1 or not models[0].get("mlm:artifact_type"):
        raise BundleError(
            "needs exactly one `mlm:model` asset with `mlm:artifact_type`", "Rewrite it with eulc", path=where
        )
    return parsed
