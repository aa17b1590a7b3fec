"""Training tables: GEE ``sampleRegions`` CSV exports + labels + regions → FeatureTable.

The FeatureTable (DESIGN.md §2) is GeoParquet with EPSG:4326 points and the columns
``point_id, lon, lat, year, lc1, lu1, level1, level2, bioregion, eea_cell_100km``, then one
column per spec feature in spec order. Its Parquet metadata key ``eulc`` holds the spec
name and hash, the feature contract (``features_digest`` and the embedded ``feature_spec``,
:mod:`pipeline.core.contract`), the source files with their SHA-256, and the build report.

Coordinates come, in order of preference, from the export's ``.geo`` GeoJSON, from its
``lon``/``lat`` columns, or from the LUCAS ``POINT_ID`` (``EEEENNNN`` = theoretical point at
x = EEEE km, y = NNNN km in EPSG:3035; SOURCES.md conventions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyproj import Transformer

from pipeline.core.atomic import atomic_path, remove_leftovers
from pipeline.core.bioregion import assign_bioregion
from pipeline.core.contract import artifact_spec, embed, features_digest
from pipeline.core.eea import cell_codes, lucas_theoretical_xy, snap_to_lucas_grid
from pipeline.core.errors import SchemaError
from pipeline.core.hashing import file_sha256
from pipeline.core.legend import Crosswalk, MappingReport, lucas_to_levels
from pipeline.core.lucas import LAEA_BOUNDS_M, label_column
from pipeline.core.spec import FeatureSpec

BASE_COLUMNS = ["point_id", "lon", "lat", "year", "lc1", "lu1", "level1", "level2", "bioregion", "eea_cell_100km"]
META_KEY = b"eulc"


@dataclass
class TableReport:
    """What :func:`build_feature_table` read, kept and dropped, for the user and the metadata."""

    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    duplicates_identical: int = 0
    duplicates_conflicting: int = 0
    out_of_range: int = 0
    unlabelled: int = 0
    rows_written: int = 0
    coordinates_from: str = ""
    labels: dict[str, Any] = field(default_factory=dict)
    regions: dict[str, int] = field(default_factory=dict)
    missing_values: dict[str, int] = field(default_factory=dict)
    nonfinite_values: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """Human-readable report lines."""
        out = [f"read {self.rows_read:,} rows from {len(self.files)} file(s); coordinates from {self.coordinates_from}"]
        if self.duplicates_identical or self.duplicates_conflicting:
            out.append(
                f"duplicate POINT_IDs: {self.duplicates_identical:,} identical rows dropped, "
                f"{self.duplicates_conflicting:,} conflicting rows dropped (first kept)"
            )
        if self.out_of_range:
            out.append(f"{self.out_of_range:,} rows with out-of-range coordinates dropped")
        out.append(str(self.labels.get("summary", "")))
        if self.unlabelled:
            out.append(f"{self.unlabelled:,} rows without a Level-1 label dropped")
        out.append(f"bioregions: {self.regions}")
        miss = {k: v for k, v in self.missing_values.items() if v}
        if miss:
            worst = sorted(miss.items(), key=lambda kv: -kv[1])[:5]
            out.append(f"missing values in {len(miss)} feature column(s), most: {worst} (kept as NaN)")
        if self.nonfinite_values:
            out.append(
                f"non-finite values (±inf) left out as missing in {len(self.nonfinite_values)} column(s): "
                f"{sorted(self.nonfinite_values.items(), key=lambda kv: -kv[1])[:5]}"
            )
        out.append(f"wrote {self.rows_written:,} rows")
        return out


def _read_export(path: Path, needed: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise SchemaError("export file not found", "Check the path", path=path)
    if path.suffix.lower() == ".csv" and path.stat().st_size:
        with path.open("rb") as fh:
            fh.seek(-1, 2)
            if fh.read(1) not in (b"\n", b"\r"):
                raise SchemaError(
                    "ends in the middle of a row (a truncated download?)",
                    "Download or export the file again",
                    path=path,
                )
    try:
        df = pd.read_csv(path, low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, EOFError, OSError) as e:
        raise SchemaError(f"cannot be read as CSV ({e})", "Give a GEE table export (CSV)", path=path) from None
    if "POINT_ID" not in df.columns and "point_id" in df.columns:
        df = df.rename(columns={"point_id": "POINT_ID"})
    for col in ["POINT_ID", *needed]:
        if col not in df.columns:
            raise SchemaError(
                f"column {col!r} is missing",
                "Export it from GEE (the spec names it) or pass `spec` with a spec that matches this export",
                path=path,
            )
    df["_file"] = path.name
    return df


def _coordinates(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, str]:
    """Return lon, lat (degrees, EPSG:4326) per row and where they came from."""
    if ".geo" in df.columns and df[".geo"].notna().any():
        geo = df[".geo"].map(lambda s: json.loads(s)["coordinates"] if isinstance(s, str) and s else [np.nan, np.nan])
        xy = np.array(geo.tolist(), dtype=float)
        return xy[:, 0], xy[:, 1], ".geo (GeoJSON, EPSG:4326)"
    if {"lon", "lat"} <= set(df.columns):
        return (df["lon"].to_numpy(dtype=float), df["lat"].to_numpy(dtype=float), "lon/lat columns (EPSG:4326)")
    x, y = lucas_theoretical_xy(df["POINT_ID"].astype(np.int64).to_numpy())
    lon, lat = Transformer.from_crs(3035, 4326, always_xy=True).transform(x, y)
    return np.asarray(lon), np.asarray(lat), "POINT_ID theoretical location (EPSG:3035)"


def _labels(df: pd.DataFrame, lucas: pd.DataFrame | None) -> tuple[pd.DataFrame, MappingReport]:
    lc1 = pd.Series(pd.NA, index=df.index, dtype="string")
    lu1 = pd.Series(pd.NA, index=df.index, dtype="string")
    if lucas is not None:
        lc1 = df["POINT_ID"].map(lucas["lc1"]).astype("string")
        lu1 = df["POINT_ID"].map(lucas["lu1"]).astype("string")
    else:
        lc_col, lu_col = label_column(df, "LC1"), label_column(df, "LU1")
        if lc_col:
            lc1 = df[lc_col].astype("string")
        if lu_col:
            lu1 = df[lu_col].astype("string")
    out = pd.DataFrame({"lc1": lc1, "lu1": lu1}, index=df.index)
    if lc1.notna().any():
        l1, l2, rep = lucas_to_levels(lc1, lu1)
        out["level1"], out["level2"] = l1, l2
        return out, rep
    if "LC_num" in df.columns:
        ids, rep = Crosswalk.shipped("elc10").apply(df["LC_num"].to_numpy())
        out["level1"] = pd.array(np.where(ids >= 0, ids, -1), dtype="Int8")
        out.loc[out["level1"] < 0, "level1"] = pd.NA
        out["level2"] = pd.Series(pd.NA, index=df.index, dtype="Int8")
        return out, rep
    raise SchemaError(
        "the export has no label column (LC1, LUCAS_LC1 or ELC10's LC_num)",
        "Pass `lucas` FILE with POINT_ID, LC1 (or LC) and LU1 (or LU) columns",
        path=str(df["_file"].iloc[0]),
    )


def read_lucas_labels(path: Path) -> pd.DataFrame:
    """Read a LUCAS point file (CSV) into a frame indexed by POINT_ID with ``lc1``, ``lu1``.

    Accepts the LUCAS microdata names ``LC1``/``LU1`` or the topsoil names ``LC``/``LU``.

    Raises:
        SchemaError: POINT_ID or an LC1 column is missing.
    """
    df = pd.read_csv(path, dtype=str)
    cols = {c.upper(): c for c in df.columns}
    lc, lu = label_column(df, "LC1"), label_column(df, "LU1")
    if "POINT_ID" not in cols or lc is None:
        raise SchemaError("needs the columns POINT_ID and LC1 (or LC)", "Give a LUCAS point table", path=path)
    out = pd.DataFrame({"lc1": df[lc], "lu1": df[lu] if lu else pd.NA})
    out.index = df[cols["POINT_ID"]].astype(np.int64)
    return out[~out.index.duplicated()]


def build_feature_table(
    exports: list[Path],
    spec: FeatureSpec,
    lucas_file: Path | None = None,
    year: int | None = None,
    cells_csv: Path | None = None,
) -> tuple[gpd.GeoDataFrame, TableReport]:
    """Turn GEE ``sampleRegions`` CSV exports (one file or many shards) into a FeatureTable.

    Args:
        exports: CSV paths; each must have ``POINT_ID`` and every feature of ``spec``.
        spec: the feature spec the export was made with (its names are the columns).
        lucas_file: optional LUCAS point file for LC1/LU1 labels (else the export's own
            ``LC1``/``LU1`` columns, else ELC10's ``LC_num``).
        year: the survey/map year (default: ``spec.year``).
        cells_csv: the EEA 10 km region table (default: the one shipped in the package).

    Returns:
        ``(table, report)``: a GeoDataFrame of EPSG:4326 points with :data:`BASE_COLUMNS`
        plus the feature columns (float32, stored units of the spec), and the report.

    Raises:
        SchemaError: a file is unreadable or lacks a required column (the message names both).
    """
    rep = TableReport()
    frames = [_read_export(Path(p), spec.names) for p in exports]
    rep.files = [str(p) for p in exports]
    df = pd.concat(frames, ignore_index=True)
    rep.rows_read = len(df)
    df["POINT_ID"] = pd.to_numeric(df["POINT_ID"], errors="coerce")
    df = df[df["POINT_ID"].notna()].copy()
    df["POINT_ID"] = df["POINT_ID"].astype(np.int64)
    dup = df.duplicated("POINT_ID", keep="first")
    if dup.any():
        ident = df.duplicated(["POINT_ID", *spec.names], keep="first")
        rep.duplicates_identical = int(ident.sum())
        rep.duplicates_conflicting = int((dup & ~ident).sum())
        df = df[~dup]
    try:
        lon, lat, rep.coordinates_from = _coordinates(df)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        files = ", ".join(sorted(set(df["_file"].astype(str)))) if "_file" in df else "the export"
        raise SchemaError(
            f"{files}: the point coordinates (.geo, or lon/lat) are not numbers ({' '.join(str(e).split())[:120]})",
            "Export the points with their geometry as GEE writes it, or numeric lon/lat columns",
        ) from None
    x, y = Transformer.from_crs(4326, 3035, always_xy=True).transform(lon, lat)
    x, y = np.asarray(x), np.asarray(y)
    x0, y0, x1, y1 = LAEA_BOUNDS_M
    ok = (
        np.isfinite(x)
        & np.isfinite(y)
        & (np.abs(lon) <= 180)
        & (np.abs(lat) <= 90)
        & (x >= x0)
        & (x <= x1)
        & (y >= y0)
        & (y <= y1)
    )
    rep.out_of_range = int((~ok).sum())
    df, lon, lat, x, y = df[ok], lon[ok], lat[ok], x[ok], y[ok]
    if df.empty:
        raise SchemaError(
            f"no row has a POINT_ID and coordinates inside the EEA LAEA extent ({rep.out_of_range:,} outside)",
            "Check the export's POINT_ID and geometry columns",
            path=", ".join(str(p) for p in exports) if len(exports) < 4 else f"{len(exports)} exports",
        )
    # cells/regions from the LUCAS theoretical point when the coordinates are that point
    cx, cy = snap_to_lucas_grid(df["POINT_ID"].to_numpy(), x, y)
    lucas = read_lucas_labels(lucas_file) if lucas_file else None
    labels, lrep = _labels(df, lucas)
    rep.labels = {**lrep.to_json(), "summary": lrep.summary()}
    regions, rrep = assign_bioregion(cx, cy, cells_csv)
    out = pd.DataFrame(
        {
            "point_id": df["POINT_ID"].to_numpy(),
            "lon": lon,
            "lat": lat,
            "year": np.int16(year or spec.year),
            "lc1": labels["lc1"].to_numpy(),
            "lu1": labels["lu1"].to_numpy(),
            "level1": labels["level1"].astype("Int8").array,
            "level2": labels["level2"].astype("Int8").array,
            "bioregion": pd.array(regions, dtype="string"),
            "eea_cell_100km": cell_codes(cx, cy, 100),
        }
    )
    for name in spec.names:
        vals = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64, copy=True)
        bad = ~np.isfinite(vals) & ~np.isnan(vals)  # ±inf (or beyond float32): left out, counted
        vals[bad | (np.abs(vals) > np.finfo(np.float32).max)] = np.nan
        if bad.any():
            rep.nonfinite_values[name] = int(bad.sum())
        out[name] = vals.astype(np.float32)
    keep = out["level1"].notna().to_numpy()
    rep.unlabelled = int((~keep).sum())
    out = out[keep].reset_index(drop=True)
    rep.regions = {str(k): int(v) for k, v in out["bioregion"].value_counts(dropna=False).items()}
    rep.regions["border_cells_resolved"] = int(rrep.get("border_cells", 0))
    rep.missing_values = {n: int(out[n].isna().sum()) for n in spec.names}
    rep.rows_written = len(out)
    if not len(out):
        raise SchemaError(
            f"no labelled point is left of the {rep.rows_read:,} rows read "
            f"({rep.unlabelled:,} without a Level-1 label, {rep.out_of_range:,} out of range)",
            "Check the label columns (LC1/LC_num) and the coordinates",
            path=exports[0],
        )
    gdf = gpd.GeoDataFrame(out, geometry=gpd.points_from_xy(out["lon"], out["lat"]), crs=4326)
    gdf.attrs["eulc"] = {
        "spec": spec.name,
        "spec_hash": spec.digest(),
        "features": spec.names,
        "features_digest": features_digest(spec),
        "feature_spec": embed(spec),
        "sources": [{"file": str(p), "sha256": file_sha256(Path(p))} for p in exports]
        + ([{"file": str(lucas_file), "sha256": file_sha256(lucas_file)}] if lucas_file else []),
        "report": {k: v for k, v in rep.__dict__.items()},
    }
    return gdf, rep


def check_table_dest(dest: Path) -> None:
    """Refuse a ``--out`` that is not eulc's to replace: an existing file must be a FeatureTable.

    Raises:
        SchemaError: ``dest`` exists and is something else (named; eulc never overwrites it).
    """
    dest = Path(dest)
    if not dest.exists() and not dest.is_symlink():
        return
    try:
        if dest.is_symlink() or not dest.is_file():
            raise SchemaError("x")
        table_metadata(dest)
    except SchemaError:
        raise SchemaError(
            "exists and is not a FeatureTable eulc wrote",
            "Choose another `out`; eulc never overwrites files it did not write",
            path=dest,
        ) from None


def _is_feature_table(path: Path) -> bool:
    """A FeatureTable eulc wrote (its metadata reads), journal or not."""
    try:
        table_metadata(path)
    except SchemaError:
        return False
    return True


def write_feature_table(gdf: gpd.GeoDataFrame, dest: Path) -> None:
    """Write a FeatureTable as GeoParquet atomically, with ``gdf.attrs['eulc']`` as metadata.

    Raises:
        SchemaError: ``dest`` exists and is not a FeatureTable (:func:`check_table_dest`).
    """
    check_table_dest(dest)
    remove_leftovers(Path(dest).parent)  # temporaries of a killed earlier run
    with atomic_path(dest, recognise=_is_feature_table) as tmp:
        gdf.to_parquet(tmp, index=False, compression="zstd")  # writes the GeoParquet 'geo' key
        table = pq.read_table(tmp)
        meta = dict(table.schema.metadata or {})
        meta[META_KEY] = json.dumps(gdf.attrs.get("eulc", {}), default=str).encode()
        pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")


def table_metadata(path: Path) -> dict[str, Any]:
    """The ``eulc`` metadata of a FeatureTable without reading its rows.

    Raises:
        SchemaError: the file is unreadable or has no eulc metadata.
    """
    try:
        raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
    except (OSError, pa.ArrowException) as e:
        raise SchemaError(f"cannot be read as Parquet ({e})", "Give a table made by `eulc table`", path=path) from None
    if raw is None:
        raise SchemaError("is not a FeatureTable (no eulc metadata)", "Build it with `eulc table`", path=path)
    return dict(json.loads(raw))


def read_feature_table(path: Path) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """Read a FeatureTable written by :func:`write_feature_table`.

    Returns:
        ``(table, meta)``: the GeoDataFrame (EPSG:4326) and the ``eulc`` metadata dict.

    Raises:
        SchemaError: the file is not a FeatureTable (no eulc metadata or base columns).
    """
    try:
        gdf = gpd.read_parquet(path)
        meta_raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise SchemaError(
            f"cannot be read as GeoParquet ({e})", "Give a table made by `eulc table`", path=path
        ) from None
    missing = [c for c in BASE_COLUMNS if c not in gdf.columns]
    if missing or meta_raw is None:
        raise SchemaError(
            f"is not a FeatureTable (missing {missing or 'eulc metadata'})", "Build it with `eulc table`", path=path
        )
    return gdf, json.loads(meta_raw)


def table_spec(meta: dict[str, Any], where: str) -> FeatureSpec:
    """The feature spec a FeatureTable's columns were made with (from its ``eulc`` metadata).

    Raises:
        ContractError: see :func:`pipeline.core.contract.artifact_spec`.
    """
    return artifact_spec(meta, list(meta.get("features", [])), where)
