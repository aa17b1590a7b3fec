"""Run per-tile jobs on a scheduler: the one executor behind the features and map runners.

Schedulers (the ``scheduler`` field of the features and map requests):

- ``sync``: in this process, one tile after the other (debugging, tests, the demo);
- ``threads``: a dask.distributed cluster of threads in this process (no TCP listener);
- ``local`` (default): a ``LocalCluster`` of single-threaded worker processes on loopback;
- ``tcp://host:port`` (or ``tls://``): an existing dask scheduler (dask-jobqueue for Slurm, Kubernetes).

The job function must never raise (it returns a result dict with ``status``); a dead worker
becomes a failed result of its job only. Only the calling process sees the results, so it alone
writes the run's ledger.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from pipeline.core.atomic import WriteError
from pipeline.core.errors import EulcError

J = TypeVar("J")
Emit = Callable[[str, dict[str, Any]], None]

SCHEDULERS = ("local", "threads", "sync")
DASHBOARD = "127.0.0.1:8787"
MAX_WORKERS = 512
"""More local workers than this is a typing error, not a machine."""


def worker_result(work: Callable[[], dict[str, Any]], where: str) -> dict[str, Any]:
    """Run a job's ``work`` on a worker and return its result, never raising: ``work``'s dict
    (``status: done`` and its fields) with ``seconds`` and ``worker`` (host:pid) added, or
    ``status: failed`` with the one-line ``error`` (an :class:`~pipeline.core.errors.EulcError` as
    it reads, anything else as an unexpected error of ``where``).
    """
    t0 = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        res = work()
    except EulcError as e:  # a full disk (WriteError) is marked: the run then exits 1, not 2
        res = {"status": "failed", "error": str(e), **({"write_error": True} if isinstance(e, WriteError) else {})}
    except Exception as e:  # noqa: BLE001 - any other failure is recorded, the run goes on
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        res = {"status": "failed", "error": f"{where}: unexpected error: {tb}"}
    return {**res, "seconds": time.perf_counter() - t0, "worker": worker}


def _host_port(text: str, name: str, example: str, host_optional: bool = False, shown: str | None = None) -> None:
    """Refuse ``host:port`` text that is not one (``[::1]:8786`` for IPv6)."""
    from urllib.parse import urlsplit

    try:
        u = urlsplit(f"//{text}")
        port = u.port
    except ValueError:
        port = None
        u = None
    if u is None or port is None or (not u.hostname and not host_optional) or "/" in text:
        raise EulcError(f"`{name}` {shown or repr(text)} is not host:port", f"Write it like {example}")


def local_dashboard_link(dashboard: str, cluster: Any) -> str | None:
    """The address a local cluster's dashboard listens on: the host of ``dashboard`` (loopback
    when it names none or every interface) and the port its HTTP server bound. dask's own
    ``dashboard_link`` names the machine's network address, on which an in-process
    (``threads``) cluster does not listen. None when no dashboard runs (bokeh missing).
    """
    server = getattr(cluster.scheduler, "http_server", None)
    port = getattr(server, "port", None)
    if not port:
        return None
    host = dashboard.rsplit(":", 1)[0].strip("[]")
    return f"http://{host if host not in ('', '0.0.0.0', '::') else '127.0.0.1'}:{port}/status"


def check_dashboard(dashboard: str) -> None:
    """Refuse a dashboard address that is not ``host:port`` or ``:port``.

    Raises:
        EulcError: naming ``dashboard``.
    """
    _host_port(dashboard, "dashboard", "127.0.0.1:8787 or :8787", host_optional=True)


def check_scheduler(scheduler: str, workers: int | None) -> None:
    """Refuse a scheduler value that is neither a choice nor an address, and a worker count < 1.

    Raises:
        EulcError: naming ``scheduler`` or ``workers``.
    """
    if scheduler not in SCHEDULERS and not scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise EulcError(
            f"`scheduler` {scheduler!r} is neither local, threads, sync nor a scheduler address",
            "Use local, threads, sync or tcp://host:8786",
        )
    if scheduler not in SCHEDULERS and not scheduler.startswith("inproc://"):
        _host_port(scheduler.split("://", 1)[1], "scheduler", "tcp://host:8786", shown=repr(scheduler))
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise EulcError(f"`workers` {workers} is not a worker count", f"Use 1 to {MAX_WORKERS}, or leave it out")


def execute(
    fn: Callable[[J], dict[str, Any]],
    jobs: Sequence[J],
    *,
    scheduler: str,
    workers: int,
    key: Callable[[J], str],
    failure: Callable[[J, BaseException], dict[str, Any]],
    emit: Emit | None = None,
    dashboard: str = DASHBOARD,
) -> Iterator[tuple[J, dict[str, Any]]]:
    """Run ``fn(job)`` for every job on ``scheduler`` and yield ``(job, result)`` as they finish.

    Args:
        fn: the job function (importable by the workers; never raises).
        jobs: picklable jobs.
        scheduler: ``sync``, ``threads``, ``local`` or a scheduler address.
        workers: worker count for ``local``/``threads``.
        key: the dask key of a job (unique in the run).
        failure: the result of a job whose worker died (``status: failed`` with a message).
        emit: ``(kind, info)`` callback; ``dashboard`` (``link``) when a cluster starts.
        dashboard: ``host:port`` of the local cluster's dashboard (loopback by default).

    Raises:
        EulcError: an unreachable scheduler address.
    """
    if not jobs:
        return
    check_dashboard(dashboard)
    if scheduler == "sync":
        for j in jobs:
            yield j, fn(j)
        return
    from dask.distributed import Client, LocalCluster, as_completed

    if scheduler in ("local", "threads"):
        # scheduler and dashboard on loopback unless told otherwise: a run is not a public service
        procs = scheduler == "local"  # threads: an in-process scheduler, no TCP listener at all
        # the workers' own logs stay silent: a tile's error comes back as its result and a dead
        # worker as the future's exception; what the worker processes log at ERROR are dask's
        # shutdown races ("Failed to communicate with scheduler during heartbeat" once the
        # scheduler has closed), printed as tracebacks into the run's output
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=procs,
            silence_logs=logging.CRITICAL,
            dashboard_address=dashboard,
            **({"host": "127.0.0.1"} if procs else {}),
        )
        client = Client(cluster)
        link = local_dashboard_link(dashboard, cluster)
    else:
        cluster = None
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as e:
            raise EulcError(
                f"cannot reach the dask scheduler at `scheduler` {scheduler} ({e})",
                "Check the address (tcp://host:8786) or use the local scheduler",
            ) from None
        link = client.dashboard_link
    try:
        if emit is not None and link:
            emit("dashboard", {"link": link})
        futures = {client.submit(fn, j, key=key(j), pure=False): j for j in jobs}
        for fut in as_completed(futures):
            j = futures[fut]
            try:
                res = fut.result()
            except Exception as e:  # noqa: BLE001 - a dead worker fails that job only
                res = failure(j, e)
            yield j, res
    finally:
        # shutdown races inside dask (a batched send on a comm the scheduler just closed) log
        # tracebacks that are not the run's errors: the jobs' own results were yielded above
        quiet = [
            logging.getLogger(n)
            for n in (
                "distributed",
                "distributed.batched",
                "distributed.core",
                "distributed.comm",
                "distributed.worker",
                "distributed.scheduler",
            )
        ]
        levels = [lg.level for lg in quiet]
        for lg in quiet:
            lg.setLevel(logging.CRITICAL)
        try:
            client.close()
            if cluster is not None:
                cluster.close()
        finally:
            for lg, lv in zip(quiet, levels, strict=True):
                lg.setLevel(lv)
