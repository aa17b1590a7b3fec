"""Benchmark: the offline Earth Engine plan of ``eulc gee export-table`` for every LUCAS 2018
survey point (18,984 points, 584 tasks): task graphs built in forked worker processes (ours,
``gee_scripts.run._in_processes``) against one process (peer, the previous code path).

Both plans are built in the same offline ee session and must be identical (keys, graphs and
their hashes). Run: ``python benchmarks/bench_gee_plan.py``; the last line is
``ours_s=.. peer_s=.. ratio=.. tasks=..``.
"""

from __future__ import annotations

import time

from gee_scripts import run
from gee_scripts.exports import Destination
from gee_scripts.session import offline
from pipeline.core.config import cpu_threads, data_dir
from pipeline.core.spec import load_spec

POINTS = "lucas2018_survey_points/lucas2018_topsoil_points_survey_attrs.csv"


def _plan() -> tuple[float, run.Plan]:
    t = time.perf_counter()
    plan = run.plan_table_exports(data_dir() / POINTS, load_spec("bridge-lc-196"), 2022, Destination("drive", "eulc"))
    return time.perf_counter() - t, plan


def main() -> None:
    """Time both paths once each and check they plan the same tasks."""
    with offline():
        ours_s, ours = _plan()
        saved = run.PARALLEL_MIN_TASKS
        run.PARALLEL_MIN_TASKS = 10**9  # the peer: every graph in this process
        try:
            peer_s, peer = _plan()
        finally:
            run.PARALLEL_MIN_TASKS = saved
    assert ours.graphs == peer.graphs and [j.params_hash for j in ours.jobs] == [j.params_hash for j in peer.jobs]
    print(
        f"{len(ours.jobs)} tasks, {cpu_threads()} CPU threads: forked workers {ours_s:.1f} s, one process "
        f"{peer_s:.1f} s (identical plans)"
    )
    print(f"ours_s={ours_s:.1f} peer_s={peer_s:.1f} ratio={ours_s / peer_s:.2f} tasks={len(ours.jobs)}")


if __name__ == "__main__":
    main()
