"""The run manifest of ``eulc map``: one SQLite row per tile (DESIGN.md §2 "Manifest").

Each row holds the tile id, the hash of its inputs (feature file content, cell, model hashes,
output options), its status (``done``/``failed``/``running``), the outputs with their SHA-256,
the error message of a failed tile, timings and pixel counts. Only the client process writes
it, one transaction per tile, so a run killed at any point leaves a consistent table (SQLite's
journal): a rerun skips the tiles that are ``done`` with an unchanged inputs hash and whose
outputs still exist with the recorded checksums, and redoes the rest.

It is the SQLite backend of :class:`pipeline.core.ledger.Ledger`: "is this tile current" is
:func:`pipeline.core.ledger.is_current`, the rule every resuming stage uses.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.atomic import refuse_link
from pipeline.core.errors import EulcError
from pipeline.core.ledger import DONE, FAILED, Entry, is_current, output_sums

SCHEMA = """
CREATE TABLE IF NOT EXISTS tiles (
    tile_id TEXT PRIMARY KEY,
    inputs_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    features_file TEXT,
    outputs TEXT,
    error TEXT,
    started REAL,
    finished REAL,
    seconds REAL,
    n_pixels INTEGER,
    n_nodata INTEGER,
    worker TEXT,
    ood_share REAL
)
"""


@dataclass(frozen=True)
class TileRow:
    """One manifest row. ``outputs`` maps each output file name to its SHA-256."""

    tile_id: str
    inputs_hash: str
    status: str
    features_file: str | None
    outputs: dict[str, str]
    error: str | None
    seconds: float | None
    n_pixels: int | None
    n_nodata: int | None
    ood_share: float | None = None


class Manifest:
    """The SQLite manifest at ``path`` (created if missing); output names are relative to its
    folder (:attr:`root`).

    Raises:
        EulcError: the file (or its ``-wal``/``-shm``/``-journal`` sidecar) is a symbolic link, or the
            file exists but is not an eulc manifest database (corrupt, or another program's).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.root = self.path.parent
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for p in (self.path, *(self.path.with_name(self.path.name + s) for s in ("-wal", "-shm", "-journal"))):
            refuse_link(p)  # sqlite would follow it and alter the file it points to
        if self.path.exists() and not self.path.is_file():
            raise EulcError("is not a manifest database file", "Move it away or choose another `out`", path=self.path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            try:
                tables = {
                    r[0]
                    for r in self._db.execute(
                        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
                    )
                }
                if tables - {"tiles"}:
                    raise EulcError(
                        f"is an SQLite database with other tables ({', '.join(sorted(tables)[:3])}), "
                        "not eulc's map manifest",
                        "Move it away or choose another `out`",
                        path=self.path,
                    )
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute(SCHEMA)
                cols = {r[1] for r in self._db.execute("PRAGMA table_info(tiles)")}
                missing = {"tile_id", "inputs_hash", "status", "outputs"} - cols
                if missing:
                    raise EulcError(
                        f"has a `tiles` table without {', '.join(sorted(missing))}: not eulc's map manifest",
                        "Move it away or choose another `out`",
                        path=self.path,
                    )
                if "ood_share" not in cols:  # a manifest of an eulc before the OOD layer (issue #18)
                    self._db.execute("ALTER TABLE tiles ADD COLUMN ood_share REAL")
            except BaseException:
                self._db.close()
                raise
        except sqlite3.DatabaseError as e:
            raise EulcError(
                f"is not a readable SQLite manifest ({e})",
                "Move the damaged file away and rerun (finished tiles are then checked again)",
                path=self.path,
            ) from None

    def _execute(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """One statement and its rows; a damaged database ends in an EulcError naming the file."""
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as e:
            raise EulcError(
                f"is not a readable SQLite manifest ({e})",
                "Move the damaged file away and rerun (finished tiles are then checked again)",
                path=self.path,
            ) from None

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def get(self, tile_id: str) -> TileRow | None:
        """The row of ``tile_id``, or None."""
        cur = self._execute(
            "SELECT tile_id, inputs_hash, status, features_file, outputs, error, seconds, n_pixels, n_nodata, "
            "ood_share FROM tiles WHERE tile_id = ?",
            (tile_id,),
        )
        if not cur:
            return None
        r = cur[0]
        try:
            outputs = json.loads(r[4] or "{}")
        except (TypeError, ValueError):
            outputs = None
        if not isinstance(outputs, dict):  # a damaged row: its tile is simply not current
            outputs = {}
        return TileRow(r[0], r[1], r[2], r[3], outputs, r[5], r[6], r[7], r[8], r[9])

    def rows(self) -> list[TileRow]:
        """Every row, sorted by tile id."""
        ids = [r[0] for r in self._execute("SELECT tile_id FROM tiles ORDER BY tile_id")]
        return [row for i in ids if (row := self.get(i)) is not None]

    def entry(self, tile_id: str) -> Entry | None:
        """The tile's row as a ledger :class:`~pipeline.core.ledger.Entry`."""
        row = self.get(tile_id)
        return None if row is None else Entry(row.tile_id, row.inputs_hash, row.status, row.outputs, row.error)

    def current(self, tile_id: str, inputs_hash: str) -> bool:
        """True if the tile is ``done`` for these inputs and every output file is present with
        its recorded SHA-256 (:func:`pipeline.core.ledger.is_current`).
        """
        return is_current(self.entry(tile_id), inputs_hash, self.root)

    def start(self, name: str, key: str) -> None:
        """Ledger protocol: record that work on tile ``name`` began."""
        self.begin(name, key, None)

    def finish(self, name: str, key: str, outputs: list[Path] | Mapping[str, str], info: Any = None) -> None:
        """Ledger protocol: record tile ``name`` as done with these outputs (``info``: ignored)."""
        self.begin(name, key, None)
        self.record(name, {"status": DONE, "outputs": output_sums(self.root, outputs)})

    def fail(self, name: str, key: str, error: str) -> None:
        """Ledger protocol: record tile ``name`` as failed with its one-line reason."""
        self.begin(name, key, None)
        self.record(name, {"status": FAILED, "error": error})

    def begin(self, tile_id: str, inputs_hash: str, features_file: str | None) -> None:
        """Record that the tile was handed to a worker, reading ``features_file``."""
        self._execute(
            "INSERT INTO tiles (tile_id, inputs_hash, status, features_file, started) VALUES (?, ?, 'running', ?, ?) "
            "ON CONFLICT(tile_id) DO UPDATE SET inputs_hash=excluded.inputs_hash, status='running', "
            "features_file=excluded.features_file, started=excluded.started, error=NULL, finished=NULL",
            (tile_id, inputs_hash, features_file, time.time()),
        )

    def record(self, tile_id: str, result: dict[str, Any]) -> None:
        """Record a worker's result: ``status``, ``outputs`` (name → SHA-256), ``error``,
        ``seconds``, ``n_pixels``, ``n_nodata``, ``worker`` and, with the OOD layer, ``ood_share``
        (share of the mapped pixels flagged out of distribution); an ``inputs_hash`` in the result
        replaces the one recorded at start (a tile whose features its worker computed first).
        """
        if result.get("inputs_hash"):
            self._execute("UPDATE tiles SET inputs_hash=? WHERE tile_id=?", (result["inputs_hash"], tile_id))
        self._execute(
            "UPDATE tiles SET status=?, outputs=?, error=?, finished=?, seconds=?, n_pixels=?, n_nodata=?, worker=?, "
            "ood_share=? WHERE tile_id=?",
            (
                result["status"],
                json.dumps(result.get("outputs", {}), sort_keys=True),
                result.get("error"),
                time.time(),
                result.get("seconds"),
                result.get("n_pixels"),
                result.get("n_nodata"),
                result.get("worker"),
                result.get("ood_share"),
                tile_id,
            ),
        )
