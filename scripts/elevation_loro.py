r"""Does elevation help? Leave-One-bioRegion-Out with and without the survey's elevation, on the
LUCAS 2018 points that carry one (issue #29 part 6).

    python scripts/elevation_loro.py TABLE.parquet --survey SURVEY.csv --out DIR \\
        [--models eulc,xgboost] [--seeds 1] [--epochs 25] [--lr 1e-3] [--regions R1,R2] [--max-rows N]

``TABLE`` is the ``elc10`` FeatureTable (``eulc table``); ``SURVEY`` the LUCAS 2018 survey
attributes (``../shared/data/lucas2018_survey_points/lucas2018_topsoil_points_survey_attrs.csv``:
``POINT_ID``, ``Elev`` in metres). Their rows are joined by ``POINT_ID`` (the table's
``point_id``); an ``Elev`` outside [:data:`ELEV_MIN_M`, :data:`ELEV_MAX_M`] is a recording error
(the file holds values such as 10,613 m) and its row is left out, as is every table row without a
survey elevation. The survey is the LUCAS topsoil sample: nearly all its points are woodland,
grassland or cropland, so rows of a Level-1 class with fewer than :data:`MIN_CLASS_ROWS` joined
rows are left out too (LORO needs every class on each training side). The joined table
(``DIR/elc10_elevation.parquet``) gets the column ``dem_elevation`` (metres, the name and unit of
the DEM feature of ``bridge-lc-196``).

Then the same LORO protocol (:func:`model.evaluate.run_scenario`) runs twice on the same rows:
with the table's features (``DIR/without``) and with ``dem_elevation`` added (``DIR/with``). For
each model, ``DIR/elevation_loro.md`` and ``.csv`` give with − without per held-out region and for
the LORO aggregates, with the 95 % paired cell-bootstrap interval (:mod:`model.differences`):
both runs test the same points, so each pair is scored on the same resampled cells. Nothing is
chosen here; the figures decide whether a Level-1 bundle with the DEM feature is worth shipping.
A rerun resumes both scenario runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from model.differences import difference_table, differences_markdown
from model.evaluate import run_scenario
from model.train import TrainConfig
from pipeline.core.atomic import atomic_path
from pipeline.core.contract import embed, features_digest
from pipeline.core.errors import EulcError
from pipeline.core.spec import FeatureSpec, load_spec
from pipeline.table import read_feature_table, table_spec, write_feature_table

ELEV_MIN_M = -30.0
"""Lowest plausible LUCAS point elevation (m; the lowest land of the EU lies above −7 m)."""
ELEV_MAX_M = 4810.0
"""Highest plausible LUCAS point elevation (m; Mont Blanc)."""
FEATURE = "dem_elevation"
MIN_CLASS_ROWS = 30
"""Level-1 classes with fewer joined rows are left out (their rows, counted in ``rare_class``)."""


def with_dem_feature(meta: dict[str, Any], where: str) -> dict[str, Any]:
    """The table metadata ``meta`` with :data:`FEATURE` added to its embedded spec: the DEM sensor
    and feature of ``bridge-lc-196`` (metres, scale 1), so the contract knows the column's unit.
    """
    base = table_spec(meta, where).model_dump(mode="json")
    dem = load_spec("bridge-lc-196").model_dump(mode="json")
    base["sensors"]["dem"] = dem["sensors"]["dem"]
    base["features"].append(next(f for f in dem["features"] if f["name"] == FEATURE))
    spec = FeatureSpec.model_validate(base)
    return {**meta, "feature_spec": embed(spec), "features": spec.names, "features_digest": features_digest(spec)}


def join_elevation(table: Path, survey: Path, dest: Path) -> dict[str, Any]:
    """Write ``table``'s rows that have a plausible survey ``Elev`` to ``dest`` with the column
    :data:`FEATURE` (float32 metres), less the rows of rare classes; return the row counts
    (table, joined, implausible, rare_class, kept) and the table's own feature names (features).

    Raises:
        SystemExit: the survey lacks ``POINT_ID`` or ``Elev`` (one line naming the file).
    """
    gdf, meta = read_feature_table(table)
    s = pd.read_csv(survey)
    missing = [c for c in ("POINT_ID", "Elev") if c not in s.columns]
    if missing:
        sys.exit(f"error: {survey}: no column(s) {missing}; give the LUCAS 2018 survey attributes file")
    s = s[["POINT_ID", "Elev"]].drop_duplicates("POINT_ID")
    j = gdf.merge(s, left_on="point_id", right_on="POINT_ID", how="inner")
    ok = j["Elev"].between(ELEV_MIN_M, ELEV_MAX_M)
    counts = j.loc[ok, "level1"].value_counts()
    common = j["level1"].isin(counts[counts >= MIN_CLASS_ROWS].index)
    out = j[ok & common].drop(columns=["POINT_ID"]).rename(columns={"Elev": FEATURE}).reset_index(drop=True)
    out[FEATURE] = out[FEATURE].astype("float32")
    out.attrs["eulc"] = with_dem_feature(meta, f"table {table}")
    names = table_spec(meta, f"table {table}").names
    write_feature_table(out, dest)
    return {
        "table": len(gdf),
        "joined": len(j),
        "implausible": int((~ok).sum()),
        "rare_class": int((ok & ~common).sum()),
        "kept": len(out),
        "features": names,
    }


def main() -> None:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", type=Path)
    ap.add_argument("--survey", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", default="eulc,xgboost")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--regions", default="", help="comma-separated held-out regions (default: all)")
    ap.add_argument("--max-rows", type=int, default=None, help="a seeded random subsample of the joined rows")
    a = ap.parse_args()
    for p in (a.table, a.survey):
        if not p.is_file():
            sys.exit(f"error: {p} is not a file")
    a.out.mkdir(parents=True, exist_ok=True)
    joined = a.out / "elc10_elevation.parquet"
    try:
        counts = join_elevation(a.table, a.survey, joined)
        names = counts.pop("features")  # the table's own features, without elevation
        models = tuple(m for m in a.models.split(",") if m)
        cfg = TrainConfig(epochs=a.epochs, lr=a.lr)
        regions = [r for r in a.regions.split(",") if r] or None
        for tag, feats in (("without", names), ("with", [*names, FEATURE])):
            print(f"LORO {tag} elevation: {len(feats)} features", flush=True)
            run_scenario(joined, feats, "loro", a.out / tag, models, tuple(range(a.seeds)), cfg, regions, a.max_rows)
    except EulcError as e:
        sys.exit(f"error: {e}")
    without = pd.read_parquet(a.out / "without" / "loro_predictions.parquet")
    with_ = pd.read_parquet(a.out / "with" / "loro_predictions.parquet")
    tables = []
    for m in models:
        preds = pd.concat(
            [with_[with_["model"] == m].assign(model=f"{m}+elevation"), without[without["model"] == m]],
            ignore_index=True,
        )
        tables.append(difference_table(preds, 7, f"{m}+elevation"))
    diff = pd.concat(tables, ignore_index=True)
    body = "\n".join(differences_markdown(t, "loro") for t in tables)  # one block per model, titled by it
    head = (
        f"# Elevation in LORO (issue #29 part 6)\n\n{counts['table']:,} table rows; {counts['joined']:,} "
        f"joined to a survey `Elev` by POINT_ID; {counts['implausible']:,} left out as implausible "
        f"(outside {ELEV_MIN_M:g} to {ELEV_MAX_M:g} m) and {counts['rare_class']:,} of Level-1 classes with "
        f"fewer than {MIN_CLASS_ROWS} joined rows; {counts['kept']:,} used. Models: {', '.join(models)}; "
        f"{a.seeds} seed(s), {a.epochs} epochs at lr {a.lr:g}.\n\n"
    )
    with atomic_path(a.out / "elevation_loro.csv") as tmp:
        diff.to_csv(tmp, index=False)
    with atomic_path(a.out / "elevation_loro.md") as tmp:
        tmp.write_text(head + body)
    print((a.out / "elevation_loro.md").read_text())


if __name__ == "__main__":
    main()
