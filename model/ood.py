"""Where a map is out of its depth: a reference of the training data stored with a bundle, and
per-pixel out-of-distribution (OOD) codes from it (issue #18).

Two independent tests, both fitted on the bundle's **training rows only**:

- **Landscape novelty** (after the cross-continent paper, ``../shared/papers``, seed 002:
  K-Means with K = 16 on band statistics to tell whether new imagery matches the training
  landscapes): K-Means on the standardised Sentinel-2 band medians among the bundle's
  features. A pixel is a *rare landscape* when its nearest cluster holds less than
  ``rare_share`` (1 %) of the training rows, or when it lies farther from every centroid than
  the training rows' ``quantile`` (99 %) distance.
- **Feature-space distance** (Lee et al. 2018, "A simple unified framework for detecting
  out-of-distribution samples", NeurIPS): the squared Mahalanobis distance of the network's
  penultimate embedding (:meth:`model.fused.FusedClassifier.embed`) to the nearest
  class-conditional Gaussian with a tied covariance, restricted to the ``rank`` (32)
  principal directions of that covariance with the *smallest* variance ("partial Mahalanobis
  distance", Kamoi & Kobayashi 2020, arXiv 2003.00402: those directions carry the anomaly
  signal). The rank is set by the cost target of issue #18 (≤ 15 % of the map time): the full
  256-direction distance adds a 256 × 256 product per pixel, +49 % end to end
  (``benchmarks/RESULTS.md``). A pixel is *far* beyond the training rows' ``quantile`` distance.

Codes (``<tile>_ood.tif``): 0 in distribution, 1 rare landscape, 2 far in feature space, 3 both;
:data:`pipeline.core.ood_codes.OOD_NODATA` (255) where the map has no class.

Stored as ``ood.safetensors`` (the arrays) and ``ood.json`` (names, thresholds, shares, the
digest of the bundle it belongs to and the SHA-256 of the arrays); no pickle.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from model.bounds import check_ood
from model.fused import FusedClassifier
from pipeline.core.atomic import atomic_path, write_json
from pipeline.core.errors import BundleError
from pipeline.core.hashing import file_sha256
from pipeline.core.ood_codes import OOD_CODES
from pipeline.core.spec import FeatureSpec

OOD_FORMAT = "eulc-ood/1"
OOD_WEIGHTS = "ood.safetensors"
OOD_META = "ood.json"
DEFAULT_K = 16
DEFAULT_QUANTILE = 0.99
DEFAULT_RARE_SHARE = 0.01
DEFAULT_RANK = 32
EMBED_BATCH = 16_384
_BAND = re.compile(r"B\d+A?")


def landscape_features(spec: FeatureSpec) -> list[str]:
    """The features a landscape is described by: the annual Sentinel-2 band medians (``median``
    or ``p50`` of a band ``B2`` … ``B12``, no index, no texture) among ``spec``'s features; else
    every Sentinel-2 feature; else every feature (a bundle without Sentinel-2). Seed paper
    002 clusters the per-patch band means; the bundle's band medians are their per-pixel analogue.
    """
    s2 = [f for f in spec.features if spec.sensors[f.sensor].kind == "s2"]
    bands = [
        f.name
        for f in s2
        if f.derived is None
        and f.kernel_radius_px is None
        and _BAND.fullmatch(f.source)
        and f.stat in ("median", "p50")
    ]
    return bands or [f.name for f in s2] or [f.name for f in spec.features]


@dataclass
class OODReference:
    """The training-data reference of one bundle.

    Attributes:
        landscape_features: the B features of the landscapes (names, in the bundle's units).
        landscape_index: their positions in the bundle's feature order.
        mean, std: float32 (B,) standardisation of those features (training rows).
        centroids: float32 (K, B) K-Means centroids in standardised units.
        share: float64 (K,) share of the training rows in each cluster.
        region_share: float64 (K, R) share of each bioregion's training rows in each cluster
            (columns in ``regions`` order; a column of a region without rows is 0).
        landscape_threshold: squared standardised distance to the nearest centroid above
            which a pixel is a rare landscape (training ``quantile``).
        whitener: float32 (H, r): the r smallest-variance principal directions of the tied
            within-class covariance, each divided by its standard deviation (r = H: the full
            inverse, ``whitener @ whitener.T`` = Σ⁻¹).
        class_means: float32 (C, r) class means of the embedding, times ``whitener``.
        distance_threshold: squared Mahalanobis distance above which a pixel is far.
        regions: the bioregion names of ``region_share``'s columns.
        info: what it was fitted on (rows, K, quantile, rare share, seed, the bundle digest).
    """

    landscape_features: list[str]
    landscape_index: list[int]
    mean: np.ndarray
    std: np.ndarray
    centroids: np.ndarray
    share: np.ndarray
    region_share: np.ndarray
    landscape_threshold: float
    whitener: np.ndarray
    class_means: np.ndarray
    distance_threshold: float
    regions: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        """K, the number of landscape clusters."""
        return len(self.centroids)

    @property
    def digest(self) -> str:
        """SHA-256 (first 16 hex) of the stored arrays and ``ood.json`` together: the ``ood_hash``
        of map tags and resume keys (an edit of a threshold changes it); ``unsaved`` for a
        reference fitted here and not yet written.
        """
        arrays = str(self.info.get("arrays_sha256", ""))
        if not arrays:
            return "unsaved"
        return hashlib.sha256(f"{arrays}:{self.info.get('meta_sha256', '')}".encode()).hexdigest()[:16]

    @property
    def rare_share(self) -> float:
        """Training share below which a cluster counts as a rare landscape."""
        return float(self.info.get("rare_share", DEFAULT_RARE_SHARE))

    def _tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The arrays as float32 tensors on ``device`` (cached), laid out for ``addmm``:
        ``|u − m|² = |u|² − 2 u·m + |m|²`` with ``−2 Cᵀ`` and bias ``|c|²`` for the landscapes,
        ``Mᵀ`` and bias ``|m|²`` for the distance (measured fastest per 4k-pixel batch on CPU).
        """
        cache: dict[str, dict[str, torch.Tensor]] = self.__dict__.setdefault("_cache", {})
        key = str(device)
        if key not in cache:
            c = torch.from_numpy(self.centroids.astype(np.float32))
            m = torch.from_numpy(self.class_means.astype(np.float32))
            w = torch.from_numpy(self.whitener.astype(np.float32))
            cache[key] = {
                k: v.contiguous().to(device)
                for k, v in {
                    "idx": torch.as_tensor(self.landscape_index, dtype=torch.long),
                    "mean": torch.from_numpy(self.mean.astype(np.float32)),
                    "inv_std": torch.from_numpy((1.0 / self.std).astype(np.float32)),
                    "cent_w": -2.0 * c.t(),
                    "cent_sq": (c * c).sum(1),
                    "rare": torch.from_numpy(self.share < self.rare_share),
                    "whitener": w,
                    "means_t": m.t(),
                    "means_sq": (m * m).sum(1),
                }.items()
            }
        return cache[key]

    def landscape(self, x: torch.Tensor, selected: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest cluster (N,) int64 and its squared standardised distance (N,) float32 of raw
        features ``x`` (N, F) float32 in the bundle's order and stored units, or with
        ``selected`` of ``x`` (N, B) holding only :attr:`landscape_features`, in that order.
        """
        t = self._tensors(x.device)
        xs = (x.float() if selected else x.float().index_select(1, t["idx"])) - t["mean"]
        xs.mul_(t["inv_std"])
        best, arg = torch.addmm(t["cent_sq"], xs, t["cent_w"]).min(1)
        return arg, best.add_((xs * xs).sum(1)).clamp_min_(0.0)

    def is_rare(self, cluster: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
        """The rare-landscape test (N,) bool of :meth:`landscape`'s output: the nearest cluster
        holds under :attr:`rare_share` of the training rows, or the pixel lies beyond the
        training ``quantile`` distance (module docstring; seed paper 002).
        """
        return self._tensors(cluster.device)["rare"][cluster] | (d2 > self.landscape_threshold)

    def distance(self, h: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance (N,) float32 of embeddings ``h`` (N, H) to the nearest
        class mean (tied covariance, over the reference's principal directions).
        """
        t = self._tensors(h.device)
        u = h.float() @ t["whitener"]
        d2 = torch.addmm(t["means_sq"], u, t["means_t"], alpha=-2.0)
        return d2.min(1).values.add_((u * u).sum(1)).clamp_min_(0.0)

    def rare(self, x: torch.Tensor, batch: int = 65_536) -> torch.Tensor:
        """Whether each pixel is a rare landscape (N,) bool, for raw features ``x`` (N, F), in
        batches of ``batch`` rows (the landscape test is cheap per pixel and costly per call:
        measured 30 % faster at 64k rows than at 4k on CPU).
        """
        out = torch.empty(len(x), dtype=torch.bool, device=x.device)
        for i in range(0, len(x), batch):
            out[i : i + batch] = self.is_rare(*self.landscape(x[i : i + batch]))
        return out

    def far(self, h: torch.Tensor) -> torch.Tensor:
        """Whether each embedding (N, H) is far in feature space (N,) bool."""
        return self.distance(h) > self.distance_threshold

    def codes(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """OOD codes (N,) uint8 (:data:`pipeline.core.ood_codes.OOD_CODES`) of raw features ``x``
        (N, F) and embeddings ``h`` (N, H).
        """
        return self.rare(x).to(torch.uint8).add_(self.far(h).to(torch.uint8), alpha=2)

    def to_json(self) -> dict[str, Any]:
        """The JSON half (everything but the arrays), as written to ``ood.json``."""
        return {
            "format": OOD_FORMAT,
            "landscape_features": self.landscape_features,
            "landscape_threshold": self.landscape_threshold,
            "distance_threshold": self.distance_threshold,
            "regions": self.regions,
            "codes": {str(k): v for k, v in OOD_CODES.items()},
            "cluster_share": [round(float(s), 6) for s in self.share],
            **self.info,
        }


def embeddings(net: FusedClassifier, x: np.ndarray, lonlat_deg: np.ndarray) -> np.ndarray:
    """Penultimate embeddings float32 (N, H) of raw features ``x`` (N, F) float32 and lon/lat
    ``lonlat_deg`` (N, 2) float32 (EPSG:4326 degrees, lon first), in batches on the CPU: the
    inputs of the class head (paper §3.5, the invariant branch), by :meth:`FusedClassifier.embed`.
    """
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), EMBED_BATCH):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + EMBED_BATCH], dtype=np.float32))
            lb = torch.from_numpy(np.ascontiguousarray(lonlat_deg[i : i + EMBED_BATCH], dtype=np.float32))
            out.append(net.embed(xb, lb).numpy())
    return np.concatenate(out) if out else np.empty((0, net.head_w.shape[1]), np.float32)


def fit_ood(
    net: FusedClassifier,
    features: list[str],
    spec: FeatureSpec,
    x: np.ndarray,
    lonlat_deg: np.ndarray,
    y: np.ndarray,
    region: np.ndarray,
    regions: list[str],
    k: int = DEFAULT_K,
    quantile: float = DEFAULT_QUANTILE,
    rare_share: float = DEFAULT_RARE_SHARE,
    seed: int = 0,
    rank: int = DEFAULT_RANK,
) -> OODReference:
    """Fit the reference on a bundle's training rows.

    Args:
        net: the bundle's fused network (:class:`model.fused.FusedClassifier`).
        features: the bundle's F feature names, in order; ``spec`` their spec.
        x: float32 (N, F) raw features (stored units); lonlat_deg: float32 (N, 2) lon, lat degrees.
        y: int64 (N,) class ids; region: int64 (N,) indexes into ``regions``.
        k: landscape clusters (seed 002: 16); quantile: the training quantile of both thresholds;
        rare_share: training share under which a cluster is a rare landscape; seed: K-Means seed.
        rank: principal directions of the distance (the smallest-variance ones; ≥ H: all).

    Raises:
        BundleError: fewer rows than ``4 k``, a non-positive ``k`` or a quantile outside (0, 1).
    """
    if k < 1 or len(x) < 4 * k:
        raise BundleError(
            f"an OOD reference with K = {k} landscapes needs at least {4 * max(k, 1)} training rows (has {len(x)})",
            "Lower `landscapes`, or train on more rows",
        )
    if not 0 < quantile < 1:
        raise BundleError(f"the OOD quantile {quantile} is outside (0, 1)", "Use e.g. 0.99")
    names = landscape_features(spec)
    idx = [features.index(n) for n in names]
    xl = x[:, idx].astype(np.float64)
    mean, std = xl.mean(0), xl.std(0)
    std = np.where(std > 0, std, 1.0)
    xs = (xl - mean) / std
    from sklearn.cluster import KMeans  # here, not at import: a bundle loads without scikit-learn

    km = KMeans(k, n_init=4, random_state=seed).fit(xs)
    lab = km.labels_
    share = np.bincount(lab, minlength=k) / len(lab)
    region_share = np.zeros((k, len(regions)))
    for r in range(len(regions)):
        m = region == r
        if m.any():
            region_share[:, r] = np.bincount(lab[m], minlength=k) / m.sum()
    d_land = ((xs - km.cluster_centers_[lab]) ** 2).sum(1)
    z = embeddings(net, x, lonlat_deg).astype(np.float64)
    classes = np.unique(y)
    mus = np.stack([z[y == c].mean(0) for c in classes])
    cen = z - mus[np.searchsorted(classes, y)]
    cov = cen.T @ cen / len(cen)
    evals, evecs = np.linalg.eigh(cov)  # ascending
    live = evals > 1e-9 * evals[-1]  # dead ReLU units span a null space: no Gaussian lives there
    evals, evecs = evals[live], evecs[:, live]
    r = min(rank, len(evals))
    whitener = evecs[:, :r] / np.sqrt(evals[:r])  # |(z-μ) W|² = Σ_i (v_i·(z-μ))² / λ_i over the r smallest λ
    ref = OODReference(
        landscape_features=names,
        landscape_index=idx,
        mean=mean.astype(np.float32),
        std=std.astype(np.float32),
        centroids=km.cluster_centers_.astype(np.float32),
        share=share,
        region_share=region_share,
        landscape_threshold=float(np.quantile(d_land, quantile)),
        whitener=whitener.astype(np.float32),
        class_means=(mus @ whitener).astype(np.float32),
        distance_threshold=0.0,
        regions=list(regions),
        info={
            "k": k,
            "quantile": quantile,
            "rare_share": rare_share,
            "seed": seed,
            "n_rows": int(len(x)),
            "rank": r,
            "method": {
                "landscape": "K-Means on standardised S2 band medians (seed 002)",
                "distance": "class-conditional Mahalanobis, tied covariance, penultimate "
                "embedding (Lee et al. 2018), on the smallest-variance principal "
                "directions (Kamoi & Kobayashi 2020)",
            },
        },
    )
    with torch.inference_mode():  # the threshold from the very float32 code the map runs
        d_feat = ref.distance(torch.from_numpy(z.astype(np.float32))).numpy()
    ref.distance_threshold = float(np.quantile(d_feat, quantile))
    return ref


def save_ood(folder: Path, ref: OODReference, bundle_digest: str) -> None:
    """Write ``ood.safetensors`` then ``ood.json`` into a bundle folder, each atomically (a
    temporary file renamed); ``ood.json`` records ``bundle_digest`` and the arrays' SHA-256.

    Raises:
        OSError: the folder cannot be written (the files already there are left whole).
    """
    folder = Path(folder)
    arrays = {
        "mean": ref.mean,
        "std": ref.std,
        "centroids": ref.centroids,
        "share": ref.share,
        "region_share": ref.region_share,
        "whitener": ref.whitener,
        "class_means": ref.class_means,
    }
    with atomic_path(folder / OOD_WEIGHTS, recognise=in_bundle) as tmp:
        save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, str(tmp))
        sha = file_sha256(tmp)
    write_json(
        folder / OOD_META, {**ref.to_json(), "bundle_digest": bundle_digest, "arrays_sha256": sha}, recognise=in_bundle
    )


def in_bundle(path: Path) -> bool:
    """Whether ``path`` lies in an eulc bundle folder (its ``bundle.json`` has eulc's format): the
    files written with or beside a bundle (OOD reference, card) may replace their predecessors
    there, including in bundles committed without eulc's journal. False when unreadable.
    """
    try:
        fmt = json.loads((path.parent / "bundle.json").read_text(encoding="utf-8")).get("format", "")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(fmt, str) and fmt.startswith("eulc-bundle/")


def load_ood(folder: Path, bundle_digest: str, features: list[str], hidden: int, n_classes: int) -> OODReference | None:
    """The reference stored in a bundle folder, or None when it has none (an earlier bundle).

    Args:
        folder: the bundle folder; bundle_digest: :attr:`model.bundle.ModelBundle.digest`;
        features: the bundle's feature names; hidden: H; n_classes: C.

    Raises:
        BundleError: only one of the two files, a foreign format, arrays that do not match their
            SHA-256 or the network, or a reference fitted for another model (``bundle_digest``).
    """
    folder = Path(folder)
    w, m = folder / OOD_WEIGHTS, folder / OOD_META
    if not w.is_file() and not m.is_file():
        return None
    refit = "Refit it with `eulc ood` from the table it was trained on (`table`)"
    if not (w.is_file() and m.is_file()):
        raise BundleError(
            f"holds {m.name if m.is_file() else w.name} without {w.name if m.is_file() else m.name}", refit, path=folder
        )
    try:
        meta = json.loads(m.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"is not valid JSON ({e})", refit, path=m) from None
    if not isinstance(meta, dict) or meta.get("format") != OOD_FORMAT:
        raise BundleError(f"format is not {OOD_FORMAT!r}", refit, path=m)
    if meta.get("bundle_digest") != bundle_digest:
        raise BundleError(
            f"was fitted for the model {meta.get('bundle_digest')!r}, not this bundle's {bundle_digest!r}",
            refit,
            path=m,
        )
    if file_sha256(w) != meta.get("arrays_sha256"):
        raise BundleError(
            "does not match the SHA-256 recorded in ood.json (an interrupted `eulc ood`, or an edit)", refit, path=w
        )
    try:
        a = {k: v.numpy() for k, v in load_file(str(w)).items()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types on a damaged file
        raise BundleError(f"is not a readable safetensors file ({e})", refit, path=w) from None
    check_ood(meta, np.asarray(a.get("share", np.zeros(0)), np.float64), m)  # every number before use
    try:
        names = list(meta["landscape_features"])
        idx = [features.index(n) for n in names]
        ref = OODReference(
            names,
            idx,
            a["mean"],
            a["std"],
            a["centroids"],
            a["share"],
            a["region_share"],
            float(meta["landscape_threshold"]),
            a["whitener"],
            a["class_means"],
            float(meta["distance_threshold"]),
            list(meta["regions"]),
            {
                k: v
                for k, v in meta.items()
                if k
                in ("k", "quantile", "rare_share", "seed", "n_rows", "method", "fitted_on", "arrays_sha256", "rank")
            },
        )
    except (KeyError, ValueError, TypeError) as e:
        raise BundleError(f"lacks or mangles {e}", refit, path=m) from None
    ref.info["meta_sha256"] = file_sha256(m)  # an edit of a threshold changes the resume key (digest)
    b = len(names)
    shapes_ok = (
        ref.mean.shape == ref.std.shape == (b,)
        and ref.centroids.shape[1:] == (b,)
        and ref.share.shape == (ref.k,)
        and ref.region_share.shape == (ref.k, len(ref.regions))
        and ref.whitener.shape[0] == hidden
        and ref.class_means.shape[1:] == ref.whitener.shape[1:]
        and len(ref.class_means) <= n_classes
    )
    if not shapes_ok:
        raise BundleError("arrays do not fit the bundle's network or features", refit, path=w)
    return ref
