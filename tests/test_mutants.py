"""The seven named mutants of issue #26, each killed by a test that compares with an independent
oracle (they survived the tests that only checked that something happened). `scripts/mutants.py`
applies each mutation to a copy of the checkout and runs the test named here: every one fails.

1. GEE orbit filter ``eq`` → ``neq``;
2. the EM prior taken from the test labels;
3. the OOD distance fitted on the largest-variance directions;
4. in-place writes (the guarded writer yielding ``dest`` itself);
5. a map manifest that stops checking the outputs' SHA-256;
6. an unknown ``precision`` becoming ``auto``;
7. a Level-2 bundle's features left unchecked against the feature file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import EulcError

from .conftest import NDVI_FEATURES
from .test_gee import _find, _region, _value, gee  # noqa: F401 - the offline ee fixture

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "models" / "elc10-ndvi-l1"


def test_mutant_1_the_orbit_filter_keeps_the_pass_it_names(gee) -> None:  # noqa: F811
    """The Sentinel-1 filter of an ``asc_`` feature is ``orbitProperties_pass == ASCENDING``, not
    negated: read from the graph's own invocations, not from a string being present."""
    from gee_scripts.images import feature_image
    from pipeline.core.spec import load_spec

    img = feature_image(load_spec("elc10").subset(["asc_vv_median"]), 2018, _region())
    eqs = [
        (_value(f.args["leftField"]), _value(f.args["rightValue"]))
        for f in _find(img, "Filter.equals")
        if _value(f.args.get("leftField")) == "orbitProperties_pass"
    ]
    assert eqs == [("orbitProperties_pass", "ASCENDING")]
    negated = [
        f
        for f in _find(img, "Filter.not")
        if _find(f, "Filter.equals")
        and any(_value(e.args.get("leftField")) == "orbitProperties_pass" for e in _find(f, "Filter.equals"))
    ]
    assert negated == [] and _find(img, "Filter.neq") == [] and _find(img, "Filter.notEquals") == []


def test_mutant_2_the_em_prior_comes_from_the_training_labels(
    full_table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``+em`` run equals the chosen EM adaptation (Saerens et al. 2002) of the same model's
    test probabilities from the *training* labels' class shares, recomputed here. The choice on
    inner regions is pinned to an unguarded setting, so the adaptation always applies."""
    import pandas as pd

    import model.evaluate as ev
    from model.baselines import fit_predict_proba_baseline
    from model.calibration import expected_calibration_error
    from model.evaluate import run_scenario, scenario_splits, seed_rows
    from model.priors import Adaptation
    from model.train import training_arrays
    from pipeline.table import read_feature_table

    setting = Adaptation(1.0)
    monkeypatch.setattr(ev, "choose_adaptation", lambda looks, prior: (setting, {setting.label: 0.0}))
    run_scenario(
        full_table, NDVI_FEATURES, "extrap", tmp_path, models=("rf",), seeds=(0,), adapt_priors=True, max_rows=3000
    )
    runs = pd.read_csv(tmp_path / "extrap_runs.csv")
    table, _ = read_feature_table(full_table)
    d_all = training_arrays(table, NDVI_FEATURES)
    d = d_all.take(seed_rows(len(d_all.y), 3000, 0))
    split = scenario_splits("extrap", d, 0)[0]
    _, prob = fit_predict_proba_baseline("rf", d.x[split.train], d.y[split.train], d.x[split.test], 0, 7)
    assert prob is not None
    prior = np.bincount(d.y[split.train], minlength=7) / len(split.train)
    adapted = setting.apply(prob, prior)
    acc = float((adapted.argmax(1) == d.y[split.test]).mean())
    ece = expected_calibration_error(adapted, d.y[split.test])
    row = runs[(runs["model"] == "rf+em") & (runs["split"] == split.name)].iloc[0]
    assert row["accuracy"] == pytest.approx(acc, abs=1e-12) and row["chosen"] == setting.label
    assert row["ece"] == pytest.approx(ece, abs=1e-12)
    # what the mutant does: the stratified split makes the test shares nearly the training ones,
    # so the argmax rarely changes; the ECE, a continuous function of the posteriors, does
    cheat = np.bincount(d.y[split.test], minlength=7) / len(split.test)
    assert not np.allclose(cheat, prior, rtol=0, atol=1e-9)
    assert expected_calibration_error(setting.apply(prob, cheat), d.y[split.test]) != pytest.approx(ece, abs=1e-9)


def test_mutant_3_the_ood_distance_uses_the_smallest_variance_directions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whitener spans the ``rank`` eigenvectors of the tied covariance with the *smallest*
    eigenvalues (Kamoi & Kobayashi 2020), checked with numpy's own eigendecomposition."""
    import torch

    from model.ood import fit_ood
    from pipeline.core.spec import load_spec

    class Net(torch.nn.Module):  # a fixed embedding: h = x @ A (the network is not under test)
        def __init__(self, a: np.ndarray) -> None:
            super().__init__()
            self.a = torch.from_numpy(a)

        def forward(self, x: torch.Tensor, lonlat: torch.Tensor) -> torch.Tensor:
            return x @ self.a

    rng = np.random.default_rng(3)
    names = NDVI_FEATURES
    spec = load_spec("elc10").subset(names)
    n, f, hidden, rank = 600, len(names), 8, 3  # hidden < f: no null space in the covariance
    a = rng.normal(size=(f, hidden)).astype(np.float32) * np.linspace(0.1, 3, hidden, dtype=np.float32)
    x = rng.normal(size=(n, f)).astype(np.float32)
    y = rng.integers(0, 3, n)

    from model import ood as ood_mod

    emb = x @ a
    monkeypatch.setattr(ood_mod, "embeddings", lambda net, xx, ll: (xx @ a).astype(np.float32))
    ref = fit_ood(
        Net(a),
        names,
        spec,
        x,
        np.zeros((n, 2), np.float32),
        y,
        np.zeros(n, np.int64),
        ["A"],  # type: ignore[arg-type]
        k=2,
        seed=0,
        rank=rank,
    )
    means = np.stack([emb[y == c].mean(0) for c in range(3)])
    centred = emb - means[y]
    cov = centred.T @ centred / n
    evals, evecs = np.linalg.eigh(cov)
    small = evecs[:, :rank]
    w = ref.whitener.astype(np.float64)
    proj = w @ np.linalg.pinv(w)  # projector onto span(W)
    assert np.allclose(proj @ small, small, atol=1e-3)  # the smallest directions lie in span(W)
    assert not np.allclose(proj @ evecs[:, -1:], evecs[:, -1:], atol=1e-2)  # the largest does not


def test_mutant_4_the_writer_never_touches_dest_before_the_rename(tmp_path: Path) -> None:
    from pipeline.core.atomic import atomic_path

    dest = tmp_path / "x.txt"
    with atomic_path(dest) as tmp:
        tmp.write_text("first")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        assert tmp != dest and tmp.parent == dest.parent
        tmp.write_text("half of the second")
        assert dest.read_text() == "first"  # unchanged while the body writes
        raise RuntimeError("killed")
    assert dest.read_text() == "first"


def test_mutant_5_a_changed_output_is_not_current(tmp_path: Path, slovenia_features: Path) -> None:
    """A map output with one byte changed (same size, same mtime) makes its tile not current: the
    rerun redoes it and restores the bytes (the manifest keeps each output's SHA-256)."""
    import os

    from tiles.mapping.runner import run_map

    out = tmp_path / "m"
    assert run_map(None, BUNDLE, out, features_files=[slovenia_features], scheduler="sync").ok
    cls = next(out.glob("*_class.tif"))
    good = cls.read_bytes()
    st = cls.stat()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    cls.write_bytes(bytes(bad))
    os.utime(cls, ns=(st.st_atime_ns, st.st_mtime_ns))
    s = run_map(None, BUNDLE, out, features_files=[slovenia_features], scheduler="sync")
    assert s.ok and s.done == 1 and cls.read_bytes() == good


def test_mutant_6_an_unknown_precision_is_refused_everywhere(tmp_path: Path, slovenia_features: Path) -> None:
    import torch

    from model.infer import resolve_precision
    from pipeline.stages.mapping import MapRequest
    from tiles.mapping.runner import run_map

    for bad in ("half", "AUTO", "", "fp16"):
        with pytest.raises(EulcError, match="precision"):
            resolve_precision(bad, torch.device("cpu"))
        with pytest.raises(EulcError, match="precision"):
            MapRequest(out=tmp_path / "m", feature_files=(slovenia_features,), bundle=str(BUNDLE), precision=bad)
        with pytest.raises(EulcError, match="precision"):
            run_map(None, BUNDLE, tmp_path / "m", features_files=[slovenia_features], scheduler="sync", precision=bad)
    assert not list((tmp_path / "m").glob("*.tif")) if (tmp_path / "m").exists() else True


def test_mutant_7_a_level2_bundles_features_are_checked(tmp_path: Path, slovenia_features: Path) -> None:
    """The Level-2 bundle's own feature contract is compared with the feature file: a Level-2
    bundle whose embedded spec says ``ndvi_p50`` is stored at another scale is refused, naming it."""
    from model.bundle import load_bundle
    from pipeline.core.contract import features_digest
    from pipeline.core.errors import ContractError
    from pipeline.core.reader import FeatureReader
    from tiles.mapping.predict import Predictor

    l2 = tmp_path / "l2"
    shutil.copytree(BUNDLE, l2)
    meta = json.loads((l2 / "bundle.json").read_text())
    spec = meta["spec"]["feature_spec"]
    for f in spec["features"]:
        if f["name"] == "ndvi_p50":
            f["scale"] = float(f.get("scale", 1.0)) * 10
    from pipeline.core.contract import embedded_spec

    meta["spec"]["features_digest"] = features_digest(embedded_spec(spec, "test"), meta["features"])
    (l2 / "bundle.json").write_text(json.dumps(meta))
    (l2 / "ood.json").unlink()
    (l2 / "ood.safetensors").unlink()
    pred = Predictor(load_bundle(BUNDLE), level2=load_bundle(l2), device="cpu")
    with FeatureReader(slovenia_features, pred.features) as r, pytest.raises(ContractError, match="ndvi_p50"):
        pred.check_features(r)
