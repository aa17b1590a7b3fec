"""The train stage: a FeatureTable + features → a ModelBundle (safetensors + JSON), skipped when
the bundle on disk was trained from the same table, features and settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.api import train_from_table, train_trees_from_table
from model.bundle import TRAIN_LEDGER
from model.infer import resolve_device
from model.presets import DEFAULT, PRESETS, preset_config
from model.trees import SETTINGS
from pipeline.core.atomic import WRITTEN, remove_leftovers
from pipeline.core.errors import EulcError
from pipeline.core.ledger import OUT_LOCK, JsonLedger, Ledger, input_key
from pipeline.core.spec import load_spec
from pipeline.stages.events import Event, ignore
from pipeline.stages.resolve import table_selection
from pipeline.stages.table import file_key
from pipeline.table import table_metadata, table_spec

LEVELS = ("level1", "level2")
MODELS = ("network", "xgboost")
"""What ``eulc train`` fits: eulc's network (``preset`` chooses the variant) or the paper's
XGBoost baseline as a tree-model bundle (:mod:`model.trees`) that ``eulc map`` runs alike."""
NETWORK_ONLY = {"epochs": 500, "lr": 1e-4, "batch_size": 128, "ema": True, "preset": DEFAULT}
"""The request fields that set the network's schedule, with their defaults: an XGBoost request
that changes one is refused rather than silently ignored."""


@dataclass(frozen=True)
class TrainRequest:
    """What to train on, how, and where the bundle goes.

    Attributes:
        table: the FeatureTable (GeoParquet from the table stage).
        out: the bundle folder (new, empty, or an eulc bundle with ``overwrite``).
        features: a selection JSON, a bundle (its features) or comma-separated names; None = all.
        spec: the spec the features are named in (default: the table's).
        level: ``level1`` (7 land-cover classes) or ``level2`` (19 crop types).
        epochs, lr, batch_size: the schedule (paper: 500 epochs, 1e-4, 128).
        seed: the random seed (same seed and threads: identical weights).
        ema: weight EMA (each preset sets its momentum).
        preset: ``eulc`` (default), ``bridge-lc`` (faithful), ``mlp``, ... (``model/presets.py``).
        overwrite: replace an existing eulc bundle in ``out``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        test_fraction: share of rows (whole EEA 100 km cells) kept untouched for the reported metrics.
        landscapes: K of the OOD reference stored with the bundle (0: none; an XGBoost bundle
            has none, whatever K).
        model: ``network`` or ``xgboost`` (:data:`MODELS`); with ``xgboost`` the schedule fields
            (:data:`NETWORK_ONLY`) keep their defaults, and the splits are the default preset's
            (the network with the same seed holds out the same cells).
        xgboost_setting: the tree model's setting (:data:`model.trees.SETTINGS`).
    """

    table: Path
    out: Path
    features: str | None = None
    spec: str | None = None
    level: str = "level1"
    epochs: int = 500
    lr: float = 1e-4
    batch_size: int = 128
    seed: int = 0
    ema: bool = True
    preset: str = "eulc"
    overwrite: bool = False
    device: str = "auto"
    test_fraction: float = 0.1
    landscapes: int = 16
    model: str = "network"
    xgboost_setting: str = "paper"

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise EulcError(f"`model` {self.model!r} is not a model", f"Use one of {', '.join(MODELS)}")
        if self.xgboost_setting not in SETTINGS:
            raise EulcError(
                f"`xgboost_setting` {self.xgboost_setting!r} is unknown", f"Use one of {', '.join(SETTINGS)}"
            )
        if self.model == "xgboost":
            for name, default in NETWORK_ONLY.items():
                if getattr(self, name) != default:
                    raise EulcError(
                        f"`{name}` sets the network's training; it does not apply to `model` xgboost",
                        f"Leave `{name}` at its default, or choose the trees with `xgboost_setting`",
                    )
            if self.device.startswith("cuda"):
                raise EulcError(
                    f"`device` {self.device} with `model` xgboost: eulc fits XGBoost on the CPU",
                    "Use `device` auto or cpu",
                )
        if self.level not in LEVELS:
            raise EulcError(f"`level` {self.level!r} is not a legend", "Use level1 or level2")
        if self.landscapes < 0:
            raise EulcError(
                f"`landscapes` {self.landscapes} is negative", "Use 0 (no OOD reference) or more (default 16)"
            )
        if self.preset not in PRESETS:
            raise EulcError(f"`preset` {self.preset!r} is unknown", f"Use one of {list(PRESETS)}")


@dataclass
class TrainResult:
    """The bundle written (or found current) and its metrics (``test_*`` on untouched cells when
    there are any, hold-out figures otherwise).
    """

    path: Path
    up_to_date: bool
    metrics: dict[str, Any] = field(default_factory=dict)


def train(req: TrainRequest, on_event: Event = ignore, ledger: Ledger | None = None) -> TrainResult:
    """Train and write the bundle, or report it current: the same table file (path, size,
    mtime), features, settings and OOD K, and the bundle's files as written (its folder's ledger
    ``.eulc-train.json``, :mod:`pipeline.core.ledger`). ``on_event`` hears first what the schedule
    costs on this machine (``status``), then the teacher's folds and the epochs as ``progress``
    events (``done`` = epochs, fractional within one; at each epoch's end ``loss`` = its mean
    training loss).

    Args:
        req: the request.
        on_event: progress callback.
        ledger: the ledger to record the bundle in, as entry ``train`` (the demo's); default:
            the bundle folder's own, entry ``bundle``.

    Raises:
        EulcError: an unknown preset, level or feature; a bad table; a bundle folder eulc may not
            replace; training that diverges.
    """
    table = Path(req.table)
    on_event("status", {"message": f"reading {table}"})
    sel = table_selection(
        load_spec(req.spec) if req.spec else table_spec(table_metadata(table), f"table {table}"), req.features
    )
    cfg = preset_config(
        req.preset,
        None,
        level=req.level,
        epochs=req.epochs,
        lr=req.lr,
        batch_size=req.batch_size,
        seed=req.seed,
        device="cpu" if req.model == "xgboost" else str(resolve_device(req.device)),
        test_fraction=req.test_fraction,
        **({} if req.ema else {"ema_momentum": None}),
    )  # validated: epochs -3 is refused
    out = Path(req.out)
    remove_leftovers(out.parent)  # a killed run's temporary bundle folder beside it, even when it is current
    trees = req.model == "xgboost"
    key = (
        input_key("train", file_key(table), sel.names, cfg.model_dump(mode="json"), "xgboost", req.xgboost_setting)
        if trees
        else input_key("train", file_key(table), sel.names, cfg.model_dump(mode="json"), req.landscapes)
    )
    own = ledger is None
    book: Ledger = ledger if ledger is not None else JsonLedger(out, TRAIN_LEDGER)
    name = "bundle" if own else "train"
    entry = book.entry(name)
    if out.is_dir() and book.current(name, key):
        on_event("step", {"step": "train", "message": f"up to date: {out}"})
        return TrainResult(out, True, dict((entry.info if entry else None) or {}))

    def on_epoch(e: int, loss: float) -> None:
        on_event(
            "progress", {"stage": "train", "done": e, "total": cfg.epochs, "loss": loss, "info": f"loss {loss:.3f}"}
        )

    if trees:
        metrics = train_trees_from_table(
            table, out, sel, cfg, req.xgboost_setting, overwrite=req.overwrite, on_event=on_event
        )
    else:
        metrics = train_from_table(
            table, out, sel, cfg, on_epoch, overwrite=req.overwrite, landscapes=req.landscapes, on_event=on_event
        )
    outputs = sorted(p for p in out.iterdir() if p.is_file() and p.name not in (TRAIN_LEDGER, WRITTEN, OUT_LOCK))
    if own:  # the atomic save replaced the folder: a ledger read before it is gone with it
        book = JsonLedger(out, TRAIN_LEDGER)
    book.finish(name, key, outputs if own else [out], metrics)
    return TrainResult(out, False, metrics)
