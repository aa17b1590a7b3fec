"""Features over many tiles on the distributed engine (issue #25): the same 25 cells of 250 m over
the real Slovenia stack with the `elc10` features it can compute for 2015 (S2 bands, indices,
texture), run by the features stage with ``sync`` (one process), and ``local`` with 1 and 2
workers. Prints each wall time (cluster start included), the tiles' own compute time, and the
2-worker scaling efficiency T(1 worker) / (2 · T(2 workers)); the outputs of every run are
checked byte-identical.

    EULC_DATA=../shared/data python benchmarks/bench_features_scaling.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.core.spec import load_spec
from pipeline.stages.features import FeaturesRequest, features
from tiles.engine.features import computable_features
from tiles.engine.stack import load_manifest, load_stack

CELLS = "bbox:14.55062,45.86597,14.56503,45.87491"  # 25 cells of 250 m over the stack
YEAR = 2015


def run(names: list[str], scheduler: str, workers: int, out: Path) -> tuple[float, float, dict[str, str]]:
    tile_s: list[float] = []

    def on_event(kind: str, info: dict[str, Any]) -> None:
        if kind == "tile" and info.get("seconds") is not None:
            tile_s.append(float(info["seconds"]))

    t0 = time.perf_counter()
    s = features(FeaturesRequest(out, YEAR, files="eolearn_slovenia", tiles=CELLS, tile_size="250m",
                                 features=",".join(names), scheduler=scheduler, workers=workers), on_event)
    wall = time.perf_counter() - t0
    assert s.ok and s.done == 25, s.failures
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.tif"))}
    return wall, sum(tile_s), sums


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    spec = load_spec("elc10")
    man, root = load_manifest("eolearn_slovenia")
    names = computable_features(spec, load_stack(man, root), YEAR)
    print(f"{len(names)} features for {YEAR}: {', '.join(names)}")
    times: dict[str, list[float]] = {}
    tiles: dict[str, list[float]] = {}
    ref: dict[str, str] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for label, sched, n in (("sync", "sync", 1), ("local-1", "local", 1), ("local-2", "local", 2)):
                wall, work, sums = run(names, sched, n, Path(tmp) / f"{label}-{i}")
                assert ref is None or sums == ref, f"{label}: outputs differ from the first run"
                ref = sums
                times.setdefault(label, []).append(wall)
                tiles.setdefault(label, []).append(work)
                print(f"round {i}: {label:8s} {wall:6.2f} s wall, {work:6.2f} s in the tiles")
    med = {k: statistics.median(v) for k, v in times.items()}
    eff = med["local-1"] / (2 * med["local-2"])
    print(f"sync_s={med['sync']:.2f} local1_s={med['local-1']:.2f} local2_s={med['local-2']:.2f} "
          f"speedup_2v1={med['local-1'] / med['local-2']:.2f} efficiency={eff:.2f} (outputs byte-identical)")


if __name__ == "__main__":
    main()
