"""Named training configurations: faithful BRIDGE-LC, eulc's default, a plain MLP, and the
six lat/lon × bioregion variants of the paper's ablation (Table 12).

Every preset is a set of overrides of :class:`model.train.TrainConfig`, whose defaults are the
faithful model. A short schedule (``epochs``/``lr`` given by the user) applies to all of them.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from model.train import TrainConfig
from pipeline.core.errors import EulcError

FAITHFUL = "bridge-lc"
DEFAULT = "eulc"

PRESETS: dict[str, dict[str, Any]] = {
    # Paper §3–4 and the authors' code: every TrainConfig default.
    FAITHFUL: {},
    # eulc's default, chosen by the issue #4 pilot on LORO (docs/results.md, "Choosing eulc's
    # default"; 1 seed, 12k rows): no coordinates (+2.8 weighted-F1 points over the learnt PE:
    # extrapolating to an unseen region feeds the location MLP coordinates it never saw), the
    # region branch + SupCon kept (Table 12 "+ region"), best-epoch selection and temperature
    # scaling on a hold-out of whole EEA 100 km cells (calibrated probabilities; ±0.3 on F1).
    # Tried and not kept: the multi-scale encoding (+0.9, all of it on the 20-point BlackSea
    # region), reflectance-shift augmentation (−0.8), class-balanced CE (+1.5 with the PE but
    # −0.1 without it; +9 on Alpine, −2 to −5 on Mediterranean and Boreal).
    DEFAULT: {"location": "none", "region_branch": True, "val_fraction": 0.1, "val_split": "blocked",
              "select_best": True, "calibrate": True},
    # The issue #4 default, kept for comparison (min–max inputs, the authors' per-epoch EMA).
    "eulc-v1": {"location": "none", "region_branch": True, "val_fraction": 0.1, "val_split": "blocked",
                "select_best": True, "calibrate": True},
    # A plain MLP with the same encoder, no coordinates, no region branch.
    "mlp": {"location": "none", "region_branch": False},
}

CANDIDATES: tuple[str, ...] = ("eulc-v1", "eulc")
"""The presets ``nested`` evaluation chooses among, per split, on training-side data."""

ABLATION: dict[str, dict[str, Any]] = {
    "no geographic information": {"location": "none", "region_branch": False},
    "+ region": {"location": "none", "region_branch": True},
    "+ fixed PE": {"location": "fixed", "region_branch": False},
    "+ fixed PE + region": {"location": "fixed", "region_branch": True},
    "+ learnt PE": {"location": "learnt", "region_branch": False},
    "+ learnt PE + region (full)": {"location": "learnt", "region_branch": True},
}
"""Paper Table 12 rows, in its order (LORO)."""


def preset_config(name: str, base: TrainConfig | None = None, **overrides: Any) -> TrainConfig:
    """The TrainConfig of preset ``name`` (or an ablation row), on top of ``base``'s schedule.

    Args:
        name: a key of :data:`PRESETS` or :data:`ABLATION`.
        base: settings to start from (level, epochs, lr, seed …); default: the faithful config.
        overrides: fields set last.

    Raises:
        KeyError: unknown preset, with the known names.
        EulcError: a setting out of its bounds (``epochs=-3``), naming it.
    """
    table = PRESETS.get(name, ABLATION.get(name))
    if table is None:
        raise KeyError(f"unknown model preset {name!r}; use one of {[*PRESETS, *ABLATION]}")
    base = base or TrainConfig()
    # through the validators (model_copy(update=...) would let epochs=-3 pass)
    try:
        return TrainConfig.model_validate({**base.model_dump(), **table, **overrides})
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise EulcError(f"training setting {loc}={err.get('input')!r}: {err['msg']}",
                        f"Give a valid --{loc.replace('_', '-')}") from None
