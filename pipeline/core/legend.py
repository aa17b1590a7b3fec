"""Legends (Level-1, Level-2) and crosswalks from source codes to them.

Data files in ``pipeline/legends/``:

- ``level1.csv``: the paper's 7 Level-1 classes (Ghassemi et al. 2025, Table 1) with colours.
- ``level2.csv``: the 19 Level-2 crop classes (Table 2), following the JRC EU crop map 2018
  legend (d'Andrimont et al. 2021; SOURCES.md §4) for the LUCAS LC1 codes behind each class.
- ``lucas_lc1.csv``: every LUCAS LC1 code → Level-1 / Level-2, with the LU1-dependent rule
  (``*_agri`` columns apply when LU1 is U111–U113, agriculture) and a note per exception.
  An empty Level-1 means the code is dropped on purpose.
- ``elc10.csv``: ELC10's 8 ``LC_num`` classes → Level-1.
- ``eolearn_lulc.csv``: the eo-learn LULC enum (Slovenia reference) → Level-1.

Nothing is silently lost: every mapping returns a :class:`MappingReport` that counts the
codes that were unknown (not in the table) and those dropped on purpose.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd

from pipeline.core.errors import SchemaError, SpecError

AGRI_LU1 = frozenset({"U111", "U112", "U113"})
"""LUCAS LU1 codes of agricultural use (EU crop map legend's U1 group)."""


@dataclass(frozen=True)
class LegendClass:
    """One class: integer id, name and ``#rrggbb`` colour."""

    id: int
    name: str
    colour: str

    @property
    def rgba(self) -> tuple[int, int, int, int]:
        """The colour as an (R, G, B, 255) tuple of 0–255 ints, for GeoTIFF colormaps."""
        h = self.colour.lstrip("#")
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255)


@dataclass(frozen=True)
class Legend:
    """An ordered class list for one level (``level1`` or ``level2``)."""

    level: str
    classes: tuple[LegendClass, ...]

    @property
    def names(self) -> list[str]:
        """Class names in id order."""
        return [c.name for c in self.classes]

    def __len__(self) -> int:
        return len(self.classes)

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """``{id: (R, G, B, A)}`` for rasterio's ``write_colormap``."""
        return {c.id: c.rgba for c in self.classes}

    def to_json(self) -> list[dict[str, object]]:
        """The classes as a JSON-able list of ``{id, name, colour}``."""
        return [{"id": c.id, "name": c.name, "colour": c.colour} for c in self.classes]

    @classmethod
    def from_json(cls, level: str, items: list[dict[str, object]]) -> Legend:
        """Inverse of :meth:`to_json`."""
        return cls(level, tuple(LegendClass(int(str(i["id"])), str(i["name"]), str(i["colour"])) for i in items))


def code_key(code: object) -> str:
    """A source code as the crosswalk tables spell it: its text, without the ``.0`` a float
    raster or a float column gives whole codes (``211.0`` → ``211``).
    """
    text = str(code)
    return text[:-2] if text.endswith(".0") else text


@dataclass
class MappingReport:
    """What a crosswalk did: rows mapped, codes dropped on purpose, codes unknown.

    Attributes:
        source: what was mapped (e.g. ``LUCAS LC1``).
        n_in: rows in.
        n_mapped: rows that got a class.
        dropped: code → row count, for codes the legend drops on purpose.
        unknown: code → row count, for codes absent from the crosswalk table.
        missing: rows whose code was empty/NaN.
    """

    source: str
    n_in: int = 0
    n_mapped: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)
    missing: int = 0

    def summary(self) -> str:
        """A one-paragraph human summary."""
        parts = [f"{self.source}: {self.n_mapped:,} of {self.n_in:,} rows mapped"]
        if self.dropped:
            parts.append(
                f"dropped on purpose {sum(self.dropped.values()):,} "
                f"({', '.join(f'{k}: {v}' for k, v in self.dropped.most_common(8))})"
            )
        if self.unknown:
            parts.append(
                f"UNKNOWN codes {sum(self.unknown.values()):,} "
                f"({', '.join(f'{k}: {v}' for k, v in self.unknown.most_common(8))})"
            )
        if self.missing:
            parts.append(f"empty codes {self.missing:,}")
        return "; ".join(parts)

    def to_json(self) -> dict[str, object]:
        """The report as a JSON-able dict."""
        return {
            "source": self.source,
            "n_in": self.n_in,
            "n_mapped": self.n_mapped,
            "dropped": dict(self.dropped),
            "unknown": dict(self.unknown),
            "missing": self.missing,
        }


def _read_csv(name: str) -> pd.DataFrame:
    with (resources.files("pipeline") / "legends" / name).open("r", encoding="utf-8") as f:
        return pd.read_csv(f, dtype=str, keep_default_na=False)


def _legend(level: str, name: str) -> Legend:
    rows = _read_csv(name).to_dict("records")
    return Legend(level, tuple(LegendClass(int(str(r["id"])), str(r["name"]), str(r["colour"])) for r in rows))


@cache
def level1_legend() -> Legend:
    """The 7 Level-1 classes of the paper's Table 1 (ids 0–6)."""
    return _legend("level1", "level1.csv")


@cache
def level2_legend() -> Legend:
    """The 19 Level-2 crop classes of the paper's Table 2 (ids 0–18)."""
    return _legend("level2", "level2.csv")


def legend_for(level: str) -> Legend:
    """``level1`` or ``level2`` → its legend; raises :class:`SchemaError` otherwise."""
    if level == "level1":
        return level1_legend()
    if level == "level2":
        return level2_legend()
    raise SchemaError(f"unknown legend level {level!r}", "Use 'level1' or 'level2'")


def _as_int(s: str) -> int | None:
    return int(s) if s != "" else None


CROSSWALKS = ("clcplus_backbone", "corine_l3", "osm_clcplus", "eucropmap", "eolearn_lulc", "elc10", "eulc_level1")
"""The shipped crosswalks (``pipeline/legends/<name>.csv``)."""


class Crosswalk:
    """A table ``source_code → Level-1 id`` (and optionally Level-2 id) read from a legend CSV
    with columns ``source_code, source_name, level1[, level2], note``; an empty ``level1``
    means dropped on purpose (nodata, outside, unspecified), and the note says why.
    """

    def __init__(self, name: str, table: pd.DataFrame) -> None:
        self.name = name
        self.table = table
        self.mapping: dict[str, int | None] = {
            str(r["source_code"]): _as_int(str(r["level1"])) for r in table.to_dict("records")
        }
        self.mapping2: dict[str, int | None] = (
            {str(r["source_code"]): _as_int(str(r["level2"])) for r in table.to_dict("records")}
            if "level2" in table.columns
            else {}
        )

    @classmethod
    def shipped(cls, name: str) -> Crosswalk:
        """Load ``pipeline/legends/<name>.csv`` (one of :data:`CROSSWALKS`).

        Raises:
            SpecError: an unknown name (the message lists the shipped ones).
        """
        if name not in CROSSWALKS:
            raise SpecError(f"unknown crosswalk {name!r}", f"Use one of {', '.join(CROSSWALKS)}")
        return cls(name, _read_csv(f"{name}.csv"))

    def apply(
        self, codes: pd.Series | np.ndarray, level: str = "level1", counts: np.ndarray | None = None
    ) -> tuple[np.ndarray, MappingReport]:
        """Map codes to Level-1 (or, for crosswalks with a ``level2`` column, Level-2) ids.

        Args:
            codes: any-shape array or Series of source codes (ints or strings).
            level: ``level1`` or ``level2``.
            counts: how many rows (pixels) each element of ``codes`` stands for, same shape
                (default 1 each): a raster's code histogram gets a report in pixels without
                converting every pixel.

        Returns:
            ``(ids, report)``: int16 array of the same shape, -1 where unmapped, and the report
            (codes unknown to the table, dropped on purpose, missing).
        """
        mapping = self.mapping2 if level == "level2" else self.mapping
        arr = np.asarray(codes)
        flat = arr.ravel()
        uniq, inv = np.unique(flat.astype(str), return_inverse=True)
        lut = np.full(len(uniq), -1, dtype=np.int16)
        weights = None if counts is None else np.asarray(counts, np.int64).ravel()
        rep = MappingReport(self.name, n_in=flat.size if weights is None else int(weights.sum()))
        per_code = np.bincount(inv, weights=weights, minlength=len(uniq)).astype(np.int64)
        for i, u in enumerate(uniq):
            key = code_key(u)
            if key in ("nan", "", "None", "<NA>"):
                rep.missing += int(per_code[i])
            elif key not in self.mapping:
                rep.unknown[key] += int(per_code[i])
            elif mapping.get(key) is None:
                rep.dropped[key] += int(per_code[i])
            else:
                lut[i] = int(mapping[key] or 0)
        out = lut[inv].reshape(arr.shape)
        rep.n_mapped = int((out >= 0).sum()) if weights is None else int(weights[out.ravel() >= 0].sum())
        return out, rep


@cache
def _lucas_table() -> pd.DataFrame:
    return _read_csv("lucas_lc1.csv").set_index("lc1")


def lucas_to_levels(lc1: pd.Series, lu1: pd.Series | None = None) -> tuple[pd.Series, pd.Series, MappingReport]:
    """Map LUCAS LC1 (+ LU1) codes to Level-1 and Level-2 ids.

    Rules (``lucas_lc1.csv``; EU crop map legend, SOURCES.md §4): crop codes B11–B54 give
    Cropland plus their Level-2 crop; B55 → Grassland; B7x/B8x → Woodland/Shrubland;
    F40 under agricultural LU1 (U111–U113) → Cropland / Bare arable land; A30 and Bx1/Bx2
    are dropped and counted.

    Args:
        lc1: LC1 codes such as ``B11`` (length N).
        lu1: LU1 codes such as ``U111`` (length N), or None when unknown.

    Returns:
        ``(level1, level2, report)``: nullable ``Int8`` Series (index of ``lc1``); Level-2 is
        NA outside cropland.
    """
    tab = _lucas_table()
    codes = lc1.astype("string").str.strip()
    agri = (
        lu1.astype("string").str.strip().str.upper().isin(AGRI_LU1)
        if lu1 is not None
        else pd.Series(False, index=lc1.index)
    )
    agri = agri.fillna(False).astype(bool)
    rep = MappingReport("LUCAS LC1+LU1", n_in=len(codes))
    l1 = pd.Series(pd.NA, index=lc1.index, dtype="Int8")
    l2 = pd.Series(pd.NA, index=lc1.index, dtype="Int8")
    rep.missing = int(codes.isna().sum() + (codes == "").sum())
    known = codes.isin(tab.index)
    for c, n in codes[~known & codes.notna() & (codes != "")].value_counts().items():
        rep.unknown[str(c)] += int(n)
    for col1, col2, sel in (("level1", "level2", known & ~agri), ("level1_agri", "level2_agri", known & agri)):
        if not sel.any():
            continue
        rows = tab.reindex(codes[sel].to_numpy())
        a = rows[col1].to_numpy()
        b = rows[col2].to_numpy()
        if col1 == "level1_agri":  # fall back to the non-agricultural rule where no override
            base1 = rows["level1"].to_numpy()
            base2 = rows["level2"].to_numpy()
            over = a != ""
            a = np.where(over, a, base1)
            b = np.where(over, b, base2)
        l1[sel] = pd.array([int(x) if x != "" else pd.NA for x in a], dtype="Int8")
        l2[sel] = pd.array([int(x) if x != "" else pd.NA for x in b], dtype="Int8")
    dropped = known & l1.isna()
    for c, n in codes[dropped].value_counts().items():
        rep.dropped[str(c)] += int(n)
    rep.n_mapped = int(l1.notna().sum())
    return l1, l2, rep
