"""The OOD layer (issue #18): the reference stored in bundles, ``eulc map --ood``, the report.

Real data: the shipped bundles' references, the real Slovenia feature COG, the real LUCAS sample.
"""

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rio_cogeo.cogeo import cog_validate

from model.bundle import load_bundle
from model.fused import FusedClassifier
from model.ood import OOD_META, OOD_WEIGHTS
from pipeline.core.errors import BundleError
from pipeline.core.ood_codes import OOD_NODATA
from pipeline.stages.pretrained import models_dir
from tiles.mapping.manifest import Manifest
from tiles.mapping.predict import NODATA, Predictor, predict_tile
from tiles.mapping.runner import run_map


def _eulc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.app.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def ndvi_bundle() -> Path:
    """The shipped bundle of the 10 NDVI features of the Slovenia feature COG."""
    return models_dir() / "elc10-ndvi-l1"


@pytest.mark.parametrize("name", ["elc10-l1", "elc10-l2", "elc10-s2-l1", "elc10-ndvi-l1"])
def test_every_shipped_bundle_carries_a_reference_for_its_own_model(name: str) -> None:
    b = load_bundle(models_dir() / name)
    ref = b.ood()
    assert ref is not None and ref.k == 16
    # the 32 smallest-variance directions of the embedding's tied covariance (partial Mahalanobis)
    assert ref.whitener.shape == (b.model.cfg.hidden, 32)
    # one Gaussian per class present in the training rows (Level-2: 18 of the 19 crop classes)
    assert ref.class_means.shape[1] == 32 and ref.class_means.shape[0] <= len(b.legend)
    meta = json.loads((b.path / OOD_META).read_text())
    assert meta["bundle_digest"] == b.digest
    # fitted on the training rows: ~1 % of them beyond each 99 % threshold, by construction
    assert meta["n_rows"] == b.meta["metrics"]["n_train"]
    if name in ("elc10-l1", "elc10-s2-l1"):  # the landscapes are the nine S2 band medians
        assert meta["landscape_features"] == [
            "blue_median",
            "green_median",
            "red_median",
            "R1_median",
            "R2_median",
            "R3_median",
            "nir_median",
            "swir1_median",
            "swir2_median",
        ]


def test_fused_embedding_is_the_networks_penultimate_layer(ndvi_bundle: Path) -> None:
    b = load_bundle(ndvi_bundle)
    rng = np.random.default_rng(0)
    x = (b.normalizer.center + rng.normal(size=(64, len(b.features))) * b.normalizer.scale).astype(np.float32)
    ll = np.tile(np.float32([14.5, 46.0]), (64, 1))
    fused = FusedClassifier(b.model, b.normalizer)
    with torch.inference_mode():
        h = fused.embed(torch.from_numpy(x), torch.from_numpy(ll))
        xn = b.normalizer.transform_tensor(torch.from_numpy(x))
        ref = b.model.invariant(b.model._input(xn, torch.from_numpy(ll)))
    np.testing.assert_allclose(h.numpy(), ref.numpy(), rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def ood_tile(ndvi_bundle: Path, slovenia_features: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("ood")
    return predict_tile(Predictor(load_bundle(ndvi_bundle), device="cpu", ood=True), slovenia_features, out, "slo")


def test_map_writes_a_valid_ood_cog_aligned_with_the_class_map(ood_tile) -> None:
    res = ood_tile
    ood = res.class_path.with_name("slo_ood.tif")
    assert ood in res.outputs
    valid, errors, _ = cog_validate(str(ood))
    assert valid, errors
    with rasterio.open(res.class_path) as c, rasterio.open(ood) as o:
        cls, codes = c.read(1), o.read(1)
        assert o.transform == c.transform and o.crs == c.crs and o.nodata == OOD_NODATA
        assert o.colormap(1)[2][:3] == (200, 0, 160)
        tags = o.tags()
    np.testing.assert_array_equal(codes == OOD_NODATA, cls == NODATA)
    assert set(np.unique(codes[codes != OOD_NODATA])) <= {0, 1, 2, 3}
    assert json.loads(tags["codes"])["3"] == "both" and tags["k"] == "16"
    # a Slovenian forest/grassland patch is well inside the LUCAS training data
    assert res.ood_share is not None and res.ood_share < 0.05
    assert sum(res.ood_counts.values()) == int((cls != NODATA).sum())


def test_features_unlike_any_training_row_are_flagged(
    ndvi_bundle: Path, slovenia_features: Path, tmp_path: Path
) -> None:
    """The same real tile with every NDVI statistic pushed to 2.5x (NDVI far above 1): flagged."""
    shifted = tmp_path / "shifted.tif"
    shutil.copy(slovenia_features, shifted)
    with rasterio.open(shifted, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as f:
        f.write(f.read() * 2.5)
    pred = Predictor(load_bundle(ndvi_bundle), device="cpu", ood=True)
    res = predict_tile(pred, shifted, tmp_path, "shifted")
    assert res.ood_share is not None and res.ood_share > 0.9
    assert res.ood_counts["3"] > res.ood_counts["0"]  # both tests fire


def test_a_bundle_without_reference_maps_but_refuses_ood(
    small_bundle: Path, slovenia_features: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    shutil.copytree(small_bundle, old)
    for n in (OOD_META, OOD_WEIGHTS):
        (old / n).unlink()  # a bundle of an eulc before issue #18
    b = load_bundle(old)
    assert b.ood() is None
    assert predict_tile(b, slovenia_features, tmp_path / "m", "slo").class_path.is_file()
    p = _eulc(
        "map",
        str(slovenia_features),
        "--bundle",
        str(old),
        "--out",
        str(tmp_path / "m2"),
        "--ood",
        "--scheduler",
        "sync",
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "has no OOD reference" in p.stderr and "eulc ood" in p.stderr
    assert not (tmp_path / "m2" / "manifest.sqlite").exists()


def test_a_tampered_or_foreign_reference_is_refused(small_bundle: Path, tmp_path: Path) -> None:
    b = tmp_path / "b"
    shutil.copytree(small_bundle, b)
    meta = json.loads((b / OOD_META).read_text())
    meta["distance_threshold"] = 1e9  # silences the distance test
    meta["bundle_digest"] = "0" * 16
    (b / OOD_META).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="fitted for the model"):
        load_bundle(b).require_ood()
    shutil.copy(small_bundle / OOD_META, b / OOD_META)
    arrays = bytearray((b / OOD_WEIGHTS).read_bytes())
    arrays[-8:] = b"\x00" * 8
    (b / OOD_WEIGHTS).write_bytes(bytes(arrays))
    with pytest.raises(BundleError, match="SHA-256"):
        load_bundle(b).require_ood()


def test_eulc_ood_adds_a_reference_from_the_training_table_only(
    small_bundle: Path, sample_table: Path, full_table: Path, tmp_path: Path
) -> None:
    b = tmp_path / "b"
    shutil.copytree(small_bundle, b)
    fitted = json.loads((b / OOD_META).read_text())
    for n in (OOD_META, OOD_WEIGHTS):
        (b / n).unlink()
    p = _eulc("ood", str(b), "--table", str(full_table))
    assert p.returncode == 2 and "was trained on a table with hash" in p.stderr
    assert not (b / OOD_META).exists()
    p = _eulc("ood", str(b), "--table", str(sample_table), "--landscapes", "8")
    assert p.returncode == 0, p.stderr
    again = json.loads((b / OOD_META).read_text())
    # the very training rows `eulc train` fitted on, re-drawn from the table
    assert again["n_rows"] == fitted["n_rows"] == load_bundle(b).meta["metrics"]["n_train"]
    assert again["k"] == 8 and load_bundle(b).require_ood().k == 8
    p = _eulc("ood", str(models_dir() / "elc10-l1"), "--table", str(full_table))
    assert p.returncode == 2 and "shipped" in p.stderr


def test_run_records_the_ood_share_and_resumes(ndvi_bundle: Path, slovenia_features: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    s = run_map(None, ndvi_bundle, out, features_files=[slovenia_features], scheduler="sync", ood=True)
    assert s.ok and s.done == 1
    m = Manifest(out / "manifest.sqlite")
    row = m.rows()[0]
    m.close()
    assert row.ood_share is not None and 0 <= row.ood_share < 0.05
    assert f"{row.tile_id}_ood.tif" in row.outputs
    item = json.loads((out / f"{row.tile_id}.json").read_text())
    assert item["assets"]["ood"]["href"] == f"./{row.tile_id}_ood.tif"
    # the classification extension lists every value the layer holds, in the colours of its colormap
    classes = {c["value"]: c for c in item["assets"]["ood"]["classification:classes"]}
    with rasterio.open(out / f"{row.tile_id}_ood.tif") as src:
        values, cmap = np.unique(src.read(1)), src.colormap(1)
    assert set(values.tolist()) <= set(classes) and set(classes) == {0, 1, 2, 3, 255}
    assert classes[255].get("nodata") is True and "nodata" not in classes[0]
    for v in (0, 1, 2, 3):
        assert classes[v]["color_hint"] == "{:02X}{:02X}{:02X}".format(*cmap[v][:3]), v
    assert item["properties"]["eulc:ood_share"] == pytest.approx(row.ood_share, abs=1e-6)
    again = run_map(None, ndvi_bundle, out, features_files=[slovenia_features], scheduler="sync", ood=True)
    assert again.skipped == 1 and again.done == 0
    plain = run_map(None, ndvi_bundle, out, features_files=[slovenia_features], scheduler="sync")
    assert plain.done == 1  # another layer set: the tile is redone


def test_a_manifest_of_an_earlier_eulc_gains_the_column(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "manifest.sqlite")
    db.execute(
        "CREATE TABLE tiles (tile_id TEXT PRIMARY KEY, inputs_hash TEXT NOT NULL, status TEXT NOT NULL, "
        "features_file TEXT, outputs TEXT, error TEXT, started REAL, finished REAL, seconds REAL, "
        "n_pixels INTEGER, n_nodata INTEGER, worker TEXT)"
    )
    db.execute("INSERT INTO tiles (tile_id, inputs_hash, status, outputs) VALUES ('a', 'h', 'done', '{}')")
    db.commit()
    db.close()
    m = Manifest(tmp_path / "manifest.sqlite")
    assert m.get("a").ood_share is None
    m.close()


def test_report_shows_the_layer_and_agreement_inside_and_outside(
    ndvi_bundle: Path, slovenia_features: Path, data: Path, tmp_path: Path
) -> None:
    """The seam map --ood -> report: the files `eulc map` writes, found by name beside --map."""
    shifted = tmp_path / "half.tif"
    shutil.copy(slovenia_features, shifted)
    with rasterio.open(shifted, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as f:  # the left half unlike the training data
        v = f.read()
        v[:, :, : v.shape[2] // 2] *= 2.5
        f.write(v)
    out = tmp_path / "run"
    p = _eulc("map", str(shifted), "--bundle", str(ndvi_bundle), "--out", str(out), "--ood", "--scheduler", "sync")
    assert p.returncode == 0, p.stderr
    assert "OOD layer" in p.stdout and "half" in p.stdout  # the per-tile share table
    rep = tmp_path / "rep"
    p = _eulc(
        "report",
        "--map",
        str(out / "half_class.tif"),
        "--reference",
        str(data / "eolearn_testeopatch_slovenia" / "lulc_reference.tif"),
        "--crosswalk",
        "eolearn_lulc",
        "--out",
        str(rep),
    )
    assert p.returncode == 0, p.stderr
    said = " ".join(p.stdout.split())  # rich wraps lines at the terminal width
    assert "(found beside --map)" in said and "% of the map flagged out of distribution" in said
    m = json.loads((rep / "metrics.json").read_text())
    o = m["ood"]
    assert 0.4 < o["share"] < 0.6
    # the shifted half is mapped worse: lower agreement where the layer flags
    assert o["agreement_flagged"] < o["agreement_in_distribution"]
    assert o["compared_flagged"] + o["compared_in_distribution"] == m["n_pixels"]
    assert 0.4 < m["by_tile"][0]["ood_share"] < 0.6 and "ood_share" in m["by_bioregion"][0]
    page = (rep / "report.html").read_text()
    assert "Where the model is out of its depth" in page and "far in feature space" in page
    assert "ood.csv" in m["files"]
    # a layer of another tile is refused, in one line
    moved = tmp_path / "moved_ood.tif"
    with rasterio.open(out / "half_ood.tif") as src:
        prof, codes = src.profile, src.read(1)
    prof.update(transform=src.transform * src.transform.translation(100, 0), driver="GTiff")
    with rasterio.open(moved, "w", **prof) as dst:
        dst.write(codes, 1)
    p = _eulc(
        "report",
        "--map",
        str(out / "half_class.tif"),
        "--reference",
        str(data / "eolearn_testeopatch_slovenia" / "lulc_reference.tif"),
        "--crosswalk",
        "eolearn_lulc",
        "--out",
        str(tmp_path / "rep2"),
        "--ood-layer",
        str(moved),
    )
    assert p.returncode == 2 and "is not on the grid of half_class.tif" in p.stderr and "Traceback" not in p.stderr


def test_drift_compares_the_tiles_landscapes_with_the_training_ones(
    ndvi_bundle: Path, slovenia_features: Path, sample_table: Path, tmp_path: Path
) -> None:
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    shutil.copy(slovenia_features, tiles / "slo.tif")
    shutil.copy(slovenia_features, tiles / "shifted.tif")
    with rasterio.open(tiles / "shifted.tif", "r+", IGNORE_COG_LAYOUT_BREAK="YES") as f:
        f.write(f.read() * 2.5)
    csv, png = tmp_path / "land.csv", tmp_path / "land.png"
    p = _eulc(
        "drift",
        "--table",
        str(sample_table),
        "--features-dir",
        str(tiles),
        "--bundle",
        str(ndvi_bundle),
        "--landscapes-csv",
        str(csv),
        "--landscapes-png",
        str(png),
    )
    assert p.returncode == 0, p.stderr
    assert "landscape PSI" in " ".join(p.stdout.split())
    import pandas as pd

    hist = pd.read_csv(csv)
    assert sorted(hist["tile"].unique()) == ["all tiles", "shifted", "slo"]
    ref = load_bundle(ndvi_bundle).require_ood()
    for _, g in hist.groupby("tile"):
        assert len(g) == 16 and g["tile_share"].sum() == pytest.approx(1.0)
        np.testing.assert_allclose(g.sort_values("cluster")["train_share"], ref.share, atol=1e-9)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    p = _eulc("drift", "--table", str(sample_table), "--features-dir", str(tiles), "--landscapes-csv", str(csv))
    assert p.returncode == 2 and "--bundle" in p.stderr


def test_landscape_drift_counts_unseen_landscapes(ndvi_bundle: Path, slovenia_features: Path, tmp_path: Path) -> None:
    from tiles.mapping.landscapes import landscape_drift

    shifted = tmp_path / "shifted.tif"
    shutil.copy(slovenia_features, shifted)
    with rasterio.open(shifted, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as f:
        f.write(f.read() * 2.5)
    ref = load_bundle(ndvi_bundle).require_ood()
    _, summ = landscape_drift(ref, [slovenia_features, shifted])
    by = summ.set_index("tile")
    assert by.loc["slo_2017", "rare_share"] < 0.05 < 0.9 < by.loc["shifted", "rare_share"]
    assert by.loc["shifted", "pixels"] == by.loc["slo_2017", "pixels"]


def test_the_map_time_scores_equal_a_float64_reference(ndvi_bundle: Path) -> None:
    """The folded float32 products of the map equal the definitions computed directly in float64:
    nearest standardised centroid, and min over classes of |(z - mu_c) W|^2."""
    ref = load_bundle(models_dir() / "elc10-l1").require_ood()
    b = load_bundle(models_dir() / "elc10-l1")
    rng = np.random.default_rng(1)
    x = (b.normalizer.center + rng.normal(size=(3000, len(b.features))) * b.normalizer.scale * 2).astype(np.float32)
    cl, d2 = ref.landscape(torch.from_numpy(x))
    xs = (x[:, ref.landscape_index].astype(np.float64) - ref.mean) / ref.std
    full = ((xs[:, None, :] - ref.centroids[None].astype(np.float64)) ** 2).sum(2)
    np.testing.assert_array_equal(cl.numpy(), full.argmin(1))
    np.testing.assert_allclose(d2.numpy(), full.min(1), rtol=1e-4, atol=1e-3)
    h = torch.from_numpy(rng.gamma(1.0, 0.5, size=(3000, b.model.cfg.hidden)).astype(np.float32))
    u = h.numpy().astype(np.float64) @ ref.whitener.astype(np.float64)
    want = ((u[:, None, :] - ref.class_means[None].astype(np.float64)) ** 2).sum(2).min(1)
    np.testing.assert_allclose(ref.distance(h).numpy(), want, rtol=1e-4)
    rare = (ref.share[full.argmin(1)] < ref.rare_share) | (full.min(1) > ref.landscape_threshold)
    codes = ref.codes(torch.from_numpy(x), h).numpy()
    np.testing.assert_array_equal(codes, rare.astype(np.uint8) + 2 * (want > ref.distance_threshold))


@pytest.mark.parametrize("batch_px", [1000, 4096])
def test_grouped_map_time_codes_equal_the_reference_on_every_pixel(
    ndvi_bundle: Path, slovenia_features: Path, batch_px: int
) -> None:
    """Sub-batches, groups of sub-batches and a last partial group give each pixel its own code."""
    from pipeline.core.reader import FeatureReader

    b = load_bundle(ndvi_bundle)
    pred = Predictor(b, device="cpu", ood=True, batch_px=batch_px)
    with FeatureReader(slovenia_features, pred.features) as r:
        x = r.read().reshape(len(pred.features), -1).T
    x = np.ascontiguousarray(x[np.isfinite(x).all(1)])
    x[::7] *= 2.5  # some pixels out of distribution, spread over every group
    ll = np.zeros((len(x), 2), np.float32)
    got = pred.predict(x, ll)["ood"]
    with torch.inference_mode():
        xt = torch.from_numpy(x)
        want = pred.ood.codes(xt, FusedClassifier(b.model, b.normalizer).embed(xt, torch.from_numpy(ll))).numpy()
    assert len(x) > 4 * batch_px or batch_px == 4096
    np.testing.assert_array_equal(got, want)
    assert (got[::7] > 0).mean() > 0.9 and (got > 0).mean() < 0.3


@pytest.mark.parametrize("depth", [1, 3])
def test_embed_writes_into_the_buffer_it_is_given_at_any_depth(depth: int) -> None:
    """`eulc map --ood` gathers embeddings in one buffer: `embed(out=)` returns that buffer, equal to a plain call."""
    from model.bridge import BridgeConfig, BridgeLC
    from model.normalize import fit_normalizer

    net = BridgeLC(BridgeConfig(n_features=5, n_classes=3, depth=depth, location="none", region_branch=False)).eval()
    norm = fit_normalizer(np.random.default_rng(0).random((50, 5)).astype(np.float32), "robust")
    fused = FusedClassifier(net, norm)
    x, ll, buf = torch.rand(10, 5), torch.zeros(10, 2), torch.empty(10, net.cfg.hidden)
    with torch.inference_mode():
        plain, into = fused.embed(x, ll), fused.embed(x, ll, out=buf)
    assert into.data_ptr() == buf.data_ptr()
    torch.testing.assert_close(into, plain)
