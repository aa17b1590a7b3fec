"""FeatureSelection: the ordered feature names a model uses, as a JSON file.

``{"spec": name, "spec_hash": ..., "names": [...], "method": ..., "seed": ..., "scores": {...},
"features_digest": ..., "feature_spec": {...}}``: ``spec_hash`` is the full spec's digest,
``features_digest`` and ``feature_spec`` the selected features' contract
(:mod:`pipeline.core.contract`), so a selection feeds the GEE export, the local engine and
training without naming its spec again, and a selection of another spec version is refused.
Methods: ``all`` (every spec feature), ``names`` (given by the user), ``stack-availability``
(the features a given local stack can compute for a year; see
:func:`tiles.engine.features.computable_features`), ``bundle`` (a shipped bundle's features) and
``rf-mdi`` / ``rf-permutation`` (the paper's Random-Forest-importance selector, 109 of 196 by
default; :mod:`model.importance`, ``eulc select``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.core.atomic import write_json
from pipeline.core.contract import artifact_spec, compare_features, embed, features_digest
from pipeline.core.errors import SpecError
from pipeline.core.spec import FeatureSpec, load_spec


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
    features_digest: str = ""
    feature_spec: dict[str, Any] | None = None

    def feature_spec_obj(self, where: str = "the feature selection") -> FeatureSpec:
        """The spec of the selected features (embedded; a selection of an earlier eulc: the
        shipped spec it names, whose hash must still match).

        Raises:
            ContractError: see :func:`pipeline.core.contract.artifact_spec`.
        """
        return artifact_spec(asdict(self), self.names, where).subset(self.names)

    def check_against(self, spec: FeatureSpec, where: str = "the feature selection") -> None:
        """Raise :class:`ContractError` unless ``spec`` computes the selected features as the
        selection's own spec does (the first differing feature and field are named).
        """
        compare_features(self.feature_spec_obj(where), spec, self.names, where, f"spec {spec.name!r}")

    def save(self, path: Path) -> None:
        """Write the selection as JSON (atomic)."""
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> FeatureSelection:
        """Read a selection JSON; raises :class:`SpecError` on a malformed file."""
        try:
            return cls(**json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, TypeError) as e:
            raise SpecError(f"not a feature selection ({e})", "Give a JSON written by eulc", path=path) from None

    @classmethod
    def of(cls, spec: FeatureSpec, names: list[str], method: str, note: str = "") -> FeatureSelection:
        """Validate ``names`` against ``spec`` and build a selection (spec order kept as given)."""
        spec.subset(names)  # raises SpecError on unknown names
        if not names:
            raise SpecError(f"the feature selection from spec {spec.name!r} is empty", "Select at least one feature")
        return cls(
            spec.name,
            spec.digest(),
            list(names),
            method,
            note=note,
            features_digest=features_digest(spec, names),
            feature_spec=embed(spec, names),
        )

    def with_scores(self, seed: int | None, scores: dict[str, float], note: str = "") -> FeatureSelection:
        """The same selection with the selector's seed, scores and note."""
        return replace(self, seed=seed, scores=scores, note=note or self.note)


def parse_selection(spec: FeatureSpec, value: str | None) -> FeatureSelection:
    """A CLI ``--features`` value → selection: None = all features; a ``.json`` path = a saved
    selection; otherwise a comma-separated list of names.
    """
    if not value:
        return FeatureSelection.of(spec, spec.names, "all")
    if value.endswith(".json"):
        sel = FeatureSelection.load(Path(value))
        try:
            spec.subset(sel.names)
        except SpecError as e:
            raise SpecError(e.what, e.fix, path=value) from None
        sel.check_against(spec, f"selection {value}")
        return sel
    return FeatureSelection.of(spec, [v.strip() for v in value.split(",") if v.strip()], "names")


def resolve_selection(
    spec_name: str | None, value: str | None, default_spec: str
) -> tuple[FeatureSpec, FeatureSelection]:
    """The spec and selection a command works on, from its ``--spec`` and ``--features``.

    A selection JSON carries its own spec, so ``--spec`` may be left out; given, it must compute
    the selected features as the selection's spec does. Otherwise ``--spec`` (default
    ``default_spec``) and the names or all of its features.

    Raises:
        SpecError: unknown spec or feature names, an unreadable selection.
        ContractError: the selection and the given spec disagree on a feature.
    """
    if value and value.endswith(".json"):
        sel = FeatureSelection.load(Path(value))
        if spec_name:
            spec = load_spec(spec_name)
            sel.check_against(spec, f"selection {value}")
            return spec, sel
        return sel.feature_spec_obj(f"selection {value}"), sel
    spec = load_spec(spec_name or default_spec)
    return spec, parse_selection(spec, value)
