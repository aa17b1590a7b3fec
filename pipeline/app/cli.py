"""The ``eulc`` command line: one library call per subcommand (typer + rich), one module per
command group (``cli_model``, ``cli_features``, ``cli_map``, ``cli_gee``; shared options in
``cli_common``).

Bad input ends with a one-line error naming the file and column/band and what to change,
exit status 2, and no traceback (``eulc --debug ...`` shows it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

# isort: off
# each module registers its commands, in the order of the pipeline (the order of `eulc --help`)
from pipeline.app import cli_model, cli_features, cli_map  # noqa: F401

# isort: on
from pipeline.app.cli_common import app, console, state
from pipeline.app.cli_gee import gee_app
from pipeline.app.cli_openeo import openeo_app
from pipeline.core.config import MAX_THREADS, THREADS_VAR, calm_openmp_under_load
from pipeline.core.errors import EulcError

app.add_typer(gee_app, name="gee")
app.add_typer(openeo_app, name="openeo")


def _version(value: bool) -> None:
    if value:
        from pipeline import __version__

        typer.echo(f"eulc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            max=MAX_THREADS,
            envvar=THREADS_VAR,
            help="CPU threads for every command (torch, GDAL, map workers); default: the cores this "
            "process may use. Results are bit-identical for a given number of threads.",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or notes: only results and errors.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Also log each step's details to stderr: per tile (time, pixels, memory), "
            "per epoch (loss, hold-out F1), per STAC search, per comparison.",
        ),
    ] = False,
) -> None:
    """eulc: 10 m land-cover maps of Europe from Copernicus data and LUCAS."""
    if quiet and verbose:
        raise EulcError("--quiet and --verbose contradict each other", "Give one of them")
    state["debug"] = debug
    if verbose:
        _log_to_stderr()
    if threads is not None:  # before torch is loaded, so its OpenMP pool takes this size; workers inherit it
        os.environ[THREADS_VAR] = str(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
    calm_openmp_under_load()
    if quiet:
        console.quiet = True


EULC_LOGGERS = ("pipeline", "model", "tiles", "gee_scripts")
"""The packages whose loggers ``--verbose`` shows."""


def _log_to_stderr() -> None:
    """Send eulc's log records (DEBUG and up) to stderr, timestamped, through rich."""
    import logging

    from rich.logging import RichHandler

    handler = RichHandler(
        console=console, show_path=False, markup=False, rich_tracebacks=False, log_time_format="%H:%M:%S"
    )
    for name in EULC_LOGGERS:
        lg = logging.getLogger(name)
        lg.setLevel(logging.DEBUG)
        lg.addHandler(handler)


@app.command()
def info() -> None:
    """Versions (eulc, Python, GDAL, rasterio, torch), the device a map would run on, and where
    eulc reads data, bundles and demo inputs from.
    """
    import platform

    import numpy
    import rasterio
    import torch

    from model.infer import cpu_has_fast_bf16, resolve_device
    from pipeline import __version__
    from pipeline.core.config import ENV_VAR as DATA_VAR
    from pipeline.core.config import data_dir_setting, demo_data_dir
    from pipeline.stages.pretrained import ENV_VAR as MODELS_VAR
    from pipeline.stages.pretrained import models_dir, shipped_bundles

    dev = resolve_device("auto")
    gpu = f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""
    data, origin = data_dir_setting()
    missing = "missing: the tests and training read it; demo and map do not"
    rows = [
        ("eulc", __version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("numpy", numpy.__version__),
        ("rasterio", rasterio.__version__),
        ("GDAL", rasterio.__gdal_version__),
        ("torch", f"{torch.__version__}, {torch.get_num_threads()} threads"),
        ("device (auto)", f"{dev}{gpu}; CPU bf16 in hardware (AMX): {'yes' if cpu_has_fast_bf16() else 'no'}"),
        (
            f"data (${DATA_VAR})",
            f"{origin}: set {DATA_VAR}"
            if data is None
            else f"{data.resolve()}, {origin} ({'found' if data.is_dir() else missing})",
        ),
        (f"bundles (${MODELS_VAR})", f"{models_dir()}: {', '.join(shipped_bundles()) or 'none'}"),
        ("demo inputs", str(demo_data_dir())),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        typer.echo(f"{k:<{width}}  {v}")


def _usage_error(e: BaseException) -> bool:
    """Click's usage/parameter errors, whether from click or typer's vendored copy of it."""
    return any(c.__name__ == "ClickException" for c in type(e).__mro__)


def _fail(message: str, code: int = 2) -> None:
    """One line on stderr, the request fields spelt as flags (:mod:`pipeline.app.flags`), the
    message printed verbatim (file names with ``[`` ``]`` are not rich markup), then exit.
    """
    from rich.text import Text

    from pipeline.app.flags import to_flags

    console.quiet = False  # errors show under --quiet too
    console.print(Text.assemble(("error:", "bold red"), " ", to_flags(message)), highlight=False, soft_wrap=True)
    sys.exit(code)


def classify(e: BaseException) -> tuple[int, str] | None:
    """The exit status and one-line message of an exception the CLI expects, or None for an
    unexpected one (a bug: exit 3). Bad input (:class:`~pipeline.core.errors.EulcError`, a
    rasterio error, a pydantic validation error, an OS error naming a file, a usage error) is 2;
    a :class:`~pipeline.core.atomic.WriteError` (full disk) is 1.
    """
    import pydantic
    import rasterio.errors

    if isinstance(e, EulcError):  # one line: a message quoting a library's multi-line text is joined
        return getattr(e, "exit_code", 2), " ".join(str(e).splitlines())
    if isinstance(e, rasterio.errors.RasterioError):
        return 2, f"raster input: {e}"
    if isinstance(e, pydantic.ValidationError):
        err = e.errors()[0]
        return 2, f"{'.'.join(str(x) for x in err['loc'])}={err.get('input')!r}: {err['msg']}"
    if isinstance(e, OSError) and (e.filename or e.strerror):
        return 2, (f"{e.filename}: {e.strerror or e}" if e.filename else str(e.strerror))
    if _usage_error(e):
        msg = e.format_message() if hasattr(e, "format_message") else str(e)
        return 2, f"{' '.join(msg.split())} (see `eulc --help` or `eulc COMMAND --help`)"
    if type(e).__name__ == "Abort":
        return 2, "aborted"
    return None


def _bug_log(e: BaseException) -> Path:
    """Write the traceback of an unexpected error to a log file in the system temp folder."""
    import tempfile
    import traceback

    fd, name = tempfile.mkstemp(prefix="eulc-bug-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"eulc {' '.join(sys.argv[1:])}\n\n")
        fh.write("".join(traceback.format_exception(type(e), e, e.__traceback__)))
    return Path(name)


def main() -> None:
    """Console-script entry point: every failure ends in one line on stderr.

    Exit status: 0 done; 1 a run that finished with failed tiles (listed), or a file that could
    not be written (full disk: the path and the free space); 2 bad input or usage (the line names
    the file, option or value and what to change); 3 an unexpected error, a bug in eulc (its
    traceback is written to a log file the line names); 130 interrupted. ``eulc --debug ...``
    shows tracebacks instead.
    """
    try:
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:  # typer.Exit(n) comes back as a return value here
            sys.exit(rc)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        console.print("interrupted; rerun the same command to resume")
        sys.exit(130)
    except Exception as e:
        if state["debug"]:
            raise
        known = classify(e)
        if known is not None:
            _fail(known[1], code=known[0])
        log = _bug_log(e)
        _fail(
            f"unexpected {type(e).__name__}: {' '.join(str(e).split())[:300]}. This is a bug in eulc: "
            f"the traceback is in {log}; please report it with that file",
            code=3,
        )


if __name__ == "__main__":
    main()
