"""The ModelBundle: a directory with ``weights.safetensors`` (the network) or ``trees.json``
(an XGBoost model in its own JSON format, :mod:`model.trees`) and ``bundle.json``; no pickle.

``bundle.json`` holds everything inference needs to reproduce training exactly (DESIGN.md
§2): the ordered feature names and the spec they come from, the normaliser statistics, the
legend (ids, names, colours), the region list, the positional-encoding settings (lon first,
degrees), the architecture, the training config and its hash, the training-data hash,
package versions, metrics and the SHA-256 of the weights. :func:`load_bundle` checks all of it.
``bundle.json``'s ``model`` says which kind it is: ``bridge-lc`` (the network, any preset) or
``xgboost`` (no normaliser, no coordinates, no OOD reference).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from model import bounds
from model.bridge import BridgeConfig, BridgeLC
from model.infer import predict_proba
from model.normalize import AffineNormalizer
from model.ood import OOD_META, OOD_WEIGHTS, OODReference, load_ood, save_ood
from model.trees import TREES, TreeEnsemble, load_trees, save_trees, xgboost_version
from pipeline.core.atomic import WRITTEN, current_umask, remove_leftovers, temp_prefix
from pipeline.core.bioregion import REGIONS
from pipeline.core.contract import artifact_spec, features_digest
from pipeline.core.errors import BundleError
from pipeline.core.hashing import file_sha256
from pipeline.core.ledger import OUT_LOCK
from pipeline.core.legend import Legend
from pipeline.core.spec import FeatureSpec

FORMAT = "eulc-bundle/1"
WEIGHTS = "weights.safetensors"
META = "bundle.json"
ITEM = "item.json"
"""The bundle's STAC Item with the MLM extension (:mod:`model.mlm`), beside ``bundle.json``."""


NETWORK = "bridge-lc"
XGBOOST = "xgboost"
KINDS = (NETWORK, XGBOOST)
"""``bundle.json``'s ``model``: the network (every preset) or an XGBoost tree model."""


@dataclass
class ModelBundle:
    """A loaded bundle: the network (eval mode) and its normaliser, or an XGBoost
    :class:`~model.trees.TreeEnsemble` (normaliser None), with the legend and metadata.
    """

    model: BridgeLC | TreeEnsemble
    normalizer: AffineNormalizer | None
    legend: Legend
    features: list[str]
    meta: dict[str, Any]
    path: Path | None = None
    json_sha256: str = ""

    @property
    def kind(self) -> str:
        """``bridge-lc`` (the network) or ``xgboost`` (:data:`KINDS`)."""
        return XGBOOST if isinstance(self.model, TreeEnsemble) else NETWORK

    def network(self) -> tuple[BridgeLC, AffineNormalizer]:
        """The network and its normaliser.

        Raises:
            BundleError: a tree-model bundle (it has neither).
        """
        if isinstance(self.model, TreeEnsemble) or self.normalizer is None:
            raise BundleError(
                "is an XGBoost bundle: it has no network (its embedding, normaliser or coordinates)",
                "Give a network bundle (one trained without `model` xgboost)",
                path=self.path,
            )
        return self.model, self.normalizer

    def predict_proba(self, x: np.ndarray, lonlat_deg: np.ndarray, device: str = "cpu") -> np.ndarray:
        """Calibrated class probabilities float32 (N, C), legend order, of raw features ``x``
        float32 (N, F) in the spec's stored units and ``lonlat_deg`` float32 (N, 2) (lon, lat,
        EPSG:4326; trees ignore them), whatever the bundle's kind.
        """
        if isinstance(self.model, TreeEnsemble):
            return self.model.predict_proba(x)
        net, norm = self.network()
        return predict_proba(net, norm.transform(x), lonlat_deg, device)

    @functools.cached_property
    def _feature_spec(self) -> FeatureSpec:
        where = f"bundle {self.path}" if self.path else "the bundle"
        return artifact_spec(self.meta.get("spec", {}), self.features, where).subset(self.features)

    def feature_spec(self) -> FeatureSpec:
        """The spec of the bundle's features, in its order (embedded in ``bundle.json``; for a
        bundle of an earlier eulc, the shipped spec it names, whose hash must still match).

        Raises:
            ContractError: the embedded spec is invalid or was edited, or the named spec changed.
        """
        return self._feature_spec

    def class_prior(self) -> np.ndarray:
        """The training rows' class shares (C,) float64, legend order (``metrics.class_prior``),
        for EM prior adaptation at map time (:mod:`model.priors`).

        Raises:
            BundleError: the bundle was trained before eulc recorded them (issue #15).
        """
        prior = self.meta.get("metrics", {}).get("class_prior")
        if prior is None:
            raise BundleError(
                "does not record its training class priors",
                "Retrain it with this eulc (`eulc train`), or map without `adapt_priors`",
                path=self.path,
            )
        return bounds.check_prior(prior, len(self.legend), (self.path or Path(".")) / META)

    @property
    def features_digest(self) -> str:
        """The features digest of the bundle's inputs (:func:`pipeline.core.contract.features_digest`)."""
        return features_digest(self.feature_spec())

    @property
    def digest(self) -> str:
        """SHA-256 (first 16 hex) of ``bundle.json`` and the weights together: the model hash in
        map tags and resume keys (an edit of either file changes it).
        """
        return _digest(self.meta["weights_sha256"], self.json_sha256)

    @functools.cached_property
    def _ood(self) -> OODReference | None:
        if self.path is None or isinstance(self.model, TreeEnsemble):
            return None
        return load_ood(self.path, self.digest, self.features, self.model.cfg.hidden, self.model.cfg.n_classes)

    def ood(self) -> OODReference | None:
        """The training-data reference for OOD map layers (:mod:`model.ood`), or None for a
        bundle without one (trained before eulc fitted them, or with ``--landscapes 0``).

        Raises:
            BundleError: the reference files are incomplete, altered, or fitted for another model.
        """
        return self._ood

    def require_ood(self) -> OODReference:
        """:meth:`ood`, or a clear error for a bundle without a reference.

        Raises:
            BundleError: no reference (saying how to add one), or one that does not load.
        """
        ref = self.ood()
        if ref is None and isinstance(self.model, TreeEnsemble):
            raise BundleError(
                "is an XGBoost bundle: the OOD layer measures distance in a network's embedding, which trees lack",
                "Map without `ood`, or give a network bundle",
                path=self.path,
            )
        if ref is None:
            raise BundleError(
                "has no OOD reference (ood.json, ood.safetensors): it was trained before eulc fitted one",
                "Add one with `eulc ood` from the table it was trained on (`table`), or map without `ood`",
                path=self.path,
            )
        return ref


def _digest(weights_sha256: str, json_sha256: str) -> str:
    return hashlib.sha256(f"{weights_sha256}:{json_sha256}".encode()).hexdigest()[:16]


def folder_digest(path: Path) -> str:
    """:attr:`ModelBundle.digest` of the bundle folder ``path`` without loading the model: from
    ``bundle.json``'s recorded weights SHA-256 and that file's own SHA-256.

    Raises:
        OSError, ValueError, KeyError: ``bundle.json`` is missing, not JSON or has no ``weights_sha256``.
    """
    mpath = Path(path) / META
    return _digest(json.loads(mpath.read_text(encoding="utf-8"))["weights_sha256"], file_sha256(mpath))


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("eulc", "torch", "numpy", "safetensors"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


TRAIN_LEDGER = ".eulc-train.json"
"""The train stage's ledger in a bundle folder (:mod:`pipeline.core.ledger`): what the bundle was trained from."""
CARD_COMPARISON = "versus_xgboost.json"
"""The model card's comparison with XGBoost on the untouched cells, with its cell-bootstrap interval
(``scripts/train_pretrained.py``, issue #29); kept beside ``bundle.json`` because that file's hash is
part of the model's digest."""
BUNDLE_FILES = frozenset(
    {
        META,
        WEIGHTS,
        TREES,
        ITEM,
        "MODEL_CARD.md",
        CARD_COMPARISON,
        OOD_META,
        OOD_WEIGHTS,
        TRAIN_LEDGER,
        WRITTEN,
        OUT_LOCK,
    }
)
"""The files a bundle directory may hold; any other file makes it someone else's folder."""


def check_bundle_dest(dest: Path, overwrite: bool = False) -> None:
    """Refuse a bundle destination that eulc may not replace (before any training starts).

    ``dest`` may be missing or empty; an existing eulc bundle (only :data:`BUNDLE_FILES`, a
    ``bundle.json`` of this format) is replaced only with ``overwrite``; anything else (a file, a
    folder with other content such as a Python package) is never touched.

    Raises:
        BundleError: naming the folder, what it holds, and what to do.
    """
    dest = Path(dest)
    if not dest.exists():
        return
    if not dest.is_dir():
        raise BundleError("exists and is not a folder", "Give `out` a new folder name", path=dest)
    names = sorted(p.name for p in dest.iterdir())
    if not names:
        return
    foreign = [n for n in names if n not in BUNDLE_FILES]
    fmt = None
    if not foreign and (dest / META).is_file():
        try:
            fmt = json.loads((dest / META).read_text(encoding="utf-8")).get("format")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            fmt = None
    if foreign or fmt != FORMAT:
        shown = (foreign or names)[:5]
        raise BundleError(
            f"holds files eulc did not write ({', '.join(shown)}{' ...' if len(names) > 5 else ''})",
            "Give `out` a new or empty folder; eulc never deletes files it did not write",
            path=dest,
        )
    if not overwrite:
        raise BundleError(
            "already holds a model bundle", "Pass `overwrite` to replace it, or give another `out`", path=dest
        )


def save_bundle(
    dest: Path,
    model: BridgeLC,
    normalizer: AffineNormalizer,
    legend: Legend,
    features: list[str],
    spec: dict[str, Any],
    train_config: dict[str, Any],
    train_config_hash: str,
    data_hash: str,
    metrics: dict[str, Any],
    overwrite: bool = False,
    ood: OODReference | None = None,
    describe: Callable[[Path, str], object] | None = None,
) -> Path:
    """Write a bundle directory atomically (built in a temporary sibling, then renamed).

    Args:
        dest: the bundle directory; replaced if it exists.
        model: the trained network.
        normalizer: the fitted normaliser, (F,) statistics in the spec's stored units.
        legend: the class legend (Level-1 or Level-2).
        features: the F ordered feature names the network takes.
        spec: ``{"name", "hash", "features_digest", "feature_spec"}``: the spec name and full
            digest, and the contract of the bundle's features (:mod:`pipeline.core.contract`).
        train_config, train_config_hash: the training settings and their hash.
        data_hash: hash of the training table.
        metrics: training / validation metrics.
        overwrite: replace an existing eulc bundle at ``dest`` (see :func:`check_bundle_dest`).
        ood: the OOD reference (:func:`model.ood.fit_ood`), written with the rest and tied to
            this bundle's digest.
        describe: called with the finished temporary folder and ``dest``'s name before the rename
            (:func:`model.mlm.write_bundle_item`: the STAC MLM item is part of the bundle from the start).

    Returns:
        ``dest``.

    Raises:
        BundleError: ``dest`` is not eulc's to replace; non-finite weights (training diverged).
    """
    dest = Path(dest)
    check_bundle_dest(dest, overwrite)
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise BundleError(
            f"training produced non-finite weights ({bad[:3]}{' ...' if len(bad) > 3 else ''})",
            "Check the table for extreme values and lower `lr`",
            path=dest,
        )

    def fill(tmp: Path) -> dict[str, Any]:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        return {
            "format": FORMAT,
            "model": NETWORK,
            "architecture": model.cfg.to_json(),
            "features": list(features),
            "spec": spec,
            "normalizer": normalizer.to_json(),
            "legend": {"level": legend.level, "classes": legend.to_json()},
            "regions": list(_regions()),
            "encoding": {
                "type": model.cfg.encoding,
                "location": model.cfg.location,
                "dim": model.cfg.pe_dim,
                "order": ["lon", "lat"],
                "units": "degrees",
                "crs": "EPSG:4326",
            },
            "train_config": train_config,
            "train_config_hash": train_config_hash,
            "data_hash": data_hash,
            "versions": _versions(),
            "metrics": metrics,
            "weights_sha256": file_sha256(tmp / WEIGHTS),
        }

    return _write_bundle(dest, WEIGHTS, fill, ood, describe)


def save_tree_bundle(
    dest: Path,
    trees: TreeEnsemble,
    setting: str,
    params: dict[str, Any],
    legend: Legend,
    features: list[str],
    spec: dict[str, Any],
    train_config: dict[str, Any],
    train_config_hash: str,
    data_hash: str,
    metrics: dict[str, Any],
    overwrite: bool = False,
    describe: Callable[[Path, str], object] | None = None,
) -> Path:
    """Write an XGBoost bundle directory atomically: ``trees.json`` (XGBoost's JSON model) and
    ``bundle.json`` with the same records as :func:`save_bundle` (features, spec contract,
    legend, training settings and data hash, metrics, the model file's SHA-256); the
    ``architecture`` holds the setting, its parameters, the classes and the temperature
    (:meth:`model.trees.TreeEnsemble.architecture`). No normaliser, no coordinates, no OOD reference.

    Args:
        dest: the bundle directory.
        trees: the fitted model (:func:`model.trees.train_trees`).
        setting, params: the XGBoost setting's name and parameters.
        legend, features, spec, data_hash, metrics, overwrite, describe: as :func:`save_bundle`.
        train_config, train_config_hash: the split settings (a :class:`model.train.TrainConfig`
            record: the network's with the same seed has the same hold-out and test cells) and
            their hash.

    Returns:
        ``dest``.

    Raises:
        BundleError: ``dest`` is not eulc's to replace.
    """
    dest = Path(dest)
    check_bundle_dest(dest, overwrite)

    def fill(tmp: Path) -> dict[str, Any]:
        save_trees(trees, tmp / TREES)
        return {
            "format": FORMAT,
            "model": XGBOOST,
            "architecture": trees.architecture(setting, params),
            "features": list(features),
            "spec": spec,
            "legend": {"level": legend.level, "classes": legend.to_json()},
            "regions": list(_regions()),
            "encoding": {"location": "none"},
            "train_config": train_config,
            "train_config_hash": train_config_hash,
            "data_hash": data_hash,
            "versions": {**_versions(), "xgboost": xgboost_version()},
            "metrics": metrics,
            "weights_sha256": file_sha256(tmp / TREES),
        }

    return _write_bundle(dest, TREES, fill, None, describe)


def _write_bundle(
    dest: Path,
    weights: str,
    fill: Callable[[Path], dict[str, Any]],
    ood: OODReference | None,
    describe: Callable[[Path, str], object] | None = None,
) -> Path:
    """Build the bundle in a temporary sibling (``fill`` writes the model file ``weights`` and
    returns ``bundle.json``'s record), then rename it over ``dest`` (checked replaceable).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(dest.parent)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(dest.name), dir=dest.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700
        meta = fill(tmp)
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for f in (tmp / weights, tmp / META):  # safetensors writes 0600: honour the umask like any file
            os.chmod(f, 0o666 & ~current_umask())
        if ood is not None:
            save_ood(tmp, ood, _digest(file_sha256(tmp / weights), file_sha256(tmp / META)))
        if describe is not None:
            describe(tmp, dest.name)
        if dest.exists():  # an eulc bundle (checked above): swap, then drop the old one
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(dest.name + "-old"), dir=dest.parent))
            os.replace(dest, old / dest.name)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _regions() -> tuple[str, ...]:

    return REGIONS


LIMITS = {
    "n_features": (1, 10_000),
    "n_classes": (2, 1_000),
    "n_regions": (1, 100),
    "pe_dim": (2, 4_096),
    "loc_hidden": (1, 4_096),
    "hidden": (1, 4_096),
    "depth": (1, 32),
    "ple_bins": (0, 64),
    "ensemble": (1, 8),
}
"""Sane bounds (inclusive) of the architecture fields: checked before any tensor is allocated."""


def _check_architecture(arch: Any, mpath: Path) -> BridgeConfig:
    if not isinstance(arch, dict):
        raise BundleError("'architecture' is not an object", "Re-train the bundle", path=mpath)
    for key, (lo, hi) in LIMITS.items():
        v = arch.get(key)
        if key in arch and (not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi):
            raise BundleError(
                f"architecture.{key} = {v!r} is outside {lo}..{hi}", "Restore bundle.json as eulc wrote it", path=mpath
            )
    bounds.check_temperature(arch.get("temperature", 1.0), mpath)
    d = arch.get("dropout", 0.5)
    if not isinstance(d, (int, float)) or not 0 <= d < 1:
        raise BundleError(f"architecture.dropout = {d!r} must be in [0, 1)", "Restore bundle.json", path=mpath)
    try:
        return BridgeConfig(**arch)
    except TypeError as e:
        raise BundleError(
            f"architecture has an unknown or missing key ({e})", "Re-train the bundle", path=mpath
        ) from None
    except ValueError as e:  # a combination eulc never writes
        raise BundleError(f"architecture has {e}", bounds.RESTORE, path=mpath) from None


def load_bundle(path: Path) -> ModelBundle:
    """Load and validate a bundle directory without pickle.

    Raises:
        BundleError: a file is missing, the JSON is malformed or inconsistent (feature count,
            normaliser length, legend size), or the weights' SHA-256 does not match.
    """
    path = Path(path)
    mpath = path / META
    if not mpath.is_file():
        raise BundleError(f"{META} is missing", "Give a directory written by `eulc train`", path=path)
    try:
        meta = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"is not valid UTF-8 JSON ({e})", "Re-train or restore the bundle", path=mpath) from None
    if not isinstance(meta, dict):
        raise BundleError("is not a JSON object", "Re-train or restore the bundle", path=mpath)
    if meta.get("format") != FORMAT:
        raise BundleError(
            f"format is {meta.get('format')!r}, expected {FORMAT!r}", "Re-train with this version of eulc", path=mpath
        )
    kind = meta.get("model", NETWORK)
    if kind not in KINDS:
        raise BundleError(f"model is {kind!r}, not one of {', '.join(KINDS)}", bounds.RESTORE, path=mpath)
    wpath = path / (TREES if kind == XGBOOST else WEIGHTS)
    if not wpath.is_file():
        raise BundleError(f"{wpath.name} is missing", "Give a directory written by `eulc train`", path=path)
    if file_sha256(wpath) != meta.get("weights_sha256"):
        raise BundleError(
            "weights do not match the SHA-256 recorded in bundle.json",
            "The bundle was modified or truncated; re-train or restore it",
            path=wpath,
        )
    if kind == XGBOOST:
        return _load_tree_bundle(path, meta, wpath)
    cfg = _check_architecture(meta.get("architecture"), mpath)  # bounds first: no huge allocation
    try:
        features = list(meta["features"])
        norm = AffineNormalizer.from_json(meta["normalizer"])
        legend = Legend.from_json(meta["legend"]["level"], meta["legend"]["classes"])
    except (KeyError, TypeError, AttributeError) as e:
        raise BundleError(f"lacks or mangles the key {e}", "Re-train the bundle", path=mpath) from None
    except ValueError as e:
        raise BundleError(f"normalizer: {e}", "Restore bundle.json as eulc wrote it", path=mpath) from None
    sizes = {len(a) for a in (norm.center, norm.scale, norm.lo, norm.hi)}
    if not (cfg.n_features == len(features)) or sizes != {cfg.n_features}:
        raise BundleError(
            f"inconsistent: {cfg.n_features} network inputs, {len(features)} feature names, "
            f"{sorted(sizes)} normaliser entries",
            "Re-train the bundle",
            path=mpath,
        )
    if cfg.n_classes != len(legend):
        raise BundleError(
            f"{cfg.n_classes} network classes but {len(legend)} legend classes", "Re-train the bundle", path=mpath
        )
    bounds.check_classes(cfg.n_classes, [c.id for c in legend.classes], mpath)
    bounds.check_normaliser(norm.center, norm.scale, norm.lo, norm.hi, features, mpath)
    metrics = meta.get("metrics", {})
    if not isinstance(metrics, dict):
        raise BundleError(f"metrics is {type(metrics).__name__}, not an object", bounds.RESTORE, path=mpath)
    if "class_prior" in metrics:
        bounds.check_prior(metrics["class_prior"], cfg.n_classes, mpath)
    with torch.device("meta"):  # count the parameters before allocating any
        bounds.check_parameters(sum(p.numel() for p in BridgeLC(cfg).parameters()), mpath)
    net = BridgeLC(cfg)
    state = load_file(str(wpath))
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise BundleError(f"weights hold non-finite values ({bad[:3]})", "Re-train the bundle", path=wpath)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BundleError(
            f"weights do not fit the architecture ({str(e).splitlines()[0]})", "Re-train the bundle", path=wpath
        ) from None
    net.eval()
    out = ModelBundle(net, norm, legend, features, meta, path, file_sha256(mpath))
    out.feature_spec()  # the contract is checked at load: an edited or foreign spec is refused here
    return out


def _load_tree_bundle(path: Path, meta: dict[str, Any], wpath: Path) -> ModelBundle:
    """The checks of :func:`load_bundle` for an XGBoost bundle (its model file's hash is checked)."""
    mpath = path / META
    try:
        features = list(meta["features"])
        legend = Legend.from_json(meta["legend"]["level"], meta["legend"]["classes"])
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise BundleError(f"lacks or mangles the key {e}", "Re-train the bundle", path=mpath) from None
    bounds.check_classes(len(legend), [c.id for c in legend.classes], mpath)
    metrics = meta.get("metrics", {})
    if not isinstance(metrics, dict):
        raise BundleError(f"metrics is {type(metrics).__name__}, not an object", bounds.RESTORE, path=mpath)
    if "class_prior" in metrics:
        bounds.check_prior(metrics["class_prior"], len(legend), mpath)
    trees = load_trees(wpath, meta.get("architecture"), len(features), len(legend), mpath)
    out = ModelBundle(trees, None, legend, features, meta, path, file_sha256(mpath))
    out.feature_spec()  # the contract is checked at load, as for a network
    return out


_LOADED: dict[tuple[Any, ...], ModelBundle] = {}


def load_bundle_cached(path: Path, digest: str | None = None) -> ModelBundle:
    """:func:`load_bundle` once per process: a bundle is read and its weights hashed once, then
    reused while its folder's files keep their size and modification time (the CLI's checks,
    the map runner and, with the ``sync`` scheduler, its tiles share one load).

    Args:
        path: the bundle folder.
        digest: when given, the :attr:`ModelBundle.digest` the caller planned with; a bundle that
            no longer has it (edited during the run) is refused.

    Raises:
        BundleError: as :func:`load_bundle`, and a digest other than ``digest``.
    """
    path = Path(path)
    try:
        stamp = tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file()))
    except OSError:
        stamp = ()
    ident = (str(path.resolve()), stamp)
    bundle = _LOADED.get(ident)
    if bundle is None:
        bundle = load_bundle(path)
        if stamp:
            _LOADED[ident] = bundle
    if digest is not None and bundle.digest != digest:
        raise BundleError(
            f"changed during the run (digest {bundle.digest}, planned with {digest})",
            "Leave the bundle unchanged while it maps, then rerun",
            path=path,
        )
    return bundle
