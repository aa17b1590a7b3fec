"""Which cloud mask an engine applies to Sentinel-2 items, given what the items (or a backend's
collection) carry: the local engine's STAC items, and the openEO engine's collections.

The spec names the mask the GEE engine applies: s2cloudless probability (``CLP``, ELC10:
``>= 40``) joined from ``COPERNICUS/S2_CLOUD_PROBABILITY``, and/or Sen2Cor scene classes
(``scl_mask``, BRIDGE-LC: 1/9/10/11). Public STAC collections carry SCL for L2A but no
s2cloudless layer, so a spec that masks by ``CLP`` would otherwise run unmasked, silently.
:func:`resolve_cloud_mask` decides, per S2 sensor of the spec:

- ``CLP`` among the item assets → the spec's own rule;
- no ``CLP``, ``SCL``, and the spec has SCL classes of its own (BRIDGE-LC: "cloud probability
  > 75 when a probability band is present") → the spec's SCL classes alone;
- no ``CLP``, ``SCL``, and the probability is the spec's only cloud mask (ELC10) → the fallback
  :data:`SCL_FALLBACK` (Sen2Cor 1 saturated/defective, 8 cloud medium probability, 9 cloud high
  probability, 10 thin cirrus: the classes s2cloudless ≥ 40 % targets; Sen2Cor L2A Product
  Specification, SCL table);
- neither → an error, unless ``choice="none"`` (compute without a cloud mask, recorded).

What was applied is returned as a sentence that goes into the feature COG's ``cloud_mask`` tag.
"""

from __future__ import annotations

from typing import Literal

from pipeline.core.errors import RasterError
from pipeline.core.spec import FeatureSpec

SCL_FALLBACK: tuple[int, ...] = (1, 8, 9, 10)
CloudMaskChoice = Literal["auto", "none"]


def resolve_cloud_mask(
    spec: FeatureSpec, assets: set[str], choice: CloudMaskChoice = "auto"
) -> tuple[FeatureSpec, str]:
    """The spec to compute with (its S2 masks adapted to the item assets) and what it masks.

    Args:
        spec: the (selected) feature spec.
        assets: canonical band names the S2 items carry (``B4``, ``SCL``, ``CLP``).
        choice: ``auto`` (the rules in the module docstring) or ``none`` (no cloud mask).

    Returns:
        ``(spec with adapted S2 sensors, description for the cloud_mask tag)``; the adapted
        spec is what the feature COG's contract records (``feature_spec``), so the map step
        sees the mask actually applied.

    Raises:
        RasterError: ``auto``, the spec masks by probability or SCL, and the items carry
            neither ``CLP`` nor ``SCL`` (the message says how to go on).
    """
    sensors = dict(spec.sensors)
    said: list[str] = []
    used = {f.sensor for f in spec.features}
    for key, s in spec.sensors.items():
        if s.kind != "s2" or key not in used:
            continue
        if choice == "none":
            sensors[key] = s.model_copy(update={"cloud_probability": None, "scl_mask": ()})
            said.append(f"{key}: none (--cloud-mask none)")
            continue
        clp, scl = s.cloud_probability, tuple(s.scl_mask)
        if clp is not None and "CLP" in assets and scl and "SCL" not in assets:  # L1C with s2cloudless
            sensors[key] = s.model_copy(update={"scl_mask": ()})
            said.append(
                f"{key}: s2cloudless CLP {clp.op} {clp.value:g} (the items carry no SCL: the spec's "
                f"SCL {','.join(map(str, scl))} rule is not applied)"
            )
        elif clp is not None and "CLP" in assets:
            said.append(
                f"{key}: s2cloudless CLP {clp.op} {clp.value:g}" + (f", SCL {','.join(map(str, scl))}" if scl else "")
            )
        elif clp is not None and scl and "SCL" in assets:  # probability "when a probability band is present"
            sensors[key] = s.model_copy(update={"cloud_probability": None})
            said.append(
                f"{key}: SCL {','.join(map(str, scl))} (the items carry no CLP: the spec's CLP "
                f"{clp.op} {clp.value:g} rule is not applied)"
            )
        elif clp is not None and "SCL" in assets:
            classes = SCL_FALLBACK
            sensors[key] = s.model_copy(update={"cloud_probability": None, "scl_mask": classes})
            said.append(
                f"{key}: SCL {','.join(map(str, classes))} (fallback: the spec masks s2cloudless "
                f"CLP {clp.op} {clp.value:g}, the items carry no CLP)"
            )
        elif clp is not None or (scl and "SCL" not in assets):
            need = " and ".join(
                n for n, on in (("s2cloudless probability (CLP)", clp is not None), ("Sen2Cor SCL", bool(scl))) if on
            )
            raise RasterError(
                f"the spec {spec.name!r} masks clouds by {need}, and the S2 items carry neither a CLP nor an SCL asset",
                "Use L2A items (they carry SCL), add a CLP asset, or pass `cloud_mask` none to compute "
                "without a cloud mask (recorded in the feature COG)",
            )
        elif scl:
            said.append(f"{key}: SCL {','.join(map(str, scl))}")
        else:
            said.append(f"{key}: none (the spec has no cloud mask)")
    return spec.model_copy(update={"sensors": sensors}), "; ".join(said)
