"""Resume support for multi-step runs: a JSON log of finished steps and their input keys.

A step is skipped when the log says it finished with the same input key and every output it
listed still exists; otherwise it runs again. The log is rewritten atomically after each step,
so an interrupted run resumes at the first unfinished step.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pipeline.core.atomic import write_json


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


class StepLog:
    """The log ``<dir>/.eulc_steps.json`` of a run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".eulc_steps.json"
        self.steps: dict[str, dict[str, Any]] = (
            json.loads(self.path.read_text()) if self.path.is_file() else {})

    def done(self, step: str, key: str) -> bool:
        """True when ``step`` finished with ``key`` and its outputs still exist."""
        rec = self.steps.get(step)
        return bool(rec and rec["key"] == key and all(Path(o).exists() for o in rec["outputs"]))

    def mark(self, step: str, key: str, outputs: list[Path], info: Any = None) -> None:
        """Record ``step`` as finished."""
        self.steps[step] = {"key": key, "outputs": [str(o) for o in outputs], "info": info}
        write_json(self.path, self.steps)

    def info(self, step: str) -> Any:
        """The ``info`` recorded with ``step``."""
        return self.steps.get(step, {}).get("info")
