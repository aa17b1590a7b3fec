"""`kill -9` at random points of `eulc table`, `features` and `train`, then a rerun (issue #14):
the outputs are byte-identical to an uninterrupted run and no temporary is left behind (the
map runner has its own crash test in tests/test_runner.py).

Kill times are drawn with a fixed seed over the measured length of an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.atomic import WRITTEN, temp_prefix

from .conftest import SAMPLE

KILLS = 3


def _eulc(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.app.cli", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def _files(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, except the writer's journal (it records when each file was written)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != WRITTEN
    }


def _leftovers(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob(".eulc-tmp.*")]


@pytest.mark.parametrize("command", ["table", "features", "train"])
def test_kill_then_rerun_is_byte_identical(command: str, data: Path, tmp_path: Path) -> None:
    sample = data / SAMPLE
    setup = tmp_path / "setup"
    setup.mkdir()
    if command == "train":  # a table to train on, made once
        p = _eulc(["table", str(sample), "--spec", "elc10", "--out", str(setup / "t.parquet")], setup)
        assert p.wait(300) == 0, p.stderr.read() if p.stderr else ""
    args = {
        "table": ["table", str(sample), "--spec", "elc10", "--out", "out/t.parquet"],
        "features": [
            "features",
            "--files",
            "eolearn_slovenia",
            "--year",
            "2017",
            "--features",
            "ndvi_p5,ndvi_p50,ndvi_p95,ndvi_texture_sd",
            "--out",
            "out",
        ],
        "train": [
            "train",
            str(setup / "t.parquet"),
            "--out",
            "out/m",
            "--epochs",
            "3",
            "--features",
            "ndvi_p5,ndvi_p50,ndvi_p95",
            "--overwrite",
        ],
    }[command]
    ref = tmp_path / "ref"
    ref.mkdir()
    t0 = time.perf_counter()
    p = _eulc(args, ref)
    assert p.wait(600) == 0, p.stderr.read() if p.stderr else ""
    took = time.perf_counter() - t0
    want = _files(ref / "out")
    assert want
    rng = np.random.default_rng(14)
    run = tmp_path / "run"
    run.mkdir()
    for delay in rng.uniform(0.3, max(0.6, took), KILLS):
        p = _eulc(args, run)
        time.sleep(float(delay))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait(60)
    # and what a kill during the final rename would leave: a temporary of a dead process of this host
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / "out").mkdir(exist_ok=True)
    planted = run / "out" / f"{temp_prefix('x')}".replace(str(os.getpid()), str(dead.pid))
    planted = planted.with_name(planted.name + "abc.tif")
    planted.write_bytes(b"half a file")
    p = _eulc(args, run)
    assert p.wait(600) == 0, p.stderr.read() if p.stderr else ""
    assert _leftovers(run) == []  # mutation: without remove_leftovers in the command, the planted file stays
    assert _files(run / "out") == want
