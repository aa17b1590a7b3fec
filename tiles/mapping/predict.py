"""Apply a ModelBundle to a feature COG: class, confidence (and optional probability and
Level-2) COGs for one tile (paper §3.5 inference; issue #5).

- Bands are read by name in the bundle's order (:class:`pipeline.core.reader.FeatureReader`), in row
  blocks decoded pixel-major (a pixel's features adjacent: the rows the model reads, no
  transpose), by GDAL with as many threads as torch uses. On CUDA a reader thread runs two
  blocks ahead of the model, so disk reads, decompression and lon/lat overlap GPU compute.
- Pixel-centre lon/lat come from the transform via pyproj (EPSG:3035 → EPSG:4326,
  ``always_xy=True``).
- The network is :class:`model.fused.FusedClassifier` (normaliser, BatchNorm and temperature
  folded into the Linear layers), run under ``torch.inference_mode`` in sub-batches of
  ``batch_px`` pixels (:data:`CPU_BATCH_PX` on CPU). On CUDA: pinned host
  buffers, non-blocking copies and bf16 autocast.
- Pixels where any model feature is NaN become nodata (255) and are counted.
- With a Level-2 bundle, crop types are predicted inside the pixels mapped as Cropland.
- An XGBoost bundle (:mod:`model.trees`) runs through the same reader, tiles, tags and COGs: its
  calibrated log-probabilities take the network's logits' place (with the same EM prior bias);
  XGBoost predicts on the CPU with the threads torch has.
"""

from __future__ import annotations

import copy
import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine

from model.bundle import ModelBundle
from model.fused import FusedClassifier
from model.infer import resolve_device
from model.ood import OODReference
from model.priors import DEFAULT_ADAPTATION, Adaptation, prior_bias
from model.trees import TreeEnsemble
from pipeline.core.cog import write_cog
from pipeline.core.contract import artifact_spec, compare_features
from pipeline.core.errors import RasterError
from pipeline.core.featurecog import feature_contract
from pipeline.core.grid import GridWindow, TileId, pixel_centres_lonlat
from pipeline.core.legend import Legend
from pipeline.core.ood_codes import OOD_CODES, OOD_COLORS, OOD_NODATA
from pipeline.core.reader import Block, FeatureReader
from pipeline.core.spec import FeatureSpec

NODATA = 255
CROPLAND = "Cropland"
CPU_BATCH_PX = 4096
"""Pixels per forward pass on CPU: activations (4096 × 256 float32 = 4 MB) stay in cache;
2k–8k measured alike here (0.27 Mpx/s, 109 features), 16k 30 % slower, 65k 50 % slower."""
GDAL_CACHE_MB = 256
"""GDAL block cache while reading a tile (GDAL's default is 5 % of RAM)."""
OOD_GROUP = 4
"""Sub-batches whose embeddings the OOD distance takes at once on CPU (``eulc map --ood``)."""
CUDA_BATCH_PX = 262_144
"""Pixels per forward pass on CUDA (large batches keep the GPU busy)."""


@dataclass
class TileResult:
    """Outputs and counts of one predicted tile.

    Attributes:
        class_path, confidence_path: the uint8 COGs.
        n_pixels, n_nodata: pixels in the tile, and those without every feature.
        class_counts: pixels per class name.
        extra_paths: the probability and Level-2 COGs when asked for.
        tags: the tags written into every output (model/spec hash, tile id, year).
        ood_counts: with the OOD layer, mapped pixels per OOD code (``"0"`` … ``"3"``).
    """

    class_path: Path
    confidence_path: Path
    n_pixels: int
    n_nodata: int
    class_counts: dict[str, int]
    extra_paths: list[Path] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    ood_counts: dict[str, int] | None = None

    @property
    def ood_share(self) -> float | None:
        """Share of the mapped pixels flagged out of distribution (any code > 0), or None without the layer."""
        if self.ood_counts is None:
            return None
        total = sum(self.ood_counts.values())
        return (total - self.ood_counts.get("0", 0)) / total if total else 0.0

    @property
    def outputs(self) -> list[Path]:
        """Every file written for the tile."""
        return [self.class_path, self.confidence_path, *self.extra_paths]


class Predictor:
    """The fused model(s) of a bundle (and an optional Level-2 bundle) on one device.

    Args:
        bundle: the Level-1 (or any) bundle.
        level2: a Level-2 crop bundle; its classes fill the pixels mapped as Cropland.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        batch_px: pixels per forward pass (default :data:`CPU_BATCH_PX` or :data:`CUDA_BATCH_PX`).
        bf16: bfloat16 autocast for the matrix products (default: on CUDA only).
        ood: also compute the OOD codes of the Level-1 bundle's reference (:mod:`model.ood`).

    Raises:
        RasterError: a Level-2 bundle with a Level-1 bundle that has no Cropland class.
        BundleError: ``ood`` with a bundle without an OOD reference (or a damaged one).
    """

    def __init__(
        self,
        bundle: ModelBundle,
        level2: ModelBundle | None = None,
        device: str = "auto",
        batch_px: int | None = None,
        bf16: bool | None = None,
        ood: bool = False,
    ) -> None:
        self.bundle = bundle
        self.level2 = level2
        self.device = resolve_device(device)
        self.batch_px = batch_px or (CUDA_BATCH_PX if self.device.type == "cuda" else CPU_BATCH_PX)
        self.bf16 = self.device.type == "cuda" if bf16 is None else bf16
        self.net = self._classifier(bundle)
        self.net2 = self._classifier(level2) if level2 else None
        if not any(isinstance(n, FusedClassifier) for n in (self.net, self.net2)):
            self.bf16 = False  # trees only: float32 throughout, whatever the device
        self.ood: OODReference | None = bundle.require_ood() if ood else None
        self.crop_id = -1
        if level2 is not None:
            if CROPLAND not in bundle.legend.names:
                raise RasterError(
                    f"the map bundle has no {CROPLAND!r} class to fill with crop types",
                    "Give a Level-1 bundle with `bundle` and the crop bundle with `level2`",
                )
            self.crop_id = bundle.legend.names.index(CROPLAND)
        names = list(bundle.features)
        names += [n for n in (level2.features if level2 else []) if n not in names]
        self.features = names
        self._idx1 = [names.index(n) for n in bundle.features]
        self._idx2 = [names.index(n) for n in level2.features] if level2 else []
        self._specs: list[tuple[ModelBundle, FeatureSpec]] | None = None

    def _classifier(self, bundle: ModelBundle) -> FusedClassifier | TreeEnsemble:
        if isinstance(bundle.model, TreeEnsemble):
            bundle.model.set_threads(torch.get_num_threads())
            return bundle.model
        net, norm = bundle.network()
        return FusedClassifier(net, norm).to(self.device).eval()

    @property
    def specs(self) -> list[tuple[ModelBundle, FeatureSpec]]:
        """Each bundle with the spec of its features (read on first use: a synthetic bundle built
        for a model-only benchmark has none and is never checked against a file).
        """
        if self._specs is None:
            self._specs = [(b, b.feature_spec()) for b in (self.bundle, self.level2) if b is not None]
        return self._specs

    def check_features(self, reader: FeatureReader, accept: tuple[str, ...] = ()) -> str:
        """Compare the feature file's contract with the bundle(s)' (the features → map seam).

        Returns:
            What was checked, for the class COG's ``contract`` tag: ``checked``, with any
            difference the caller accepted, or ``unchecked`` for a file without a contract
            (an earlier eulc's output: only band names and stored scales are checked then).

        Raises:
            ContractError: a needed feature is computed otherwise than the bundle's (another
                scale, orbit, cloud mask, level, window, statistic ...): first feature and field named.
        """
        rec = feature_contract(reader.tags, reader.path)
        if rec is None:
            return "unchecked: the feature file carries no feature spec (band names and scales checked)"
        where = f"feature file {reader.path}"
        file_spec = artifact_spec(rec, reader.names, where)
        said: list[str] = []
        for b, spec in self.specs:
            said += compare_features(spec, file_spec, b.features, f"bundle {b.path or ''}".strip(), where, accept)
        return "checked" + (f"; accepted: {'; '.join(said[:8])}{' ...' if len(said) > 8 else ''}" if said else "")

    @property
    def scales(self) -> dict[str, float]:
        """Stored scale of every feature the model(s) read (physical × scale), from the bundles' specs."""
        return {f.name: f.scale for _, spec in self.specs for f in spec.features}

    @property
    def uses_coordinates(self) -> bool:
        """Whether any of the models reads lon/lat (location ``learnt`` or ``fixed``)."""
        return any(n.location != "none" for n in (self.net, self.net2) if n is not None)

    @property
    def digest(self) -> str:
        """The model hash written into the tags (``l1hash+l2hash`` with a Level-2 bundle)."""
        return self.bundle.digest + (f"+{self.level2.digest}" if self.level2 else "")

    @property
    def ood_digest(self) -> str:
        """SHA-256 of the OOD reference's arrays used (first 16 hex), or ``""`` without ``ood``."""
        return self.ood.digest if self.ood is not None else ""

    def with_prior_bias(self, bias: np.ndarray) -> Predictor:
        """A copy whose Level-1 logits get ``bias`` (C,) added (:func:`model.priors.prior_bias`):
        the same fused network with a shifted class-head bias (Saerens et al. 2002).
        """
        other = copy.copy(self)
        if isinstance(self.net, TreeEnsemble):
            other.net = self.net.with_bias(bias)
            return other
        other.net = net = copy.deepcopy(self.net)
        with torch.no_grad():
            net.head_b.add_(torch.as_tensor(bias, dtype=net.head_b.dtype, device=net.head_b.device))
        return other

    def run(
        self,
        net: FusedClassifier | TreeEnsemble,
        x: np.ndarray,
        lonlat_deg: np.ndarray,
        proba: bool = False,
        ood: OODReference | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Class id uint8 (N,), max probability float32 (N,), with ``proba`` the probabilities
        float32 (N, C), and with ``ood`` the OOD codes uint8 (N,) (:data:`pipeline.core.ood_codes.OOD_CODES`) of
        raw features (N, F) and lon/lat (N, 2), in sub-batches (softmax of the
        temperature-scaled logits; paper §3.5). ``x`` may be any strided view, such as the
        pixel rows ``values.reshape(F, -1).T`` of a reader block. A tree model's logits are its
        calibrated log-probabilities (:meth:`model.trees.TreeEnsemble.logits`); it has no OOD codes.
        """
        if isinstance(net, TreeEnsemble):
            return _tree_run(net, x, proba, self.batch_px)
        n, n_cls = len(x), net.head_b.shape[0]
        cls = np.empty(n, np.uint8)
        pmax = np.empty(n, np.float32)
        prob = np.empty((n, n_cls), np.float32) if proba else None
        far = np.empty(n, np.bool_) if ood is not None else None
        cuda = self.device.type == "cuda"
        # on CPU the embeddings of OOD_GROUP sub-batches are gathered in one buffer and their
        # distance taken at once: the thin (N, H) x (H, 32) product runs ~30 % faster on 16k
        # rows than on 4k (benchmarks/RESULTS.md, issue #18)
        group = OOD_GROUP * self.batch_px if ood is not None and not cuda and not self.bf16 else 0
        hbuf = torch.empty((group, net.head_w.shape[1])) if group else None
        g0 = 0
        with torch.inference_mode():
            for i in range(0, n, self.batch_px):
                if cuda:
                    xb = torch.from_numpy(np.ascontiguousarray(x[i : i + self.batch_px]))
                    lb = torch.from_numpy(np.ascontiguousarray(lonlat_deg[i : i + self.batch_px]))
                    xb = xb.pin_memory().to(self.device, non_blocking=True)
                    lb = lb.pin_memory().to(self.device, non_blocking=True)
                else:  # any strided view works as it is (a transposed one goes to BLAS transposed)
                    xb = torch.from_numpy(x[i : i + self.batch_px])
                    lb = torch.from_numpy(lonlat_deg[i : i + self.batch_px])
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    slot = hbuf[i - g0 : i - g0 + len(xb)] if hbuf is not None else None
                    h = net.embed(xb, lb, out=slot)
                    z = net.head(h).float()
                if ood is not None and far is not None:  # the embedding the logits came from
                    if hbuf is None:
                        far[i : i + len(z)] = ood.far(h).cpu().numpy()
                    elif i + len(z) - g0 == group or i + len(z) == n:
                        far[g0 : i + len(z)] = ood.far(hbuf[: i + len(z) - g0]).numpy()
                        g0 = i + len(z)
                top, arg = z.max(1)
                e = torch.exp(z - top[:, None])
                tot = e.sum(1)
                j = i + len(z)
                cls[i:j] = arg.to(torch.uint8).cpu().numpy()
                pmax[i:j] = (1.0 / tot).cpu().numpy()
                if prob is not None:
                    prob[i:j] = (e / tot[:, None]).cpu().numpy()
        codes = None
        if ood is not None and far is not None:  # the landscape test over whole blocks: cheaper per pixel
            with torch.inference_mode():
                xt = torch.from_numpy(x).to(self.device) if self.device.type == "cuda" else torch.from_numpy(x)
                codes = ood.rare(xt).cpu().numpy().astype(np.uint8)
            codes += 2 * far.astype(np.uint8)
        return cls, pmax, prob, codes

    def predict(self, x: np.ndarray, lonlat_deg: np.ndarray, proba: bool = False) -> dict[str, np.ndarray]:
        """Predict N pixels with every feature of :attr:`features` present.

        Args:
            x: float32 (N, len(features)) raw features (spec stored units), no NaN.
            lonlat_deg: float32 (N, 2), lon then lat, EPSG:4326 degrees.
            proba: also return the class probabilities.

        Returns:
            ``class`` uint8 (N,), ``confidence`` uint8 (N,) = round(100 · max probability),
            with ``proba`` also ``proba`` float32 (N, C); with Level-2 also ``level2`` uint8
            (N,) (255 outside Cropland or where a Level-2 feature is missing); with the
            predictor's ``ood`` also ``ood`` uint8 (N,) codes.
        """
        x1 = x if self._idx1 == list(range(x.shape[1])) else x[:, self._idx1]
        cls, pmax, prob, codes = self.run(self.net, x1, lonlat_deg, proba, self.ood)
        res = {"class": cls, "confidence": np.rint(pmax * 100).astype(np.uint8)}
        if prob is not None:
            res["proba"] = prob
        if codes is not None:
            res["ood"] = codes
        if self.net2 is not None:
            l2 = np.full(len(x), NODATA, np.uint8)
            crop = np.flatnonzero(cls == self.crop_id)
            x2 = x[crop][:, self._idx2]
            ok = np.isfinite(x2).all(1)
            if ok.any():
                l2[crop[ok]] = self.run(self.net2, x2[ok], lonlat_deg[crop[ok]])[0]
            res["level2"] = l2
        return res


def _tree_run(
    net: TreeEnsemble, x: np.ndarray, proba: bool, batch_px: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, None]:
    """:meth:`Predictor.run` for a tree model, in sub-batches of ``batch_px`` rows: class id
    uint8 (N,), max probability float32 (N,), probabilities float32 (N, C) with ``proba``.
    """
    n = len(x)
    cls = np.empty(n, np.uint8)
    pmax = np.empty(n, np.float32)
    prob = np.empty((n, net.n_classes), np.float32) if proba else None
    step = max(batch_px, 16_384)  # XGBoost spreads a batch over its threads: larger is cheaper
    for i in range(0, n, step):
        z = net.logits(x[i : i + step])
        e = np.exp(z - z.max(1, keepdims=True))
        tot = e.sum(1)
        cls[i : i + len(z)] = z.argmax(1)
        pmax[i : i + len(z)] = 1.0 / tot
        if prob is not None:
            prob[i : i + len(z)] = e / tot[:, None]
    return cls, pmax, prob, None


Prepared = tuple[Block, np.ndarray]


def _with_lonlat(blocks: Iterator[Block], win: GridWindow, needed: bool = True) -> Iterator[Prepared]:
    """Each block with the lon/lat float32 (h·W, 2) of its pixel centres (EPSG:4326); zeros
    when no model uses coordinates (saves a pyproj transform per pixel).
    """
    for blk in blocks:
        bh = blk.values.shape[1]
        if not needed:
            yield blk, np.zeros((bh * win.width, 2), np.float32)
            continue
        t = win.transform @ Affine.translation(0, blk.row0)
        lon, lat = pixel_centres_lonlat(t, bh, win.width, win.grid.crs)
        yield blk, np.stack([lon.ravel(), lat.ravel()], 1).astype(np.float32)


def _prefetch(blocks: Iterator[Prepared], depth: int = 2) -> Iterator[Prepared]:
    """Run ``blocks`` in a thread, ``depth`` blocks ahead; re-raise its error in the caller."""
    q: queue.Queue[Prepared | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for b in blocks:
                if stop.is_set():
                    return
                q.put(b)
            q.put(None)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(e)

    t = threading.Thread(target=work, name="eulc-tile-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():  # drain so the reader can finish
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


ADAPT_SAMPLE_PX = 100_000
"""Pixels of a tile (a regular sample of the valid ones) that EM prior adaptation reads."""


def _adapt_to_tile(
    pred: Predictor, reader: FeatureReader, win: GridWindow, setting: Adaptation
) -> tuple[Predictor, dict[str, object]]:
    """The predictor with the tile's EM prior bias (itself when the guard fires), and what was
    estimated (for the tags).
    """
    train = pred.bundle.class_prior()
    stride = max(1, -(-win.shape[0] * win.shape[1] // ADAPT_SAMPLE_PX))
    probs: list[np.ndarray] = []
    for blk, lonlat in _with_lonlat(reader.blocks(win), win, pred.uses_coordinates):
        f = blk.values.shape[0]
        x = blk.values.reshape(f, -1).T
        pick = np.flatnonzero(np.isfinite(x[:, pred._idx1]).all(1))
        pick = pick[(pick + blk.row0 * win.shape[1]) % stride == 0]
        if len(pick):
            probs.append(pred.run(pred.net, x[pick][:, pred._idx1], lonlat[pick], proba=True)[2])  # type: ignore[arg-type]
    if not probs:
        return pred, {}
    p = np.concatenate(probs)
    target, info = setting.estimate(p, train)
    names = pred.bundle.legend.names
    tags: dict[str, object] = {
        "method": "Dirichlet-MAP EM class-prior re-estimation (Saerens et al. 2002) with a likelihood-gain guard",
        "setting": setting.label,
        "strength": setting.strength,
        "max_gain": setting.max_gain,
        "chosen_on": (
            "eulc's default, chosen on inner held-out bioregions of the LORO folds' training sides "
            "(docs/results.md, issue #29)"
            if setting == DEFAULT_ADAPTATION
            else "given by the caller"
        ),
        "pixels": int(len(p)),
        "gain": info["gain"],
        "applied": info["applied"],
        "train_prior": {n: round(float(v), 4) for n, v in zip(names, train, strict=True)},
        "tile_prior": {n: round(float(v), 4) for n, v in zip(names, target, strict=True)},
    }
    if not info["applied"]:  # guarded: the tile is mapped with the training priors
        return pred, tags
    return pred.with_prior_bias(prior_bias(target, train)), tags


def class_ids(index: np.ndarray, legend: Legend) -> np.ndarray:
    """Class indices (uint8, the network's output order, :data:`NODATA` kept) as the legend's ids,
    which need not be 0…C−1 (a legend such as 10, 20, 30 maps as written).
    """
    lut = np.full(256, NODATA, np.uint8)
    lut[: len(legend)] = [c.id for c in legend.classes]
    return lut[index]


def _check_overlap(win: GridWindow, file_win: GridWindow, tile_id: str, feature_cog: Path) -> None:
    """Refuse a tile that lies wholly outside the feature file: nothing to map there, and the
    reason is the tile choice, not the observations.

    Raises:
        RasterError: no pixel of ``win`` is inside ``file_win`` (the message gives both extents,
            EPSG:3035 metres, and the file's lon/lat box).
    """
    left, bottom, right, top = win.bounds
    fl, fb, fr, ft = file_win.bounds
    if left < fr and right > fl and bottom < ft and top > fb:
        return
    from rasterio.warp import transform_bounds

    w, s, e, n = transform_bounds(file_win.grid.crs, "EPSG:4326", fl, fb, fr, ft)
    raise RasterError(
        f"tile {tile_id} ({left:.0f}, {bottom:.0f}, {right:.0f}, {top:.0f}) lies outside the file's "
        f"extent ({fl:.0f}, {fb:.0f}, {fr:.0f}, {ft:.0f} in {file_win.grid.crs})",
        f"Choose tiles inside it (its lon/lat box is bbox:{w:.4f},{s:.4f},{e:.4f},{n:.4f}), or give "
        "features that cover these tiles",
        path=feature_cog,
    )


def predict_tile(
    model: ModelBundle | Predictor,
    feature_cog: Path,
    out_dir: Path,
    tile_id: str,
    tile: TileId | None = None,
    probabilities: bool = False,
    compress: str = "DEFLATE",
    prefetch: bool | None = None,
    accept: tuple[str, ...] = (),
    adapt_priors: bool = False,
    adaptation: Adaptation = DEFAULT_ADAPTATION,
) -> TileResult:
    """Predict one tile and write its COGs (each written to a temporary file, then renamed).

    Writes ``<tile_id>_class.tif`` (uint8, nodata 255, legend colormap, mode overviews),
    ``<tile_id>_confidence.tif`` (uint8 0–100, nodata 255), with ``probabilities``
    ``<tile_id>_proba.tif`` (uint8 percent, one band per class), and with a Level-2 bundle
    ``<tile_id>_level2.tif`` (crop classes inside Cropland, else 255), and with a predictor
    made with ``ood`` ``<tile_id>_ood.tif`` (uint8 codes of :data:`model.ood.OOD_CODES`, nodata
    255, colormap). All EPSG:3035 on the 10 m grid, tagged with the model hash, spec hash and tile id.

    Args:
        model: a bundle, or a :class:`Predictor` (reused across tiles).
        feature_cog: the feature COG (or VRT) holding the tile.
        out_dir: output folder.
        tile_id: the output name and the ``tile_id`` tag.
        tile: the grid cell to map (default: the whole file).
        probabilities: also write per-class probabilities.
        compress: ``DEFLATE`` or ``ZSTD``.
        prefetch: read blocks in a thread ahead of the model (default: on CUDA only; on a
            CPU the model already uses every core, and the thread measured 0–20 % slower here).
        accept: contract fields whose difference is tolerated (``cloud_mask``, ``level``).
        adapt_priors: first estimate the tile's class priors by Dirichlet-MAP EM
            (:data:`model.priors.DEFAULT_ADAPTATION`) on a regular sample of its valid pixels
            (at most :data:`ADAPT_SAMPLE_PX`; Saerens et al. 2002) and add
            ``log(π_tile / π_train)`` to the Level-1 logits, unless EM's likelihood gain exceeds
            the setting's guard (tag ``prior_adaptation``: setting, gain, applied, the training
            prior and EM's estimate). The tile is read twice.
        adaptation: the EM strength and guard ``adapt_priors`` uses.

    Raises:
        ContractError: the file's features are not the bundle's (see :meth:`Predictor.check_features`).
        BundleError: ``adapt_priors`` with a bundle that does not record its training priors.
        RasterError: unreadable file, wrong CRS or grid, a missing band, or a tile whose every
            pixel is nodata (the message names the file, the tile and the empty bands).
    """
    pred = model if isinstance(model, Predictor) else Predictor(model, device="cpu")
    legend = pred.bundle.legend
    gdal_threads = torch.get_num_threads()  # GDAL decodes and compresses with the model's threads
    # blocks are read once, row band by row band: a small GDAL cache keeps the RSS down
    with (
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024),
        FeatureReader(feature_cog, pred.features, pred.scales, threads=gdal_threads) as reader,
    ):
        contract = pred.check_features(reader, accept)
        win: GridWindow = tile.window(reader.grid) if tile is not None else reader.window
        _check_overlap(win, reader.window, tile_id, feature_cog)
        h, w = win.shape
        outs = {k: np.full(h * w, NODATA, np.uint8) for k in ("class", "confidence")}
        if pred.level2 is not None:
            outs["level2"] = np.full(h * w, NODATA, np.uint8)
        if pred.ood is not None:
            outs["ood"] = np.full(h * w, OOD_NODATA, np.uint8)
        proba = np.full((len(legend), h * w), NODATA, np.uint8) if probabilities else None
        n_valid_by_feature = np.zeros(len(pred.features), np.int64)
        adapted: dict[str, object] = {}
        if adapt_priors:
            pred, adapted = _adapt_to_tile(pred, reader, win, adaptation)
        blocks = _with_lonlat(reader.blocks(win), win, pred.uses_coordinates)
        if prefetch is None:
            prefetch = pred.device.type == "cuda"
        whole = pred._idx1 == list(range(len(pred.features)))
        for blk, lonlat in _prefetch(blocks) if prefetch else blocks:
            f, bh, _ = blk.values.shape
            flat = blk.values.reshape(f, -1)
            # NaN or ±inf in any model feature makes the band sum non-finite: one pass, no (F, N) mask
            valid = np.isfinite(np.add.reduce(flat if whole else flat[pred._idx1], axis=0))
            sl = slice(blk.row0 * w, (blk.row0 + bh) * w)
            if valid.all():  # the usual block: its pixel rows (flat.T, pixel-major in memory) as they are
                n_valid_by_feature += flat.shape[1]
                pick: slice | np.ndarray = slice(None)
            else:
                n_valid_by_feature += np.isfinite(flat).sum(1)
                if not valid.any():
                    continue
                pick = valid  # gathers the (n, F) valid rows: one copy
            res = pred.predict(flat.T[pick], lonlat[pick], proba=proba is not None)
            for k, arr in outs.items():
                arr[sl][pick] = res[k]
            if proba is not None:
                proba[:, sl][:, pick] = np.rint(res["proba"].T * 100).astype(np.uint8)
        tags_in = reader.tags
    cls = outs["class"]
    counts = np.bincount(cls[cls != NODATA], minlength=len(legend))  # by class index, legend order
    for key, leg in (("class", legend), ("level2", pred.level2.legend if pred.level2 is not None else None)):
        if key in outs and leg is not None:
            outs[key] = class_ids(outs[key], leg)  # the network's class index → the legend's id
    cls = outs["class"]
    n_nodata = int((cls == NODATA).sum())
    if n_nodata == h * w:
        empty = [n for n, c in zip(pred.features, n_valid_by_feature, strict=True) if c == 0]
        raise RasterError(
            f"every pixel of tile {tile_id} is nodata"
            + (f" (no value at all in {empty[:6]}{'...' if len(empty) > 6 else ''})" if empty else ""),
            "Check that the features cover this tile (cloud-free observations, the right year)",
            path=feature_cog,
        )
    common = {
        "model_hash": pred.digest,
        "precision": "bf16" if pred.bf16 else "fp32",
        "spec_hash": tags_in.get("spec_hash", ""),
        "features_digest": pred.bundle.features_digest,
        "contract": contract,
        "spec": tags_in.get("spec", ""),
        "tile_id": tile_id,
        "features_file": Path(feature_cog).name,
        "year": tags_in.get("year", ""),
        **({"prior_adaptation": json.dumps(adapted)} if adapted else {}),
    }
    t, crs = win.transform, win.grid.crs
    cpath = write_cog(
        out_dir / f"{tile_id}_class.tif",
        cls.reshape(h, w),
        t,
        crs,
        NODATA,
        descriptions=[legend.level],
        tags={**common, "legend": legend.to_json()},
        colormap=legend.colormap(),
        resampling="mode",
        compress=compress,
        threads=gdal_threads,
    )
    qpath = write_cog(
        out_dir / f"{tile_id}_confidence.tif",
        outs["confidence"].reshape(h, w),
        t,
        crs,
        NODATA,
        descriptions=["confidence_pct"],
        tags={**common, "units": "percent (max class probability x 100)"},
        resampling="average",
        compress=compress,
        threads=gdal_threads,
    )
    extra: list[Path] = []
    if proba is not None:
        extra.append(
            write_cog(
                out_dir / f"{tile_id}_proba.tif",
                proba.reshape(-1, h, w),
                t,
                crs,
                NODATA,
                descriptions=legend.names,
                tags={**common, "units": "percent"},
                resampling="average",
                compress=compress,
                threads=gdal_threads,
            )
        )
    if pred.level2 is not None:
        l2 = pred.level2.legend
        extra.append(
            write_cog(
                out_dir / f"{tile_id}_level2.tif",
                outs["level2"].reshape(h, w),
                t,
                crs,
                NODATA,
                descriptions=[l2.level],
                tags={**common, "legend": l2.to_json()},
                colormap=l2.colormap(),
                resampling="mode",
                compress=compress,
                threads=gdal_threads,
            )
        )
    ood_counts = None
    if pred.ood is not None:
        ref = pred.ood
        codes = outs["ood"]
        ood_counts = {str(c): int(n) for c, n in enumerate(np.bincount(codes[codes != OOD_NODATA], minlength=4))}
        extra.append(
            write_cog(
                out_dir / f"{tile_id}_ood.tif",
                codes.reshape(h, w),
                t,
                crs,
                OOD_NODATA,
                descriptions=["ood_code"],
                tags={
                    **common,
                    "ood_hash": pred.ood_digest,
                    "codes": json.dumps(OOD_CODES),
                    "landscape_threshold": f"{ref.landscape_threshold:.6g}",
                    "distance_threshold": f"{ref.distance_threshold:.6g}",
                    "k": str(ref.k),
                    "quantile": str(ref.info.get("quantile", "")),
                    "rare_share": str(ref.rare_share),
                },
                colormap=dict(OOD_COLORS),
                resampling="mode",
                compress=compress,
                threads=gdal_threads,
            )
        )
    return TileResult(
        cpath,
        qpath,
        h * w,
        n_nodata,
        {n: int(counts[i]) for i, n in enumerate(legend.names)},
        extra,
        common,
        ood_counts,
    )
