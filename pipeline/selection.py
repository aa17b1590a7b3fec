"""FeatureSelection: the ordered feature names a model uses, as a JSON file.

``{"spec": name, "spec_hash": ..., "names": [...], "method": ..., "seed": ..., "scores": {...}}``.
Methods: ``all`` (every spec feature), ``names`` (given by the user), ``stack-availability``
(the features a given local stack can compute for a year; see
:func:`tiles.features.computable_features`), ``bundle`` (a shipped bundle's features) and
``rf-mdi`` / ``rf-permutation`` (the paper's Random-Forest-importance selector, 109 of 196 by
default; :mod:`pipeline.importance`, ``eulc select``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.atomic import write_json
from pipeline.errors import SpecError
from pipeline.spec import FeatureSpec


@dataclass(frozen=True)
class FeatureSelection:
    """An ordered subset of a spec's features (see module docstring)."""

    spec: str
    spec_hash: str
    names: list[str]
    method: str
    seed: int | None = None
    scores: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def save(self, path: Path) -> None:
        """Write the selection as JSON (atomic)."""
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> FeatureSelection:
        """Read a selection JSON; raises :class:`SpecError` on a malformed file."""
        try:
            return cls(**json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, TypeError) as e:
            raise SpecError(f"not a feature selection ({e})", "Give a JSON written by eulc",
                            path=path) from None

    @classmethod
    def of(cls, spec: FeatureSpec, names: list[str], method: str, note: str = ""
           ) -> FeatureSelection:
        """Validate ``names`` against ``spec`` and build a selection (spec order kept as given)."""
        spec.subset(names)  # raises SpecError on unknown names
        if not names:
            raise SpecError(f"the feature selection from spec {spec.name!r} is empty",
                            "Select at least one feature")
        return cls(spec.name, spec.digest(), list(names), method, note=note)


def parse_selection(spec: FeatureSpec, value: str | None) -> FeatureSelection:
    """A CLI ``--features`` value → selection: None = all features; a ``.json`` path = a saved
    selection; otherwise a comma-separated list of names.
    """
    if not value:
        return FeatureSelection.of(spec, spec.names, "all")
    if value.endswith(".json"):
        sel = FeatureSelection.load(Path(value))
        spec.subset(sel.names)
        return sel
    return FeatureSelection.of(spec, [v.strip() for v in value.split(",") if v.strip()], "names")
