"""The table stage: GEE ``sampleRegions`` exports (or ``eulc sample`` output) → a FeatureTable
(GeoParquet), skipped when the same exports and spec already made the table on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd

from pipeline.core.atomic import remove_leftovers
from pipeline.core.ledger import JsonLedger, Ledger, input_key
from pipeline.core.spec import load_spec
from pipeline.stages.events import Event, ignore
from pipeline.table import build_feature_table, check_table_dest, read_feature_table, write_feature_table

TABLE_LEDGER = ".eulc-table.json"
"""The ledger beside a table (one entry per table file in that folder)."""


@dataclass(frozen=True)
class TableRequest:
    """Which exports, with which spec, into which file.

    Attributes:
        exports: CSV exports (``.csv`` or ``.csv.gz``; several shards are concatenated).
        out: the FeatureTable (``.parquet``); its folder keeps the ledger ``.eulc-table.json``.
        spec: the feature spec the exports were made with (name or YAML path).
        lucas: a LUCAS point CSV with LC1/LU1 when the exports lack them.
        year: the survey year (default: the spec's).
    """

    exports: tuple[Path, ...]
    out: Path
    spec: str = "elc10"
    lucas: Path | None = None
    year: int | None = None


@dataclass
class TableResult:
    """The table written (or found current), with the build report's lines."""

    path: Path
    up_to_date: bool
    lines: list[str] = field(default_factory=list)

    def read(self) -> gpd.GeoDataFrame:
        """The table (EPSG:4326 points, lon/lat), its provenance in ``attrs['eulc']``."""
        table, meta = read_feature_table(self.path)
        table.attrs["eulc"] = meta
        return table


def file_key(path: Path) -> str:
    """An input file's part of a ledger key (path, size, mtime); a missing file's path (the stage
    then names it in its own error).
    """
    return input_key(path) if path.is_file() else f"missing:{path}"


def build_table(req: TableRequest, on_event: Event = ignore, ledger: Ledger | None = None) -> TableResult:
    """Build the FeatureTable, or report it current (same exports by path, size and mtime, same
    spec digest, LUCAS file and year, and the table file as written: :mod:`pipeline.core.ledger`).

    Args:
        req: the request.
        on_event: progress callback.
        ledger: the ledger to record the table in (default: ``.eulc-table.json`` beside it; the
            demo passes its own).

    Raises:
        SchemaError: a missing column or feature, no labelled row, a CSV cut mid-row; ``out``
            taken by a file eulc did not write.
        SpecError: an unknown spec.
    """
    out = Path(req.out)
    check_table_dest(out)  # before reading anything
    remove_leftovers(out.parent)  # temporaries of killed eulc runs beside it, even when it is current
    spec = load_spec(req.spec)
    key = input_key(
        "table",
        [file_key(Path(e)) for e in req.exports],
        spec.digest(),
        file_key(Path(req.lucas)) if req.lucas else None,
        req.year,
    )
    ledger = ledger or JsonLedger(out.parent, TABLE_LEDGER)
    entry = ledger.entry(out.name)
    if ledger.current(out.name, key):
        on_event("step", {"step": "table", "message": f"up to date: {out}"})
        return TableResult(out, True, list((entry.info if entry else None) or []))
    on_event("status", {"message": "building the training table"})
    gdf, rep = build_feature_table(
        [Path(e) for e in req.exports], spec, Path(req.lucas) if req.lucas else None, req.year
    )
    write_feature_table(gdf, out)
    ledger.finish(out.name, key, [out], rep.lines())
    return TableResult(out, False, rep.lines())
