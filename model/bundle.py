"""The ModelBundle: a directory with ``weights.safetensors`` and ``bundle.json``; no pickle.

``bundle.json`` holds everything inference needs to reproduce training exactly (DESIGN.md
§2): the ordered feature names and the spec they come from, the normaliser statistics, the
legend (ids, names, colours), the region list, the positional-encoding settings (lon first,
degrees), the architecture, the training config and its hash, the training-data hash,
package versions, metrics and the SHA-256 of the weights. :func:`load_bundle` checks all of it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from model.bridge import BridgeConfig, BridgeLC
from model.normalize import MinMaxNormalizer
from pipeline.core.atomic import current_umask
from pipeline.core.bioregion import REGIONS
from pipeline.core.contract import artifact_spec, features_digest
from pipeline.core.errors import BundleError
from pipeline.core.hashing import file_sha256
from pipeline.core.legend import Legend
from pipeline.core.spec import FeatureSpec

FORMAT = "eulc-bundle/1"
WEIGHTS = "weights.safetensors"
META = "bundle.json"


@dataclass
class ModelBundle:
    """A loaded bundle: the network (eval mode), its normaliser, legend and metadata."""

    model: BridgeLC
    normalizer: MinMaxNormalizer
    legend: Legend
    features: list[str]
    meta: dict[str, Any]
    path: Path | None = None

    def feature_spec(self) -> FeatureSpec:
        """The spec of the bundle's features, in its order (embedded in ``bundle.json``; for a
        bundle of an earlier eulc, the shipped spec it names, whose hash must still match).

        Raises:
            ContractError: the embedded spec is invalid or was edited, or the named spec changed.
        """
        where = f"bundle {self.path}" if self.path else "the bundle"
        return artifact_spec(self.meta.get("spec", {}), self.features, where).subset(self.features)

    @property
    def features_digest(self) -> str:
        """The features digest of the bundle's inputs (:func:`pipeline.core.contract.features_digest`)."""
        return features_digest(self.feature_spec())

    @property
    def digest(self) -> str:
        """SHA-256 (first 16 hex) of the weights: the model hash written into map tags."""
        return str(self.meta["weights_sha256"])[:16]




def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("eulc", "torch", "numpy", "safetensors"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def save_bundle(dest: Path, model: BridgeLC, normalizer: MinMaxNormalizer, legend: Legend,
                features: list[str], spec: dict[str, Any], train_config: dict[str, Any],
                train_config_hash: str, data_hash: str, metrics: dict[str, Any]) -> Path:
    """Write a bundle directory atomically (built in a temporary sibling, then renamed).

    Args:
        dest: the bundle directory; replaced if it exists.
        model: the trained network.
        normalizer: min–max statistics, (F,) each, in the spec's stored units.
        legend: the class legend (Level-1 or Level-2).
        features: the F ordered feature names the network takes.
        spec: ``{"name", "hash", "features_digest", "feature_spec"}``: the spec name and full
            digest, and the contract of the bundle's features (:mod:`pipeline.core.contract`).
        train_config, train_config_hash: the training settings and their hash.
        data_hash: hash of the training table.
        metrics: training / validation metrics.

    Returns:
        ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        meta = {
            "format": FORMAT,
            "model": "bridge-lc",
            "architecture": model.cfg.to_json(),
            "features": list(features),
            "spec": spec,
            "normalizer": {"method": "minmax", **normalizer.to_json()},
            "legend": {"level": legend.level, "classes": legend.to_json()},
            "regions": list(_regions()),
            "encoding": {"type": model.cfg.encoding, "location": model.cfg.location,
                         "dim": model.cfg.pe_dim, "order": ["lon", "lat"],
                         "units": "degrees", "crs": "EPSG:4326"},
            "train_config": train_config,
            "train_config_hash": train_config_hash,
            "data_hash": data_hash,
            "versions": _versions(),
            "metrics": metrics,
            "weights_sha256": file_sha256(tmp / WEIGHTS),
        }
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
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


def load_bundle(path: Path) -> ModelBundle:
    """Load and validate a bundle directory without pickle.

    Raises:
        BundleError: a file is missing, the JSON is malformed or inconsistent (feature count,
            normaliser length, legend size), or the weights' SHA-256 does not match.
    """
    path = Path(path)
    mpath, wpath = path / META, path / WEIGHTS
    for p in (mpath, wpath):
        if not p.is_file():
            raise BundleError(f"{p.name} is missing", "Give a directory written by `eulc train`",
                              path=path)
    try:
        meta = json.loads(mpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BundleError(f"is not valid JSON ({e})", "Re-train or restore the bundle",
                          path=mpath) from None
    if meta.get("format") != FORMAT:
        raise BundleError(f"format is {meta.get('format')!r}, expected {FORMAT!r}",
                          "Re-train with this version of eulc", path=mpath)
    if file_sha256(wpath) != meta.get("weights_sha256"):
        raise BundleError("weights do not match the SHA-256 recorded in bundle.json",
                          "The bundle was modified or truncated; re-train or restore it", path=wpath)
    try:
        cfg = BridgeConfig(**meta["architecture"])
        features = list(meta["features"])
        norm = MinMaxNormalizer.from_json(meta["normalizer"])
        legend = Legend.from_json(meta["legend"]["level"], meta["legend"]["classes"])
    except (KeyError, TypeError) as e:
        raise BundleError(f"lacks or mangles the key {e}", "Re-train the bundle", path=mpath) from None
    if not (cfg.n_features == len(features) == len(norm.minimum) == len(norm.maximum)):
        raise BundleError(
            f"inconsistent: {cfg.n_features} network inputs, {len(features)} feature names, "
            f"{len(norm.minimum)} normaliser entries", "Re-train the bundle", path=mpath)
    if cfg.n_classes != len(legend):
        raise BundleError(f"{cfg.n_classes} network classes but {len(legend)} legend classes",
                          "Re-train the bundle", path=mpath)
    net = BridgeLC(cfg)
    state = load_file(str(wpath))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BundleError(f"weights do not fit the architecture ({str(e).splitlines()[0]})",
                          "Re-train the bundle", path=wpath) from None
    net.eval()
    out = ModelBundle(net, norm, legend, features, meta, path)
    out.feature_spec()  # the contract is checked at load: an edited or foreign spec is refused here
    return out
