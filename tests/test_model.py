import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from model.bridge import BridgeConfig, BridgeLC
from model.bundle import load_bundle
from model.encoding import sinusoidal_encoding
from model.losses import supcon_loss
from model.train import training_arrays
from pipeline.core.errors import BundleError
from pipeline.table import read_feature_table

from .conftest import NDVI_FEATURES


def test_positional_encoding_follows_equations_1_2() -> None:
    lonlat = torch.tensor([[14.558, 45.87], [-9.37, 38.74]])
    pe = sinusoidal_encoding(lonlat, 128)
    assert pe.shape == (2, 128)
    d = 64
    for n, (lon, lat) in enumerate(lonlat.tolist()):
        for i in range(d // 2):
            w = 10000 ** (-2 * i / d)
            assert math.isclose(pe[n, 2 * i].item(), math.sin(lon * w), abs_tol=1e-5)
            assert math.isclose(pe[n, 2 * i + 1].item(), math.cos(lon * w), abs_tol=1e-5)
            assert math.isclose(pe[n, d + 2 * i].item(), math.sin(lat * w), abs_tol=1e-5)


def _supcon_reference(z: np.ndarray, y: np.ndarray, tau: float) -> float:
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    losses = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        pos = [p for p in others if y[p] == y[i]]
        if not pos:
            continue
        denom = sum(math.exp(z[i] @ z[a] / tau) for a in others)
        losses.append(-np.mean([math.log(math.exp(z[i] @ z[p] / tau) / denom) for p in pos]))
    return float(np.mean(losses))


def test_supcon_matches_khosla_definition() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(12, 5)).astype(np.float32)
    y = np.array([0, 0, 1, 1, 1, 2, 3, 3, 7, 8, 8, 9])
    got = supcon_loss(torch.from_numpy(z), torch.from_numpy(y), 0.5).item()
    assert math.isclose(got, _supcon_reference(z, y, 0.5), rel_tol=1e-4)


def test_supcon_prefers_separated_clusters() -> None:
    y = torch.tensor([0] * 8 + [1] * 8)
    sep = torch.cat([torch.tensor([[1.0, 0.0]]).repeat(8, 1), torch.tensor([[0.0, 1.0]]).repeat(8, 1)])
    mixed = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    assert supcon_loss(sep, y) < supcon_loss(mixed, y)


def test_network_shapes_and_invariant_inference() -> None:
    net = BridgeLC(BridgeConfig(n_features=10, n_classes=7)).eval()
    x, ll = torch.rand(5, 10), torch.tensor([[14.5, 45.9]]).repeat(5, 1)
    c, r, zi, zs = net(x, ll)
    assert c.shape == (5, 7) and r.shape == (5, 8) and zi.shape == zs.shape == (5, 256)
    assert torch.allclose(net.predict_logits(x, ll), c)


def test_training_beats_majority_class_on_real_data(small_bundle: Path, sample_table: Path) -> None:
    """Judged on the bundle's own predictions of the real rows, not on what training reports about
    itself (a training run that saved untrained weights would report anything)."""
    from model.bundle import load_bundle
    from model.infer import predict_proba

    meta = json.loads((small_bundle / "bundle.json").read_text())
    table, _ = read_feature_table(sample_table)
    data = training_arrays(table, NDVI_FEATURES)
    majority = np.bincount(data.y).max() / len(data.y)
    b = load_bundle(small_bundle)
    acc = float((predict_proba(b.model, b.normalizer.transform(data.x), data.lonlat).argmax(1) == data.y).mean())
    assert acc > majority + 0.1
    assert meta["metrics"]["val_accuracy"] > majority  # and the reported figure agrees in kind
    assert meta["features"] == NDVI_FEATURES
    assert meta["encoding"]["order"] == ["lon", "lat"]


def test_bundle_round_trip_without_pickle(small_bundle: Path, sample_table: Path) -> None:
    import os

    names = sorted(p.name for p in small_bundle.iterdir() if p.name != ".eulc-written")
    assert names == ["bundle.json", "item.json", "ood.json", "ood.safetensors", "weights.safetensors"]
    umask = os.umask(0)
    os.umask(umask)
    for p in small_bundle.iterdir():  # every file honours the umask (safetensors alone writes 0600)
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p.name
    b = load_bundle(small_bundle)
    table, _ = read_feature_table(sample_table)
    data = training_arrays(table, b.features)
    from model.infer import predict_proba
    from tiles.mapping.predict import Predictor

    ok = np.isfinite(data.x).all(1)
    x, ll = data.x[ok], data.lonlat[ok].astype(np.float32)
    p1 = predict_proba(b.model, b.normalizer.transform(x), ll)
    b2 = load_bundle(small_bundle)
    res = Predictor(b2, device="cpu").predict(x, ll, proba=True)  # fused: normaliser + BN folded into Linear
    assert np.allclose(p1, res["proba"], atol=1e-5)
    assert (res["class"] == p1.argmax(1)).all()
    assert np.allclose(p1.sum(1), 1, atol=1e-5)
    amp = Predictor(b2, device="cpu", bf16=True).predict(x, ll)  # the CUDA path's bf16 autocast
    assert (amp["class"] == res["class"]).mean() > 0.97


def test_tampered_bundle_is_rejected(small_bundle: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "b"
    shutil.copytree(small_bundle, bad)
    w = bad / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-10])
    with pytest.raises(BundleError, match="SHA-256"):
        load_bundle(bad)
    (bad / "weights.safetensors").unlink()
    with pytest.raises(BundleError, match="weights.safetensors is missing"):
        load_bundle(bad)


def test_ema_averages_weights_from_the_halfway_epoch() -> None:
    from model.train import _update_ema

    net = BridgeLC(BridgeConfig(n_features=3, n_classes=2))
    ema = _update_ema(None, net, 0.95)
    w0 = ema["class_head.weight"].clone()
    with torch.no_grad():
        net.class_head.weight.add_(1.0)
    ema = _update_ema(ema, net, 0.95)
    assert torch.allclose(ema["class_head.weight"], w0 + 0.05)
    assert "invariant.1.running_mean" not in ema  # BN statistics follow the live model


@pytest.mark.parametrize("location, encoding", [("learnt", "paper"), ("fixed", "multiscale"), ("none", "paper")])
def test_fused_network_equals_the_trained_one(location: str, encoding: str, elc10_frame) -> None:
    """BatchNorm, min–max normaliser and temperature folded into Linear: same logits."""
    from model.fused import FusedClassifier
    from model.normalize import fit_normalizer

    torch.manual_seed(0)
    cols = list(elc10_frame.columns)
    feats = cols[cols.index("R1_median") : cols.index("desc_vv_stDev") + 1]  # the 35 real features
    rows = elc10_frame[feats + ["lon", "lat"]].dropna().iloc[:2000]
    x = rows[feats].to_numpy(np.float32)
    lonlat = rows[["lon", "lat"]].to_numpy(np.float32)
    net = BridgeLC(
        BridgeConfig(
            n_features=x.shape[1],
            n_classes=7,
            location=location,  # type: ignore[arg-type]
            encoding=encoding,
            temperature=1.7,
        )
    )  # type: ignore[arg-type]
    for m in net.modules():  # non-trivial running statistics, as after training
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    norm = fit_normalizer(x, "minmax")
    net.eval()
    with torch.inference_mode():
        ref = net.predict_logits(torch.from_numpy(norm.transform(x)), torch.from_numpy(lonlat))
        got = FusedClassifier(net, norm)(torch.from_numpy(x), torch.from_numpy(lonlat))
    assert torch.allclose(ref, got, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in FusedClassifier(net, norm).modules())
