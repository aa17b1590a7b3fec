"""XGBoost bundles (issue #29 part 8): trained on the real LUCAS sample, stored in XGBoost's own
JSON format, mapped on the real Slovenia features through the same runner and COGs as the
network, evaluated through the same stage. Each figure is compared with XGBoost itself (a model
fitted here with XGBoost's scikit-learn API, or the stored file read by XGBoost directly), not
with eulc's own code path.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from sklearn.metrics import f1_score

from model.api import train_trees_from_table
from model.bundle import META, load_bundle
from model.presets import preset_config
from model.train import TrainConfig, split_rows, training_arrays
from model.trees import TREES
from pipeline.app.cli import main
from pipeline.core.errors import BundleError
from pipeline.core.legend import level1_legend
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import load_spec
from pipeline.table import read_feature_table
from tiles.mapping.predict import NODATA, predict_tile

from .conftest import NDVI_FEATURES

PAPER = dict(n_estimators=300, max_depth=6, learning_rate=0.3)  # the paper's XGBoost (FEATURES.md §5)


@pytest.fixture(scope="module")
def tree_bundle(sample_table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An XGBoost bundle of the 10 NDVI features on the real 1,640-row sample, with the split
    settings of eulc's default preset (blocked hold-out, calibration, 10 % untouched cells)."""
    sel = FeatureSelection.of(load_spec("elc10"), NDVI_FEATURES, "names")
    out = tmp_path_factory.mktemp("trees") / "xgb"
    cfg = preset_config("eulc", seed=0, test_fraction=0.1)
    train_trees_from_table(sample_table, out, sel, cfg, "paper")
    return out


def _softmax_t(p: np.ndarray, t: float) -> np.ndarray:
    z = np.log(np.maximum(p, 1e-12)) / t
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _oracle(x_train: np.ndarray, y_train: np.ndarray):
    from xgboost import XGBClassifier

    m = XGBClassifier(tree_method="hist", random_state=0, n_jobs=-1, **PAPER)
    classes = np.unique(y_train)
    m.fit(x_train, np.searchsorted(classes, y_train))
    return m, classes


def test_a_tree_bundle_is_xgboost_calibrated_on_the_hold_out(tree_bundle: Path, sample_table: Path) -> None:
    """The stored model is XGBoost fitted on the training rows of the network's splits: its
    probabilities equal XGBoost's own (fitted here on the same rows) after the stored
    temperature; that temperature minimises the hold-out NLL; the reported untouched-cell
    weighted F1 is scikit-learn's on those predictions; the untouched cells are the very ones the
    default network with the same seed leaves out. Mutations caught: classes mapped off by one,
    the temperature multiplied instead of divided, the test rows scored before calibration, the
    hold-out used to fit."""
    b = load_bundle(tree_bundle)
    assert b.kind == "xgboost" and b.normalizer is None and b.meta["model"] == "xgboost"
    table, _ = read_feature_table(sample_table)
    data = training_arrays(table, b.features, "level1")
    cfg = TrainConfig(**b.meta["train_config"])
    tr, va, te = split_rows(data, cfg)
    net_tr, net_va, net_te = split_rows(data, preset_config("eulc", seed=0, test_fraction=0.1))
    for a, c in ((tr, net_tr), (va, net_va), (te, net_te)):
        np.testing.assert_array_equal(a, c)
    assert len(te) > 50 and len(va) > 50
    m, classes = _oracle(data.x[tr], data.y[tr])
    t = b.meta["architecture"]["temperature"]
    assert t == b.meta["metrics"]["temperature"] and t != 1.0
    for rows in (va, te):
        p = np.zeros((len(rows), 7))
        p[:, classes] = m.predict_proba(data.x[rows])
        np.testing.assert_allclose(b.predict_proba(data.x[rows], data.lonlat[rows]), _softmax_t(p, t), atol=2e-5)
    pv = np.zeros((len(va), 7))
    pv[:, classes] = m.predict_proba(data.x[va])

    def nll(temp: float) -> float:
        return float(-np.log(_softmax_t(pv, temp)[np.arange(len(va)), data.y[va]]).mean())

    assert nll(t) <= min(nll(t * 1.05), nll(t / 1.05))
    pt = np.zeros((len(te), 7))
    pt[:, classes] = m.predict_proba(data.x[te])
    want = f1_score(data.y[te], pt.argmax(1), average="weighted")
    assert b.meta["metrics"]["test_weighted_f1"] == pytest.approx(want, abs=1e-9)
    cal = _softmax_t(pt, t)  # ECE of the shipped (calibrated) model, 15 equal-width bins (Guo et al. 2017)
    conf, hit = cal.max(1), cal.argmax(1) == data.y[te]
    edges = np.linspace(0, 1, 16)
    ece = sum(
        m.mean() * abs(hit[m].mean() - conf[m].mean())
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
        if (m := (conf > lo) & (conf <= hi)).any()
    )
    assert b.meta["metrics"]["test_ece"] == pytest.approx(ece, abs=1e-6)
    assert b.meta["metrics"]["n_test"] == len(te) and b.meta["metrics"]["n_train"] == len(tr)
    prior = np.bincount(data.y[tr], minlength=7) / len(tr)
    np.testing.assert_allclose(b.class_prior(), prior)


def test_a_tree_map_equals_xgboost_on_the_feature_file(
    tree_bundle: Path, slovenia_features: Path, tmp_path: Path
) -> None:
    """The class and confidence COGs of a tree bundle on the real Slovenia features: each pixel's
    class is XGBoost's argmax (the stored file read by XGBoost itself, bands in the bundle's
    order), as the legend's id, nodata wherever a feature is missing; the confidence is 100 × the
    calibrated maximum probability; the tags carry the tree bundle's digest."""
    from xgboost import Booster

    b = load_bundle(tree_bundle)
    res = predict_tile(b, slovenia_features, tmp_path, "slo")
    with rasterio.open(slovenia_features) as f:
        names = list(f.descriptions)
        x = f.read()[[names.index(n) for n in b.features]].reshape(len(b.features), -1).T
    with rasterio.open(res.class_path) as c, rasterio.open(res.confidence_path) as q:
        cls, conf, tags = c.read(1).ravel(), q.read(1).ravel(), c.tags()
    ok = np.isfinite(x).all(1)
    assert (~ok).sum() > 0 and ok.sum() > 5_000
    np.testing.assert_array_equal(cls == NODATA, ~ok)
    p = Booster(model_file=str(tree_bundle / TREES)).inplace_predict(np.ascontiguousarray(x[ok]))
    full = np.zeros((int(ok.sum()), 7))
    full[:, b.meta["architecture"]["classes"]] = p
    ids = np.array([c.id for c in level1_legend().classes])
    np.testing.assert_array_equal(cls[ok], ids[full.argmax(1)])
    calibrated = _softmax_t(full, b.meta["architecture"]["temperature"]).max(1)
    assert np.abs(conf[ok].astype(int) - np.rint(100 * calibrated)).max() <= 1
    assert (conf[ok] == np.rint(100 * calibrated)).mean() > 0.999
    assert tags["model_hash"] == b.digest and tags["features_digest"] == b.features_digest
    assert len(np.unique(cls[ok])) >= 2


def test_tree_prior_adaptation_adds_the_log_prior_ratio(
    tree_bundle: Path, slovenia_features: Path, tmp_path: Path
) -> None:
    """--adapt-priors with a tree bundle: the tag records the estimate, and the adapted map is
    the argmax of the calibrated log-probabilities plus log(π_tile / π_train) (Saerens et al.
    2002), computed here from XGBoost's own probabilities and the tagged priors (rounded to 4
    decimals there: near-ties may differ). Mutations caught: the bias's sign, a bias left out."""
    from xgboost import Booster

    from model.priors import Adaptation

    b = load_bundle(tree_bundle)
    res = predict_tile(b, slovenia_features, tmp_path, "slo", adapt_priors=True, adaptation=Adaptation(3.0))
    with rasterio.open(slovenia_features) as f:
        names = list(f.descriptions)
        x = f.read()[[names.index(n) for n in b.features]].reshape(len(b.features), -1).T
    with rasterio.open(res.class_path) as c:
        cls, tag = c.read(1).ravel(), json.loads(c.tags()["prior_adaptation"])
    assert tag["applied"] and tag["setting"] == "map-em s=3"
    legend = level1_legend()
    train = np.array([tag["train_prior"][n] for n in legend.names])
    tile = np.array([tag["tile_prior"][n] for n in legend.names])
    assert np.abs(tile - train).sum() > 0.05
    ok = np.isfinite(x).all(1)
    full = np.zeros((int(ok.sum()), 7))
    full[:, b.meta["architecture"]["classes"]] = Booster(model_file=str(tree_bundle / TREES)).inplace_predict(
        np.ascontiguousarray(x[ok])
    )
    z = np.log(np.maximum(full, 1e-12)) / b.meta["architecture"]["temperature"]
    seen = train > 0
    z[:, seen] += np.log(np.maximum(tile[seen], 1e-12) / train[seen])
    ids = np.array([c.id for c in legend.classes])
    adapted = ids[z.argmax(1)]
    plain = ids[full.argmax(1)]
    assert (cls[ok] != plain).mean() > 0.001  # the adaptation moved pixels ...
    assert (cls[ok] == adapted).mean() > 0.999  # ... the way the prior ratio says


def _cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["eulc", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, " ".join((out.out + out.err).split())


def test_train_map_evaluate_through_the_cli(
    sample_table: Path,
    slovenia_features: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The seam: `eulc train --model xgboost` writes the bundle `eulc map` reads (the same class
    COG layout) and `eulc evaluate --bundle` scores (its untouched cells' weighted F1 equals the
    bundle's record); a rerun is up to date; `--ood` and `eulc ood` are refused in one line."""
    monkeypatch.chdir(tmp_path)
    code, said = _cli(
        ["train", str(sample_table), "--out", "xgb", "--features", ",".join(NDVI_FEATURES), "--model", "xgboost"],
        monkeypatch,
        capsys,
    )
    assert code == 0 and "XGBoost setting paper" in said, said
    assert sorted(p.name for p in (tmp_path / "xgb").iterdir() if not p.name.startswith(".")) == [
        META,
        "item.json",
        TREES,
    ]
    item = json.loads((tmp_path / "xgb" / "item.json").read_text(encoding="utf-8"))  # its STAC MLM item
    assert item["properties"]["mlm:framework"] == "xgboost" and "mlm:total_parameters" not in item["properties"]
    assert item["assets"]["weights"]["href"] == f"./{TREES}"
    assert item["assets"]["weights"]["mlm:artifact_type"] == "xgboost.Booster.save_model"
    code, said = _cli(
        ["train", str(sample_table), "--out", "xgb", "--features", ",".join(NDVI_FEATURES), "--model", "xgboost"],
        monkeypatch,
        capsys,
    )
    assert code == 0 and "up to date" in said
    code, said = _cli(["map", str(slovenia_features), "--bundle", "xgb", "--out", "maps"], monkeypatch, capsys)
    assert code == 0, said
    with rasterio.open(tmp_path / "maps" / f"{slovenia_features.stem}_class.tif") as c:
        assert c.tags()["model_hash"] == load_bundle(tmp_path / "xgb").digest
    code, said = _cli(["map", str(slovenia_features), "--bundle", "xgb", "--out", "m2", "--ood"], monkeypatch, capsys)
    assert code == 2 and "XGBoost bundle" in said and "--ood" in said and "Traceback" not in said
    code, said = _cli(["ood", "xgb", "--table", str(sample_table)], monkeypatch, capsys)
    assert code == 2 and "XGBoost bundle" in said
    code, said = _cli(["evaluate", "--bundle", "xgb", "--table", str(sample_table), "--out", "ev"], monkeypatch, capsys)
    assert code == 0, said
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    recorded = load_bundle(tmp_path / "xgb").meta["metrics"]
    assert metrics["weighted_f1"] == pytest.approx(recorded["test_weighted_f1"], abs=1e-6)


def test_a_damaged_tree_bundle_is_refused(tree_bundle: Path, tmp_path: Path) -> None:
    """Every edit of a tree bundle is refused with the file and key named: the model file's
    bytes (SHA-256), its classes, its feature count, a file XGBoost cannot read even with a
    matching hash, an unknown model kind."""
    from pipeline.core.hashing import file_sha256

    def copy(name: str) -> Path:
        d = tmp_path / name
        shutil.copytree(tree_bundle, d)
        return d

    d = copy("bytes")
    raw = bytearray((d / TREES).read_bytes())
    raw[len(raw) // 2] ^= 1
    (d / TREES).write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="SHA-256"):
        load_bundle(d)

    def edit(name: str, change) -> Path:
        d = copy(name)
        meta = json.loads((d / META).read_text())
        change(meta)
        (d / META).write_text(json.dumps(meta))
        return d

    arch = load_bundle(tree_bundle).meta["architecture"]
    assert len(arch["classes"]) >= 3
    swapped = [arch["classes"][1], arch["classes"][0], *arch["classes"][2:]]
    d = edit("classes", lambda m: m["architecture"].update(classes=swapped))
    with pytest.raises(BundleError, match="architecture.classes"):
        load_bundle(d)
    d = edit("count", lambda m: m["architecture"].update(classes=arch["classes"][:-1]))
    with pytest.raises(BundleError, match="outputs"):
        load_bundle(d)
    d = edit("features", lambda m: m.update(features=m["features"][:-1]))
    with pytest.raises(BundleError, match="features"):
        load_bundle(d)
    d = edit("kind", lambda m: m.update(model="forest"))
    with pytest.raises(BundleError, match="forest"):
        load_bundle(d)
    d = copy("unreadable")
    (d / TREES).write_text('{"learner": 3}')
    meta = json.loads((d / META).read_text())
    meta["weights_sha256"] = file_sha256(d / TREES)
    (d / META).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="XGBoost cannot read it"):
        load_bundle(d)
