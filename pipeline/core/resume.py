"""Resume support: a JSON log of finished steps, their input keys and their outputs' SHA-256.

A step is skipped only when the log says it finished with the same input key and every output it
listed still has the recorded SHA-256 (a truncated or edited file is redone, as the map runner's
manifest does per tile). The log is rewritten atomically after each step, so an interrupted run
resumes at the first unfinished step. Used by ``eulc demo`` (one step per stage) and
``eulc features`` (one step per feature COG).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pipeline.core.atomic import write_json
from pipeline.core.hashing import file_sha256


def input_key(*parts: Any) -> str:
    """A stable SHA-256 (first 16 hex) of JSON-able parts; files count by path, size, mtime."""
    norm = []
    for p in parts:
        if isinstance(p, Path):
            st = p.stat()
            norm.append([str(p.resolve()), st.st_size, int(st.st_mtime)])
        else:
            norm.append(p)
    return hashlib.sha256(json.dumps(norm, sort_keys=True, default=str).encode()).hexdigest()[:16]


def content_sha256(path: Path) -> str | None:
    """SHA-256 of a file, or of a folder's files (names and contents, sorted); None if missing."""
    if path.is_file():
        return file_sha256(path)
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(f"{p.relative_to(path)}:{file_sha256(p)}\n".encode())
        return h.hexdigest()
    return None


class StepLog:
    """The log of a run directory (default ``<dir>/.eulc_steps.json``)."""

    def __init__(self, run_dir: Path, name: str = ".eulc_steps.json") -> None:
        self.path = Path(run_dir) / name
        try:
            self.steps: dict[str, dict[str, Any]] = (
                json.loads(self.path.read_text()) if self.path.is_file() else {})
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.steps = {}  # a damaged log: every step is redone

    def _rel(self, o: Path) -> str:
        """An output's name as logged: relative to the run folder when inside it (the folder can move)."""
        try:
            return str(Path(o).resolve().relative_to(self.path.parent.resolve()))
        except ValueError:
            return str(Path(o).resolve())

    def _abs(self, name: str) -> Path:
        return self.path.parent / name

    def done(self, step: str, key: str) -> bool:
        """True when ``step`` finished with ``key`` and its outputs are intact (same SHA-256)."""
        rec = self.steps.get(step)
        if not rec or rec.get("key") != key:
            return False
        sums = rec.get("sha256") or {}
        return all(self._abs(o).exists() and sums.get(o) == content_sha256(self._abs(o)) for o in rec["outputs"])

    def mark(self, step: str, key: str, outputs: list[Path], info: Any = None) -> None:
        """Record ``step`` as finished, with the SHA-256 of each output."""
        names = [self._rel(o) for o in outputs]
        self.steps[step] = {"key": key, "outputs": names, "info": info,
                            "sha256": {n: content_sha256(self._abs(n)) for n in names}}
        write_json(self.path, self.steps)

    def info(self, step: str) -> Any:
        """The ``info`` recorded with ``step``."""
        return self.steps.get(step, {}).get("info")
