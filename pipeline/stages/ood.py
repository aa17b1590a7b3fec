"""The ood stage: add the OOD reference (landscape clusters and feature-space distance of the
training rows, :mod:`model.ood`) to a bundle trained without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.api import fit_ood_for_bundle
from model.ood import OODReference
from pipeline.core.errors import EulcError
from pipeline.core.ledger import out_lock
from pipeline.stages.events import Event, ignore
from pipeline.stages.pretrained import models_dir


@dataclass(frozen=True)
class OodRequest:
    """Which bundle, from which table.

    Attributes:
        bundle: a bundle folder written by the train stage (not a shipped one).
        table: the very table it was trained on (its hash is checked).
        landscapes: K of the landscape clusters (≥ 1).
    """

    bundle: Path
    table: Path
    landscapes: int = 16

    def __post_init__(self) -> None:
        if self.landscapes < 1:
            raise EulcError(f"`landscapes` {self.landscapes} is less than 1", "Use 1 or more (default 16)")


def add_ood(req: OodRequest, on_event: Event = ignore) -> OODReference:
    """Fit the reference on the bundle's own training rows and store it in the bundle
    (``ood.json`` + ``ood.safetensors``; the weights are not touched).

    Raises:
        EulcError: a shipped bundle; a table whose hash is not the bundle's ``data_hash``.
    """
    bundle = Path(req.bundle)
    if bundle.resolve().parent == models_dir().resolve():
        raise EulcError(
            f"{bundle} is a bundle shipped with eulc",
            "Shipped bundles carry their OOD reference; give a bundle folder you trained",
        )
    if not (bundle / "bundle.json").is_file():
        raise EulcError("is not a model bundle (no bundle.json)", "Give a folder written by `eulc train`", path=bundle)
    with out_lock(bundle, "eulc ood"):  # one writer; the temporaries of a killed `eulc ood` are removed
        return _add_ood(req, on_event)


def _add_ood(req: OodRequest, on_event: Event) -> OODReference:
    bundle = Path(req.bundle)
    on_event("status", {"message": f"fitting the OOD reference of {bundle} on its training rows"})
    return fit_ood_for_bundle(bundle, Path(req.table), req.landscapes)
