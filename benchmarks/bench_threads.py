"""Benchmark: training while other work loads the CPU: eulc's OpenMP policy against torch's default.

A short run of the faithful BRIDGE-LC network (35 features, batch 128, 150 AdamW steps on
synthetic rows; the step pattern of ``eulc train``) in a fresh process, twice per side:

- idle machine, then with ``--load`` busy processes (default: one per core) spinning beside it;
- **ours**: the process calls :func:`pipeline.core.config.calm_openmp_under_load` before torch
  loads (what every ``eulc`` command does): under load, idle OpenMP threads sleep after a short
  spin; the thread count (so every number computed) is unchanged;
- **peer**: torch's defaults (GNU OpenMP's long spin).

Run: ``python benchmarks/bench_threads.py``. The last line is ``ours_s=.. peer_s=.. ratio=..``
(best of the two runs under load).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = r"""
import sys, time
if sys.argv[1] == "ours":
    from pipeline.core.config import calm_openmp_under_load
    calm_openmp_under_load()
import torch
from model.bridge import BridgeConfig, BridgeLC
torch.manual_seed(0)
net = BridgeLC(BridgeConfig(n_features=35, n_classes=7))
opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
x, ll, y = torch.randn(128 * 150, 35), torch.randn(128 * 150, 2), torch.randint(0, 7, (128 * 150,))
t = time.perf_counter()
for i in range(0, len(x), 128):
    out = net(x[i:i + 128], ll[i:i + 128])
    loss = torch.nn.functional.cross_entropy(out[0] if isinstance(out, tuple) else out, y[i:i + 128])
    opt.zero_grad()
    loss.backward()
    opt.step()
print(f"{time.perf_counter() - t:.2f}")
"""


def _run(side: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    p = subprocess.run([sys.executable, "-c", CHILD, side], env=env, capture_output=True, text=True, check=True)
    return float(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--load", type=int, default=os.cpu_count() or 1, help="busy processes beside the run")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; load average now {os.getloadavg()[0]:.2f}")
    idle = {s: min(_run(s) for _ in range(2)) for s in ("ours", "peer")}
    print(f"idle: ours {idle['ours']:.2f} s, peer {idle['peer']:.2f} s")
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        import time

        time.sleep(60)  # let the 1-minute load average see the other work
        print(f"{args.load} busy processes; load average {os.getloadavg()[0]:.2f}")
        loaded = {s: [_run(s) for _ in range(2)] for s in ("ours", "peer")}
    finally:
        for p in spinners:
            p.kill()
    for s, v in loaded.items():
        print(f"under load: {s} {', '.join(f'{t:.2f}' for t in v)} s")
    ours, peer = min(loaded["ours"]), min(loaded["peer"])
    print(f"ours_s={ours:.2f} peer_s={peer:.2f} ratio={peer / ours:.1f}")


if __name__ == "__main__":
    main()
