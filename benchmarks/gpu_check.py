"""One-command GPU check (issue #16): the CUDA path measured where a GPU is, exercised on CPU elsewhere.

Figures, each printed as one line ``gpu_check <figure> key=value ...`` and appended to
``--results`` (default ``benchmarks/RESULTS.md``) under a dated heading with the device:

1. **model-only**: pixels per second of the fused network, the faithful BRIDGE-LC shape with 109
   features (learnt location MLP, two branches, 7 classes), fp32 and bf16 autocast, at several
   batch sizes (CUDA: 64k to 4M pixels per pass; CPU: 4k and 16k, fp32 only);
2. **end to end**: a 10 km tile (1000 × 1000 px) feature COG with the shipped ``elc10-l1``
   bundle's 35 features (real ELC10 rows drawn with replacement) → class + confidence COGs with
   ``predict_tile`` on the device;
3. **eulc map**: the same file cut into four 5 km tiles through the tile runner (``--device``);
4. **training**: one epoch of the faithful schedule (batch 128, lr 1e-4, EMA off for one epoch)
   on the full real ELC10 table (all usable rows, 35 features);
5. **reduction** (issue #28): the masked percentiles and median of a 70-date 1000 × 1000 series in
   torch on the device against the feature engine's numpy path, with the share of equal values.

Without CUDA it runs the same code on the CPU with smaller batches and says that no GPU was
found, so CI covers the script. It installs nothing and finishes in well under 8 minutes.

Run: ``python benchmarks/gpu_check.py [--results benchmarks/RESULTS.md] [--out /tmp/eulc-gpu]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from model.bridge import BridgeConfig, BridgeLC
from model.bundle import ModelBundle, load_bundle
from model.normalize import MinMaxNormalizer
from model.train import TrainConfig, train_bridge, training_arrays
from pipeline.core.config import data_dir
from pipeline.core.contract import embedded_spec
from pipeline.core.featurecog import write_feature_cog
from pipeline.core.grid import TileId
from pipeline.core.legend import level1_legend
from pipeline.core.spec import load_spec
from pipeline.stages.pretrained import models_dir
from pipeline.table import build_feature_table
from tiles.mapping.predict import Predictor, predict_tile
from tiles.mapping.runner import run_map

TILE = TileId.parse("10kmE467N253")
ELC10_CSV = Path("elc10_lucas2018") / "lucas2018_elc10_s2_s1_features.csv.gz"


def _line(lines: list[str], figure: str, **kv: object) -> None:
    text = (
        "gpu_check "
        + figure
        + " "
        + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in kv.items())
    )
    print(text, flush=True)
    lines.append(text)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def model_only(dev: torch.device, lines: list[str]) -> None:
    net = BridgeLC(BridgeConfig(n_features=109, n_classes=7))
    norm = MinMaxNormalizer(np.zeros(109, np.float32), np.full(109, 10_000, np.float32))
    b = ModelBundle(net.eval(), norm, level1_legend(), [f"f{i}" for i in range(109)], {"weights_sha256": "synthetic"})
    gpu = dev.type == "cuda"
    n = 1 << (24 if gpu else 18)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10_000, (n, 109)).astype(np.float32)
    ll = np.column_stack([rng.uniform(-10, 30, n), rng.uniform(35, 70, n)]).astype(np.float32)
    for bf16 in (False, True) if gpu else (False,):
        for batch in (65_536, 262_144, 1_048_576, 4_194_304) if gpu else (4_096, 16_384):
            pred = Predictor(b, device=str(dev), batch_px=batch, bf16=bf16)
            pred.predict(x[:batch], ll[:batch])  # warm-up (kernels, autotuning)
            _sync(dev)
            t = time.perf_counter()
            pred.predict(x, ll)
            _sync(dev)
            rate = n / (time.perf_counter() - t)
            _line(
                lines,
                "model_only",
                dtype="bf16" if bf16 else "fp32",
                batch=batch,
                px=n,
                px_per_s=rate,
                gpx_per_s=rate / 1e9,
            )


def feature_tile(out: Path, tile: TileId) -> tuple[Path, ModelBundle]:
    """A feature COG of the elc10-l1 features over ``tile``: real ELC10 rows drawn with replacement."""
    bundle = load_bundle(models_dir() / "elc10-l1")
    spec = embedded_spec(bundle.meta["spec"]["feature_spec"], "elc10-l1")
    df = pd.read_csv(data_dir() / ELC10_CSV, usecols=bundle.features).dropna()
    rng = np.random.default_rng(1)
    w = tile.window()
    vals = df.to_numpy(np.float32)[rng.integers(0, len(df), w.height * w.width)].T.reshape(-1, *w.shape)
    return write_feature_cog(out / f"{tile}.tif", vals, spec, w, 2018, "L1C", ["synthetic: real ELC10 rows"]), bundle


def end_to_end(dev: torch.device, path: Path, bundle: ModelBundle, out: Path, lines: list[str], tile: TileId) -> None:
    pred = Predictor(bundle, device=str(dev))
    predict_tile(pred, path, out / "warm", "warm", tile=TileId.parse("1kmE4670N2530"))  # warm-up
    _sync(dev)
    t = time.perf_counter()
    res = predict_tile(pred, path, out / "e2e", str(tile))
    _sync(dev)
    s = time.perf_counter() - t
    _line(lines, "end_to_end", tile=str(tile), px=res.n_pixels, seconds=s, px_per_s=res.n_pixels / s)


def map_tiles(dev: torch.device, path: Path, out: Path, lines: list[str], tile: TileId) -> None:
    cells = [TileId(tile.size_m // 2, 2 * tile.e + i, 2 * tile.n + j) for i in (0, 1) for j in (0, 1)]
    t = time.perf_counter()
    s = run_map(cells, models_dir() / "elc10-l1", out / "map", features_files=[path], scheduler="sync", device=str(dev))
    secs = time.perf_counter() - t
    _line(
        lines, "eulc_map", tiles=len(cells), done=s.done, failed=len(s.failures), seconds=secs, px_per_s=s.pixels / secs
    )


def reduction(dev: torch.device, lines: list[str], rows: int) -> None:
    """The masked percentiles and medians of a 70-date series (rows × 1000 px, 30 % masked) in
    torch on the device (``model.reduce_torch``) against the engine's numpy path: seconds each,
    and the share of values equal bit for bit (1.0 on the CPU; a GPU's fused multiply-add may move
    the last bit of an interpolated percentile)."""
    from model.reduce_torch import torch_order_stats
    from tiles.engine.composite import numpy_order_stats

    rng = np.random.default_rng(28)
    v = rng.normal(0.4, 0.2, (70, rows, 1000)).astype(np.float32)
    v[rng.random(v.shape) < 0.3] = np.nan
    q = (5.0, 25.0, 50.0, 75.0, 95.0)
    t = time.perf_counter()
    want, want_med = numpy_order_stats(v, q, True)
    s_np = time.perf_counter() - t
    torch_order_stats(v[:, :8], q, True, device=str(dev))  # warm-up (CUDA context, kernels)
    _sync(dev)
    t = time.perf_counter()
    got, got_med = torch_order_stats(v, q, True, device=str(dev))
    _sync(dev)
    s_t = time.perf_counter() - t
    assert want_med is not None and got_med is not None
    same = float(np.mean(np.concatenate([(got == want).ravel(), (got_med == want_med).ravel()])))
    _line(lines, "reduction", px=rows * 1000, dates=70, numpy_s=s_np, torch_s=s_t, speedup=s_np / s_t, equal=same)


def train_epoch(dev: torch.device, out: Path, lines: list[str], max_rows: int | None = None) -> None:
    spec = load_spec("elc10")
    table, _ = build_feature_table([data_dir() / ELC10_CSV], spec)
    if max_rows is not None:
        table = table.sample(n=min(max_rows, len(table)), random_state=0)
    data = training_arrays(table, spec.names)
    cfg = TrainConfig(epochs=1, ema_momentum=None, device=str(dev))
    t = time.perf_counter()
    train_bridge(data, 7, cfg)
    _sync(dev)
    s = time.perf_counter() - t
    _line(
        lines,
        "train_epoch",
        schedule="faithful",
        rows=len(data.y),
        features=len(spec.names),
        seconds=s,
        est_500_epochs_min=s * 500 / 60,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="a 2 km tile and 8,000 training rows: checks that every step runs (CI, on a CPU), not a figure to report",
    )
    args = ap.parse_args()
    tile = TileId(2000, TILE.e * 5, TILE.n * 5) if args.smoke else TILE
    t0 = time.perf_counter()
    gpu = torch.cuda.is_available()
    dev = torch.device("cuda" if gpu else "cpu")
    lines: list[str] = []
    name = (
        torch.cuda.get_device_name(0)
        if gpu
        else f"no CUDA GPU found: CPU ({platform.processor() or 'cpu'}, {torch.get_num_threads()} threads)"
    )
    _line(lines, "device", cuda=gpu, name=name.replace(" ", "_"), torch=torch.__version__)
    with tempfile.TemporaryDirectory(prefix="eulc-gpu-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        model_only(dev, lines)
        path, bundle = feature_tile(out, tile)
        end_to_end(dev, path, bundle, out, lines, tile)
        map_tiles(dev, path, out, lines, tile)
        train_epoch(dev, out, lines, 8000 if args.smoke else None)
        reduction(dev, lines, 100 if args.smoke else 1000)
    _line(lines, "total", seconds=time.perf_counter() - t0)
    with args.results.open("a", encoding="utf-8") as fh:
        fh.write(f"\n### gpu_check.py, {dt.date.today().isoformat()}: {name}\n\n```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
