"""A resumable job table for Earth Engine tasks, and the TaskRunner protocol with two runners.

The job table is SQLite (``jobs.sqlite``): one row per task key with its params hash (the
hash of the task graph), the task id, the state, the number of attempts, the output URI and
the last error. :func:`submit` is idempotent:

- a row already READY/RUNNING/COMPLETED with the same params hash is left alone;
- a row whose params hash changed is submitted again;
- a FAILED/CANCELLED row is retried until ``max_attempts``;
- a row left in SUBMITTING by a crash between "start" and "record the id" is first looked up
  on the server by its description (``runner.find``), so a crashed run never starts a
  duplicate task.

Modelled on openEO's ``MultiBackendJobManager`` and the WorldCereal job database (DESIGN.md §4).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gee_scripts.exports import task_graph

ACTIVE = ("READY", "RUNNING", "COMPLETED")
RETRYABLE = ("FAILED", "CANCELLED")


class TaskRunner(Protocol):
    """Starts and observes export tasks. ``EETaskRunner`` talks to Earth Engine;
    ``FakeTaskRunner`` records configurations and scripts state changes for tests.
    """

    def start(self, key: str, task: Any) -> str:
        """Start ``task``; return its server-side id."""
        ...

    def state(self, task_id: str) -> str:
        """The task's state: READY, RUNNING, COMPLETED, FAILED or CANCELLED."""
        ...

    def find(self, description: str) -> str | None:
        """The id of a live (not failed) task with this description, if any."""
        ...


@dataclass
class JobSpec:
    """A task to run: its key, description, params hash, output URI and a builder."""

    key: str
    kind: str
    description: str
    params_hash: str
    output_uri: str
    build: Callable[[], Any]


class JobTable:
    """The SQLite job table at ``path`` (created if missing)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (key TEXT PRIMARY KEY, kind TEXT, description TEXT, "
            "params_hash TEXT, task_id TEXT, state TEXT, attempts INTEGER DEFAULT 0, "
            "output_uri TEXT, error TEXT, updated REAL)"
        )
        self.db.commit()

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def rows(self) -> list[dict[str, Any]]:
        """Every row as a dict, sorted by key."""
        cur = self.db.execute("SELECT * FROM jobs ORDER BY key")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def row(self, key: str) -> dict[str, Any] | None:
        """One row, or None."""
        return next((r for r in self.rows() if r["key"] == key), None)

    def _set(self, key: str, **values: Any) -> None:
        values["updated"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(f"UPDATE jobs SET {cols} WHERE key = ?", [*values.values(), key])  # noqa: S608
        self.db.commit()

    def register(self, jobs: Iterable[JobSpec]) -> None:
        """Insert new jobs as PENDING; reset a job whose params hash changed."""
        for j in jobs:
            r = self.row(j.key)
            if r is None:
                self.db.execute(
                    "INSERT INTO jobs (key, kind, description, params_hash, state, attempts, output_uri, updated) "
                    "VALUES (?, ?, ?, ?, 'PENDING', 0, ?, ?)",
                    (j.key, j.kind, j.description, j.params_hash, j.output_uri, time.time()),
                )
            elif r["params_hash"] != j.params_hash:
                self._set(
                    j.key,
                    params_hash=j.params_hash,
                    state="PENDING",
                    task_id=None,
                    attempts=0,
                    description=j.description,
                    output_uri=j.output_uri,
                    error=None,
                )
        self.db.commit()


@dataclass
class SubmitReport:
    """Counts from one :func:`submit` call."""

    started: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)


def submit(table: JobTable, jobs: list[JobSpec], runner: TaskRunner, max_attempts: int = 3) -> SubmitReport:
    """Start every job that is not already live or done (see the module docstring)."""
    table.register(jobs)
    rep = SubmitReport()
    for j in jobs:
        r = table.row(j.key)
        assert r is not None
        if r["state"] == "SUBMITTING":
            found = runner.find(j.description)
            if found:
                table._set(j.key, task_id=found, state="READY")
                rep.recovered.append(j.key)
                continue
        elif r["state"] in ACTIVE:
            rep.skipped.append(j.key)
            continue
        if r["state"] in RETRYABLE and r["attempts"] >= max_attempts:
            rep.gave_up.append(j.key)
            continue
        table._set(j.key, state="SUBMITTING", attempts=r["attempts"] + 1)
        try:
            task_id = runner.start(j.key, j.build())
        except Exception as e:  # recorded per task; the other tasks go on
            table._set(j.key, state="FAILED", error=str(e)[:500])
            continue
        table._set(j.key, task_id=task_id, state="READY", error=None)
        rep.started.append(j.key)
    return rep


def poll(table: JobTable, runner: TaskRunner) -> dict[str, int]:
    """Refresh the state of every task with an id; return counts per state."""
    counts: dict[str, int] = {}
    for r in table.rows():
        state = r["state"]
        if r["task_id"] and state not in ("COMPLETED",):
            state = runner.state(r["task_id"])
            table._set(r["key"], state=state)
        counts[state] = counts.get(state, 0) + 1
    return counts


class EETaskRunner:
    """Runs tasks on Earth Engine: ``task.start()`` with exponential back-off on errors
    (``retries`` attempts, ``base_delay_s`` · 2^k), ``ee.data.getTaskStatus`` for states and
    ``ee.data.getTaskList`` to find a task by description.
    """

    def __init__(
        self, retries: int = 4, base_delay_s: float = 2.0, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.retries, self.base_delay_s, self.sleep = retries, base_delay_s, sleep

    def start(self, key: str, task: Any) -> str:
        """Start the task, retrying transient errors; return its id."""
        for k in range(self.retries):
            try:
                task.start()
                return str(task.id)
            except Exception:
                if k == self.retries - 1:
                    raise
                self.sleep(self.base_delay_s * 2**k)
        raise RuntimeError("unreachable")

    def state(self, task_id: str) -> str:
        """The task's state from Earth Engine."""
        import ee

        return str(ee.data.getTaskStatus([task_id])[0]["state"])

    def find(self, description: str) -> str | None:
        """A live task with this description, from Earth Engine's operations list."""
        import ee

        for op in ee.data.listOperations():
            meta = op.get("metadata", {})
            if meta.get("description") == description and meta.get("state") not in (*RETRYABLE, "CANCELLING"):
                return str(op["name"]).rsplit("/", 1)[-1]
        return None


class FakeTaskRunner:
    """A TaskRunner for tests: records every started task's graph and scripts its states.

    Args:
        script: key → states returned by successive :meth:`state` calls (last one repeats).
        fail_starts: key → how many times :meth:`start` raises before it succeeds.
        crash_after: raise ``KeyboardInterrupt`` after this many successful starts, *after*
            the server accepted the task and before its id is returned (the worst moment).
    """

    def __init__(
        self,
        script: dict[str, list[str]] | None = None,
        fail_starts: dict[str, int] | None = None,
        crash_after: int | None = None,
    ) -> None:

        self._graph = task_graph
        self.script = script or {}
        self.fail_starts = dict(fail_starts or {})
        self.crash_after = crash_after
        self.started: dict[str, dict[str, Any]] = {}  # task id -> graph
        self.keys: dict[str, str] = {}  # task id -> key
        self.descriptions: dict[str, str] = {}
        self._calls: dict[str, int] = {}

    def start(self, key: str, task: Any) -> str:
        """Record the task; maybe fail or crash as scripted."""
        if self.fail_starts.get(key, 0) > 0:
            self.fail_starts[key] -= 1
            raise RuntimeError(f"scripted start failure for {key}")
        task_id = f"FAKE{len(self.started):04d}"
        self.started[task_id] = self._graph(task)
        self.keys[task_id] = key
        self.descriptions[task_id] = str(task.config["description"])
        if self.crash_after is not None and len(self.started) >= self.crash_after:
            self.crash_after = None
            raise KeyboardInterrupt("scripted crash after the server accepted the task")
        return task_id

    def state(self, task_id: str) -> str:
        """The next scripted state for the task's key (default COMPLETED)."""
        key = self.keys[task_id]
        seq = self.script.get(key, ["COMPLETED"])
        i = self._calls.get(task_id, 0)
        self._calls[task_id] = i + 1
        return seq[min(i, len(seq) - 1)]

    def find(self, description: str) -> str | None:
        """The id of a recorded task with this description."""
        return next((i for i, d in self.descriptions.items() if d == description), None)
