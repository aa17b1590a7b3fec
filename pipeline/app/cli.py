"""The ``eulc`` command line: one library call per subcommand (typer + rich), one module per
command group (``cli_model``, ``cli_features``, ``cli_map``, ``cli_gee``; shared options in
``cli_common``).

Bad input ends with a one-line error naming the file and column/band and what to change,
exit status 2, and no traceback (``eulc --debug ...`` shows it).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

# isort: off
# each module registers its commands, in the order of the pipeline (the order of `eulc --help`)
from pipeline.app import cli_model, cli_features, cli_map  # noqa: F401
# isort: on
from pipeline.app.cli_common import app, console, state
from pipeline.app.cli_gee import gee_app
from pipeline.core.errors import EulcError

app.add_typer(gee_app, name="gee")


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    state["debug"] = debug


def main() -> None:
    """Console-script entry point: run the app, turning eulc errors into one-line messages."""
    import rasterio.errors

    try:
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:  # typer.Exit(n) comes back as a return value here
            sys.exit(rc)
    except EulcError as e:
        if state["debug"]:
            raise
        console.print(f"[bold red]error:[/bold red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except rasterio.errors.RasterioError as e:
        if state["debug"]:
            raise
        console.print(f"[bold red]error:[/bold red] raster input: {e}", highlight=False,
                      soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted; rerun the same command to resume")
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # click usage errors surface here in non-standalone mode
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
