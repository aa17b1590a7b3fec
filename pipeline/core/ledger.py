"""The ledger of what is current: one rule, one small protocol, two backends.

**The rule** (:func:`is_current`): an output named ``name`` is current when its ledger entry says
``done`` with the same input key and every file it lists is still there with its recorded SHA-256
(a truncated, edited or deleted output is redone). Every stage that resumes asks this, and only
this: ``eulc features`` (per tile), ``eulc map`` (per tile), ``eulc table``, ``eulc train`` and
the demo's steps.

**The protocol** (:class:`Ledger`): ``entry(name)``, ``current(name, key)``, ``start(name, key)``,
``finish(name, key, outputs, info)`` and ``fail(name, key, error)``. Only the process that
orchestrates a run writes its ledger (workers return results), one atomic write or one SQLite
transaction per entry, so a ``kill -9`` at any moment leaves a ledger that is either before or
after an entry, never between.

**The backends**:

- :class:`JsonLedger`: a small JSON file (``.eulc-steps.json`` of the demo, ``.eulc-features.json``
  of a feature folder, ``.eulc-table.json`` beside a table, ``.eulc-train.json`` in a bundle),
  rewritten atomically after each entry;
- :class:`tiles.mapping.manifest.Manifest`: the map run's ``manifest.sqlite``, one row per tile
  with its timings and pixel counts besides the rule's fields.

The GEE job table (remote tasks) and the evaluation runs CSV (results keyed by settings) are
other kinds of state and do not use this (``docs/architecture.md``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipeline.core.atomic import WRITTEN, open_no_follow, refuse_link, remove_leftovers, write_json
from pipeline.core.errors import EulcError
from pipeline.core.hashing import file_sha256

DONE, FAILED, RUNNING = "done", "failed", "running"


def input_key(*parts: Any) -> str:
    """A stable SHA-256 (first 16 hex digits) of JSON-able ``parts``; a :class:`~pathlib.Path`
    counts by its resolved path, size and modification time (whole seconds).

    Raises:
        FileNotFoundError: a Path part that does not exist.
    """
    norm = []
    for p in parts:
        if isinstance(p, Path):
            st = p.stat()
            norm.append([str(p.resolve()), st.st_size, int(st.st_mtime)])
        else:
            norm.append(p)
    return hashlib.sha256(json.dumps(norm, sort_keys=True, default=str).encode()).hexdigest()[:16]


def content_sha256(path: Path) -> str | None:
    """SHA-256 (hex) of a file, or of a folder's files (relative names and contents, sorted);
    None when ``path`` is missing.
    """
    if path.is_file():
        return file_sha256(path)
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(f"{p.relative_to(path)}:{file_sha256(p)}\n".encode())
        return h.hexdigest()
    return None


@dataclass(frozen=True)
class Entry:
    """One ledger entry.

    Attributes:
        name: what the entry is about (a tile id, an output file name, a step).
        key: the input key the outputs were made from.
        status: ``done``, ``failed`` or ``running`` (started, no result recorded: a killed run).
        outputs: output name (relative to the ledger's root) → SHA-256 hex.
        error: the one-line reason of a failed entry.
        info: anything JSON-able the stage keeps with the entry (metrics, a report's lines).
    """

    name: str
    key: str
    status: str
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    info: Any = None


def outputs_intact(root: Path, outputs: Mapping[str, str]) -> bool:
    """True when every output (name relative to ``root`` → SHA-256) exists with that SHA-256."""
    return all(content_sha256(root / name) == sha for name, sha in outputs.items())


def is_current(entry: Entry | None, key: str, root: Path) -> bool:
    """**The** rule: ``entry`` is done, with input key ``key``, lists outputs, and every one of them
    is intact under ``root`` (:func:`outputs_intact`).
    """
    return (
        entry is not None
        and entry.status == DONE
        and entry.key == key
        and bool(entry.outputs)
        and outputs_intact(root, entry.outputs)
    )


def output_sums(root: Path, outputs: list[Path] | Mapping[str, str]) -> dict[str, str]:
    """``outputs`` as name (relative to ``root`` when inside it) → SHA-256; a mapping is taken as
    already hashed by whoever wrote the files (a worker).

    Raises:
        FileNotFoundError: a listed output that does not exist.
    """
    if isinstance(outputs, Mapping):
        return dict(outputs)
    sums: dict[str, str] = {}
    for o in outputs:
        sha = content_sha256(Path(o))
        if sha is None:
            raise FileNotFoundError(o)
        sums[relative_name(root, Path(o))] = sha
    return sums


def relative_name(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` when inside it (the folder may move), else absolute."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


class Ledger(Protocol):
    """What every resume store offers (:class:`JsonLedger`, the map manifest)."""

    root: Path
    """The folder output names are relative to."""

    def entry(self, name: str) -> Entry | None:
        """The entry of ``name``, or None."""
        ...

    def current(self, name: str, key: str) -> bool:
        """:func:`is_current` for ``name``."""
        ...

    def start(self, name: str, key: str) -> None:
        """Record that work on ``name`` began (status ``running``)."""
        ...

    def finish(self, name: str, key: str, outputs: list[Path] | Mapping[str, str], info: Any = None) -> None:
        """Record ``name`` as done with these outputs (their SHA-256 taken now unless given)."""
        ...

    def fail(self, name: str, key: str, error: str) -> None:
        """Record ``name`` as failed with its one-line reason."""
        ...


class JsonLedger:
    """A ledger in one JSON file (``root/<file_name>``), rewritten atomically after each entry.

    A damaged file (not JSON, or not a ledger) counts as empty: every entry is redone, and the
    next entry replaces the file. Entries hold no timestamps, so two runs of the same work
    write byte-identical ledgers.

    Args:
        root: the folder the outputs' names are relative to (and the file lies in).
        file_name: the ledger's file name.
    """

    def __init__(self, root: Path, file_name: str = ".eulc-steps.json") -> None:
        self.root = Path(root)
        self.path = self.root / file_name
        self._entries: dict[str, dict[str, Any]] = {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
            if isinstance(raw, dict) and all(isinstance(v, dict) for v in raw.values()):
                self._entries = raw
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            self._entries = {}

    def entry(self, name: str) -> Entry | None:
        """The entry of ``name``, or None."""
        rec = self._entries.get(name)
        if rec is None:
            return None
        sums = rec.get("sha256") or {}
        return Entry(
            name,
            str(rec.get("key", "")),
            str(rec.get("status", DONE)),
            {str(k): str(v) for k, v in sums.items()} if isinstance(sums, dict) else {},
            rec.get("error"),
            rec.get("info"),
        )

    def current(self, name: str, key: str) -> bool:
        """:func:`is_current` for ``name``."""
        return is_current(self.entry(name), key, self.root)

    def info(self, name: str) -> Any:
        """The ``info`` recorded with ``name`` (None if none)."""
        e = self.entry(name)
        return None if e is None else e.info

    def entries(self) -> list[Entry]:
        """Every entry, sorted by name."""
        return [e for n in sorted(self._entries) if (e := self.entry(n)) is not None]

    def start(self, name: str, key: str) -> None:
        """Record ``name`` as running (a kill leaves it so; the next run redoes it)."""
        self._entries[name] = {"key": key, "status": RUNNING}
        self._save()

    def finish(self, name: str, key: str, outputs: list[Path] | Mapping[str, str], info: Any = None) -> None:
        """Record ``name`` as done, with each output's SHA-256."""
        sums = output_sums(self.root, outputs)
        self._entries[name] = {"key": key, "status": DONE, "outputs": sorted(sums), "sha256": sums, "info": info}
        self._save()

    def fail(self, name: str, key: str, error: str) -> None:
        """Record ``name`` as failed with ``error``."""
        self._entries[name] = {"key": key, "status": FAILED, "error": error}
        self._save()

    def _save(self) -> None:
        write_json(self.path, dict(sorted(self._entries.items())))


OUT_LOCK = ".eulc.lock"
"""The lock file of the commands that write one folder or file (report, evaluate, agreement,
sample, select, drift, ood); ``eulc map`` and ``eulc features`` keep their own names."""


def out_lock(out: str | Path, command: str, is_file: bool = False) -> contextlib.AbstractContextManager[None]:
    """:func:`folder_lock` on the folder a command writes: ``out`` itself, or its parent for a file
    output (``is_file``), with :data:`OUT_LOCK`; dead runs' temporaries there are removed.

    Raises:
        EulcError: another eulc run is writing there, or the lock is a link.
    """
    folder = Path(out).parent if is_file else Path(out)
    return folder_lock(folder, OUT_LOCK, command)


@contextlib.contextmanager
def folder_lock(folder: Path, lock_name: str, command: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` for ``command`` (``lock_name`` inside it); remove the
    temporaries killed runs left there (every host's: the lock proves none is writing).

    Raises:
        EulcError: another run holds the folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    refuse_link(folder / WRITTEN)  # before anything is written there, not after the first output
    fd = open_no_follow(folder / lock_name, os.O_WRONLY | os.O_CREAT)  # never through a link, never truncated
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EulcError(
                f"another `{command}` is writing to {folder}", "Wait for it to finish, or write somewhere else"
            ) from None
        remove_leftovers(folder, all_hosts=True)  # eulc's own temporaries only (pipeline.core.atomic)
        yield
    finally:
        os.close(fd)
