"""Issue #29 part 4: the piecewise-linear encoding and the TabM-mini ensemble, judged against the
authors' package (rtdl_num_embeddings), the trained network's own forward pass, and the real rows."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.bridge import BridgeConfig, BridgeLC
from model.fused import FusedClassifier
from model.normalize import fit_normalizer
from model.ple import ple_encode, ple_tables, quantile_bins
from pipeline.core.errors import BundleError, EulcError

from .conftest import NDVI_FEATURES


def _real(elc10_frame, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    cols = list(elc10_frame.columns)
    feats = cols[cols.index("R1_median") : cols.index("desc_vv_stDev") + 1]  # the 35 real features
    rows = elc10_frame[feats + ["lon", "lat"]].dropna().iloc[:n]
    return rows[feats].to_numpy(np.float32), rows[["lon", "lat"]].to_numpy(np.float32)


def test_ple_encoding_equals_the_authors_package(elc10_frame) -> None:
    """Our slot tables and clamps against rtdl_num_embeddings' own encoder, on real features
    and a discrete one (fewer bins: padding in the middle), inside and far outside the training range."""
    from rtdl_num_embeddings import PiecewiseLinearEncoding

    x, _ = _real(elc10_frame)
    x = np.c_[x, (x[:, 0] > np.median(x[:, 0])).astype(np.float32) * 2.0]  # a two-valued feature
    xn = fit_normalizer(x[:2000], "robust").transform(x)
    edges = quantile_bins(xn[:2000], 12)
    assert len(edges[-1]) == 3 and max(len(e) for e in edges) == 13  # one bin split in two; most full
    w, b = ple_tables(edges, 12)
    probe = np.r_[xn, xn[:200] * 4.0 - 3.0]  # far outside: the open first and last slots extrapolate
    got = ple_encode(torch.from_numpy(probe), torch.from_numpy(w), torch.from_numpy(b)).numpy()
    enc = PiecewiseLinearEncoding([torch.from_numpy(e).float() for e in edges])
    want = enc(torch.from_numpy(probe)).numpy()
    mask = enc.impl.mask.numpy().reshape(-1) if enc.impl.mask is not None else slice(None)
    assert got.shape == (len(probe), x.shape[1] * 12)
    np.testing.assert_allclose(got[:, mask], want, atol=2e-5)
    assert (got[:, ~mask] == 0).all() if enc.impl.mask is not None else True
    assert got.min() < -1 and got.max() > 2  # the extrapolating slots were reached


@pytest.mark.parametrize(
    "ensemble, ple_bins, location, scaling",
    [(4, 8, "learnt", "robust"), (4, 0, "none", "minmax"), (1, 16, "fixed", "robust"), (2, 6, "none", "robust")],
)
def test_fused_network_equals_the_trained_one_with_tabm_and_ple(
    ensemble: int, ple_bins: int, location: str, scaling: str, elc10_frame
) -> None:
    """Normaliser folded into the slot tables, adapters into stacked first layers, members
    averaged before the shared head: the logits and the OOD embedding of the trained network."""
    x, lonlat = _real(elc10_frame)
    norm = fit_normalizer(x[:2000], scaling)  # type: ignore[arg-type]
    xn = norm.transform(x)
    torch.manual_seed(0)
    cfg = BridgeConfig(
        n_features=x.shape[1],
        n_classes=7,
        location=location,  # type: ignore[arg-type]
        region_branch=False,
        hidden=64,
        ple_bins=ple_bins,
        ensemble=ensemble,
        temperature=1.4,
    )
    net = BridgeLC(cfg)
    if ple_bins:
        net.set_ple_bins(quantile_bins(xn[:2000], ple_bins))
    for m in net.modules():  # as after training: non-trivial statistics, encoding columns non-zero
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
        if isinstance(m, torch.nn.Linear):
            m.weight.data.normal_(0, 0.2)
    net.eval()
    xt, lt = torch.from_numpy(x), torch.from_numpy(lonlat)
    with torch.inference_mode():
        ref = net.predict_logits(torch.from_numpy(xn), lt)
        members = net.class_head(net.invariant(net._input(torch.from_numpy(xn), lt))).reshape(len(x), ensemble, 7)
        fused = FusedClassifier(net, norm)
        got = fused(xt, lt)
        emb = fused.embed(xt, lt, out=torch.empty(len(x), 64))
    assert torch.allclose(ref, got, atol=1e-4, rtol=1e-4)
    assert torch.allclose(members.mean(1) / 1.4, got, atol=1e-4, rtol=1e-4)  # the mean of the members' logits
    if ensemble > 1:
        assert float((members[:, 0] - members[:, 1]).abs().mean()) > 0.05  # members differ
    assert torch.allclose(fused.head(emb), got, atol=1e-5)


def test_encoding_bins_come_from_the_training_rows_only(sample_table: Path) -> None:
    """The quantiles are the training rows' (hold-out and untouched rows excluded), stored in the
    weights, and the encoding really enters the trained network (its columns left zero-init)."""
    from rtdl_num_embeddings import compute_bins

    from model.train import TrainConfig, train_bridge, training_arrays
    from pipeline.table import read_feature_table

    table, _ = read_feature_table(sample_table)
    data = training_arrays(table, NDVI_FEATURES)
    cfg = TrainConfig(
        epochs=6,
        lr=1e-3,
        batch_size=64,
        region_branch=False,
        location="none",
        ensemble=3,
        hidden=32,
        ple_bins=10,
        scaling="robust",
        val_fraction=0.2,
        val_split="blocked",
        test_fraction=0.2,
    )
    res = train_bridge(data, 7, cfg)
    assert len(res.train_rows) < 0.8 * len(data.y)
    xn = res.normalizer.transform(data.x[res.train_rows])
    edges = compute_bins(torch.from_numpy(xn), n_bins=10)
    want_w, want_b = ple_tables(
        [np.r_[e[0], (e[0] + e[1]) / 2, e[1]] if len(e) == 2 else e.double().numpy() for e in edges], 10
    )
    assert res.model.ple_weight is not None and res.model.ple_bias is not None
    np.testing.assert_allclose(res.model.ple_weight.numpy(), want_w, rtol=1e-5)
    np.testing.assert_allclose(res.model.ple_bias.numpy(), want_b, rtol=1e-5, atol=1e-5)
    first = res.model.invariant[0].weight.detach()
    f = len(NDVI_FEATURES)
    assert float(first[:, f:].abs().mean()) > 1e-3  # the encoding's columns learnt something
    assert res.model.adapter is not None and res.model.adapter.shape == (3, f * 11)


def test_tabm_ple_bundle_round_trip_on_real_rows(sample_table: Path, tmp_path: Path) -> None:
    """A bundle with the encoding and an ensemble: saved, loaded and mapped through the fused
    runner, it predicts as the loaded network does and better than the majority class."""
    from model.api import train_from_table
    from model.bundle import load_bundle
    from model.infer import predict_proba
    from model.train import TrainConfig, training_arrays
    from pipeline.core.selection import FeatureSelection
    from pipeline.core.spec import load_spec
    from pipeline.table import read_feature_table
    from tiles.mapping.predict import Predictor

    sel = FeatureSelection.of(load_spec("elc10"), NDVI_FEATURES, "names")
    cfg = TrainConfig(
        epochs=20, lr=1e-3, batch_size=64, region_branch=False, ensemble=4, hidden=64, ple_bins=8, scaling="robust"
    )
    train_from_table(sample_table, tmp_path / "m", sel, cfg, landscapes=4)
    meta = json.loads((tmp_path / "m" / "bundle.json").read_text())
    assert meta["architecture"]["ensemble"] == 4 and meta["architecture"]["ple_bins"] == 8
    b = load_bundle(tmp_path / "m")
    assert b.model.ple_weight is not None and float(b.model.ple_weight[:, 0].abs().min()) > 0  # edges saved
    table, _ = read_feature_table(sample_table)
    data = training_arrays(table, b.features)
    ok = np.isfinite(data.x).all(1)
    x, ll = data.x[ok], data.lonlat[ok].astype(np.float32)
    p = predict_proba(b.model, b.normalizer.transform(x), ll)
    res = Predictor(b, device="cpu", ood=True).predict(x, ll, proba=True)
    np.testing.assert_allclose(res["proba"], p, atol=1e-5)
    majority = np.bincount(data.y[ok]).max() / ok.sum()
    assert float((p.argmax(1) == data.y[ok]).mean()) > majority + 0.1


def test_ensemble_with_the_region_branch_is_refused(small_bundle: Path, tmp_path: Path) -> None:
    from model.presets import preset_config
    from model.train import TrainConfig

    with pytest.raises(ValueError, match="region branch"):
        TrainConfig(ensemble=4)  # the faithful default keeps the region branch
    with pytest.raises(EulcError, match="region branch"):
        preset_config("eulc-tabm", region_branch=True)
    import shutil

    from model.bundle import load_bundle

    bad = tmp_path / "b"
    shutil.copytree(small_bundle, bad)
    meta = json.loads((bad / "bundle.json").read_text())
    meta["architecture"]["ensemble"] = 4
    (bad / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="ensemble > 1 with the region branch"):
        load_bundle(bad)
