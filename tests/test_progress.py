"""No phase is silent (issue #27): progress lines when stderr is not a terminal.

:class:`PlainProgress` prints a task's first line at once, a heartbeat at least every
``every_s`` seconds between updates, and a time left that counts down between them (checked with
a fake clock); the long commands (the default ``eulc train`` with its XGBoost teacher, a LORO
``eulc evaluate``, ``eulc gee export-table`` over every LUCAS point) print their first line
within 10 s and are never silent for longer (checked on their real captured stderr).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.app import cli_common
from pipeline.app.cli_common import PlainProgress

from .conftest import SURVEY


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    buf = io.StringIO()
    monkeypatch.setattr(cli_common, "console", Console(file=buf, width=200, force_terminal=False))
    return buf


def test_first_line_at_once_and_a_countdown_between_updates(captured: io.StringIO) -> None:
    clock = Clock()
    prog = PlainProgress(10.0, get_time=clock)  # no heartbeat thread: not entered
    t = prog.add_task("train", total=10, info="")
    assert captured.getvalue().splitlines() == ["train: 0/10 (0 %) in 0:00"]
    clock.t += 20
    prog.update(t, completed=2)  # 2 in 20 s: 80 s left
    assert captured.getvalue().splitlines()[-1] == "train: 2/10 (20 %) in 0:20, about 1:20 left"
    clock.t += 15  # nothing moved for 15 s: the estimate counts down, it does not stand still
    prog._line(t)
    assert captured.getvalue().splitlines()[-1] == "train: 2/10 (20 %) in 0:35, about 1:05 left"
    clock.t += 10
    prog.update(t, completed=2.5)  # fractional epochs keep their decimal
    assert captured.getvalue().splitlines()[-1].startswith("train: 2.5/10 (25 %)")
    prog.update(t, completed=10)
    assert captured.getvalue().splitlines()[-1] == "train: 10/10 (100 %) in 0:45"


def test_the_heartbeat_speaks_without_updates(captured: io.StringIO) -> None:
    with PlainProgress(0.2) as prog:
        prog.add_task("teacher", total=2, info="")
        time.sleep(1.1)  # no update at all: a line at once, then one at least every 0.2 s
    lines = captured.getvalue().splitlines()
    assert lines[0] == "teacher: 0/2 (0 %) in 0:00" and len(lines) >= 4
    assert not any(t.name == "eulc-progress" for t in threading.enumerate())  # stopped with the block


def _start(cmd: list[str], cwd: Path) -> tuple[subprocess.Popen[str], float, list[tuple[float, str]], threading.Thread]:
    env = {**os.environ, "EULC_PROGRESS_S": "3"}
    t0 = time.monotonic()
    p = subprocess.Popen(
        [sys.executable, "-m", "pipeline.app.cli", *cmd],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the kill below reaches forked workers too
    )
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert p.stderr is not None
        for line in p.stderr:
            lines.append((time.monotonic(), line.rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return p, t0, lines, reader


def test_long_commands_are_never_silent(full_table: Path, data: Path, tmp_path: Path) -> None:
    """The three phases the issue found silent for minutes: each prints within 10 s and then at
    least every 10 s, with the progress of the phase it is in. Each runs until its phase lines
    have come or 40 s have passed (a loaded 2-core CI machine took over 12 s to reach the teacher),
    so the bounds are on silence, not on how fast a machine imports torch and scikit-learn."""
    cmds = {
        "train": ["train", str(full_table), "--out", "m"],  # the default: teacher, then 500 epochs
        "evaluate": [
            "evaluate",
            "--table",
            str(full_table),
            "--scenario",
            "loro",
            "--models",
            "eulc",
            "--regions",
            "Alpine",
            "--seeds",
            "1",
            "--out",
            "ev",
        ],
        "gee": ["gee", "export-table", "--points", str(data / SURVEY), "--year", "2022", "--out", "g"],
    }
    expect = {
        "train": ["reading ", "rows: ", "training schedule: 500 epochs", "teacher: 0/2"],
        "evaluate": ["loro: 0/1", "fitting eulc on loro-Alpine, seed 0"],
        "gee": ["reading the points", "task graphs: "],
    }
    for which, cmd in cmds.items():  # one after the other: a user runs one command, not three at once
        p, t0, lines, reader = _start(cmd, tmp_path)
        while time.monotonic() - t0 < 40 and not all(e in "\n".join(x for _, x in lines) for e in expect[which]):
            time.sleep(0.5)
        time.sleep(1)  # then a little longer: the phase's own progress goes on
        end = time.monotonic()
        os.killpg(p.pid, signal.SIGKILL)  # the command and its forked workers (gee's graph builders)
        p.wait()
        reader.join(5)
        stamps = [t for t, _ in lines]
        text = "\n".join(line for _, line in lines)
        assert stamps, f"{which}: no line in {end - t0:.0f} s"
        silence = max(b - a for a, b in zip(stamps, [*stamps[1:], end], strict=True))
        assert stamps[0] - t0 < 10 and silence < 10, (
            f"{which}: first line after {stamps[0] - t0:.1f} s, silent for {silence:.1f} s:\n{text}"
        )
        assert all(e in text for e in expect[which]), f"{which}:\n{text}"
