"""Submit a plan's batch jobs through openEO's own job manager and download their GeoTIFFs.

``openeo.extra.job_management.MultiBackendJobManager`` starts the jobs (a few at a time), polls
them and keeps its job database (``OUT/job_db.csv``, written by openEO's ``CsvJobDatabase``): a
rerun of the same command resumes from it and never starts a job twice. eulc adds:

- each job's process graph is the plan's ``graphs/<tile>.json``, and the database is refused if
  it was made for another plan (its ``params_hash`` differs);
- a finished tile job's GeoTIFF asset is downloaded through eulc's guarded writer (temporary,
  checked to be a GeoTIFF with the plan's band count, renamed) to
  ``OUT/downloads/<spec>_<year>_<tile>.tif`` with the plan's ``bands.json`` beside it, the layout
  ``eulc map --features-dir`` reads;
- a finished table job's CSV is joined to the points its graph sampled and written as the table
  builder reads an Earth Engine sample (``OUT/downloads/<spec>_<year>_<shard>.csv``), with
  ``spec.yaml`` beside it: ``eulc table OUT/downloads/*.csv --spec OUT/downloads/spec.yaml``;
- a job that failed (or could not start) is started again on a rerun, up to ``max_attempts``;
  a finished job whose download failed is downloaded on the rerun.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import openeo
import pandas as pd
import rasterio
from openeo.extra.job_management import CsvJobDatabase, MultiBackendJobManager
from openeo.rest.connection import Connection
from openeo.rest.job import BatchJob

from openeo_scripts.backends import Backend
from openeo_scripts.run import SPEC_FILE, Plan, sampled_points, table_layout, write_plan
from pipeline.core.atomic import atomic_path, write_json
from pipeline.core.errors import EulcError, RasterError

JOB_DB = "job_db.csv"
DOWNLOADS = "downloads"
RETRY_STATUSES = ("error", "start_failed")
"""Job-database statuses a rerun starts again (within ``max_attempts``)."""


def _check_tiff(path: Path, n_bands: int) -> None:
    try:
        with rasterio.open(path) as src:
            ok = src.driver == "GTiff" and src.count == n_bands
            got = f"{src.driver} with {src.count} band(s)"
    except rasterio.errors.RasterioIOError as e:
        ok, got = False, f"not a raster ({e})"
    if not ok:
        raise RasterError(
            f"the job's result is {got}, not a GeoTIFF with the plan's {n_bands} bands",
            "Check the job's logs on the back-end",
            path=path,
        )


class _Manager(MultiBackendJobManager):
    """The job manager, downloading each finished job's result where the plan names it: a tile
    job's GeoTIFF as it is, a table job's CSV in the table builder's layout.
    """

    def __init__(self, out: Path, plan: Plan, poll_sleep: int) -> None:
        super().__init__(poll_sleep=poll_sleep, root_dir=out / "jobs", download_results=False)
        self.out, self.plan = out, plan

    def _asset(self, job: BatchJob, suffixes: tuple[str, ...], media: str) -> Any:
        assets = job.get_results().get_assets()
        fitting = [a for a in assets if a.name.lower().endswith(suffixes) or media in str(a.metadata)]
        chosen = fitting or assets  # a back-end may name its one asset without an extension
        if len(chosen) != 1:
            raise RasterError(
                f"job {job.job_id} has {len(assets)} assets and not one {suffixes[0]} file",
                "Check the job's results on the back-end",
            )
        return chosen[0]

    def on_job_done(self, job: BatchJob, row: Any) -> None:
        super().on_job_done(job, row)
        dest = self.out / DOWNLOADS / str(row["output"])
        names = self.plan.computed.names
        if self.plan.kind == "table":
            raw = pd.read_csv(io.BytesIO(self._asset(job, (".csv",), "csv").load_bytes()))
            points = sampled_points(self.plan.graphs[str(row["key"])])
            table = table_layout(raw, points, names, f"job {job.job_id} ({row['key']})")
            with atomic_path(dest) as tmp:
                table.to_csv(tmp, index=False)
            return
        with atomic_path(dest, verify=lambda p: _check_tiff(p, len(names))) as tmp:
            self._asset(job, (".tif", ".tiff"), "tiff").download(tmp)


def _job_frame(plan: Plan) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "key": [j.key for j in plan.jobs],
            "title": [j.title for j in plan.jobs],
            "output": [j.output for j in plan.jobs],
            "params_hash": [j.params_hash for j in plan.jobs],
            "attempts": [1] * len(plan.jobs),
        }
    )


def _resume(db: CsvJobDatabase, plan: Plan, max_attempts: int) -> None:
    """Check an existing database against the plan; put failed jobs back in line."""
    df = db.read()
    if "params_hash" not in df.columns:
        raise EulcError(f"{db.path} is not an eulc job database", "Move it away or choose another `out`")
    want = {j.key: j.params_hash for j in plan.jobs}
    have = dict(zip(df["key"].astype(str), df["params_hash"].astype(str), strict=True))
    if have != want:
        raise EulcError(
            f"{db.path} holds the jobs of another plan (other tiles, features or year)",
            "Use a new `out` for this plan, or rerun the plan that made it",
        )
    retry = df["status"].isin(RETRY_STATUSES) & (df["attempts"] < max_attempts)
    if retry.any():
        df.loc[retry, "attempts"] += 1
        df.loc[retry, "status"] = "not_started"
        df.loc[retry, "id"] = None
        db.persist(df)


def connect(backend: Backend) -> Connection:
    """A connection to ``backend``, signed in with OpenID Connect (a refresh token, else the
    device flow: a URL to open in a browser, printed by the openeo client).

    Raises:
        EulcError: the back-end cannot be reached or the sign-in fails.
    """
    try:
        return openeo.connect(backend.url).authenticate_oidc()
    except Exception as e:  # requests' and openeo's errors: one line
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EulcError(
            f"cannot sign in to the openEO back-end {backend.url} ({why})",
            "Check the network and your Copernicus Data Space account",
        ) from None


def run_live(
    out: Path,
    plan: Plan,
    year: int,
    connection: Connection,
    *,
    max_attempts: int = 3,
    parallel_jobs: int = 2,
    poll_sleep: int = 60,
) -> pd.DataFrame:
    """Write the plan, submit its jobs on ``connection`` and download the finished ones.

    Args:
        out: the plan's folder (graphs, jobs.csv, bands.json; then job_db.csv and downloads/).
        plan: the planned jobs (:func:`openeo_scripts.run.plan_tile_jobs`).
        year: the feature year (for the sidecar).
        connection: an authenticated connection to ``plan.backend``.
        max_attempts: starts per job over all reruns.
        parallel_jobs: jobs running at once on the back-end.
        poll_sleep: seconds between status polls.

    Returns:
        The job database's rows (``key``, ``status``, ``id``, ``attempts``, ...).

    Raises:
        EulcError: ``out`` holds a job database of another plan, or one eulc did not write.
    """
    write_plan(out, plan, year)
    db = CsvJobDatabase(out / JOB_DB)
    if db.exists():
        _resume(db, plan, max_attempts)
    else:
        db.initialize_from_df(_job_frame(plan))
    manager = _Manager(out, plan, poll_sleep)
    manager.add_backend(plan.backend.name, connection=connection, parallel_jobs=parallel_jobs)
    # a job that finished in an earlier run whose download failed (or was interrupted): fetch it now
    rows = db.read()
    for _, row in rows[rows["status"] == "finished"].iterrows():
        if not (out / DOWNLOADS / str(row["output"])).is_file():
            manager.on_job_done(connection.job(str(row["id"])), row)

    def start_job(row: Any, connection: Connection, **kwargs: Any) -> BatchJob:
        graph = plan.graphs[str(row["key"])]
        return connection.create_job(graph["process_graph"], title=str(row["title"]))

    # openeo annotates start_job as Callable[[], BatchJob], and calls it with (row, connection)
    manager.run_jobs(start_job=start_job, job_db=db)  # type: ignore[arg-type]
    if (out / DOWNLOADS).is_dir():  # the sidecar the map step reads, the spec `eulc table` reads
        write_json(out / DOWNLOADS / "bands.json", json.loads((out / "bands.json").read_text()))
        with atomic_path(out / DOWNLOADS / SPEC_FILE) as tmp:
            tmp.write_text((out / SPEC_FILE).read_text(encoding="utf-8"), encoding="utf-8")
    return db.read()
