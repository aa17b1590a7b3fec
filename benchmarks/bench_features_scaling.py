"""Features over many tiles on the distributed engine (issue #25): the same 25 cells of 250 m over
the real Slovenia stack with the `elc10` features it can compute for 2015 (S2 bands, indices,
texture), run by the features stage with ``sync`` (one process), and ``local`` with 1 and 2
workers. Prints each wall time (cluster start included), the compute phase (from the cluster's
``dashboard`` event, i.e. once it is up, to the last tile), the tiles' own time, and the 2-worker
scaling efficiency T(1 worker) / (2 · T(2 workers)) of both; the outputs of every run are
checked byte-identical. The stack is 1 km², so its tiles are small (about 0.1 s each) and the
start of a cluster (about 5 s) is the larger part of a run's wall time here.

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


def run(names: list[str], scheduler: str, workers: int, out: Path) -> tuple[float, float, float, dict[str, str]]:
    tile_s: list[float] = []
    up: list[float] = []

    def on_event(kind: str, info: dict[str, Any]) -> None:
        if kind == "tile" and info.get("seconds") is not None:
            tile_s.append(float(info["seconds"]))
        if kind == "dashboard":
            up.append(time.perf_counter())

    t0 = time.perf_counter()
    s = features(
        FeaturesRequest(
            out,
            YEAR,
            files="eolearn_slovenia",
            tiles=CELLS,
            tile_size="250m",
            features=",".join(names),
            scheduler=scheduler,
            workers=workers,
        ),
        on_event,
    )
    t1 = time.perf_counter()
    assert s.ok and s.done == 25, s.failures
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.tif"))}
    return t1 - t0, t1 - (up[0] if up else t0), sum(tile_s), sums


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    spec = load_spec("elc10")
    man, root = load_manifest("eolearn_slovenia")
    names = computable_features(spec, load_stack(man, root), YEAR)
    print(f"{len(names)} features for {YEAR}: {', '.join(names)}")
    times: dict[str, list[float]] = {}
    phase: dict[str, list[float]] = {}
    ref: dict[str, str] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for label, sched, n in (("sync", "sync", 1), ("local-1", "local", 1), ("local-2", "local", 2)):
                wall, comp, work, sums = run(names, sched, n, Path(tmp) / f"{label}-{i}")
                assert ref is None or sums == ref, f"{label}: outputs differ from the first run"
                ref = sums
                times.setdefault(label, []).append(wall)
                phase.setdefault(label, []).append(comp)
                print(f"round {i}: {label:8s} {wall:6.2f} s wall, {comp:6.2f} s computing, {work:6.2f} s in the tiles")
    med = {k: statistics.median(v) for k, v in times.items()}
    mph = {k: statistics.median(v) for k, v in phase.items()}
    print(
        f"sync_s={med['sync']:.2f} local1_s={med['local-1']:.2f} local2_s={med['local-2']:.2f} "
        f"efficiency_wall={med['local-1'] / (2 * med['local-2']):.2f} local1_compute_s={mph['local-1']:.2f} "
        f"local2_compute_s={mph['local-2']:.2f} efficiency_compute={mph['local-1'] / (2 * mph['local-2']):.2f} "
        "(outputs byte-identical)"
    )


if __name__ == "__main__":
    main()
