"""Where the real data lives: the one setting ``EULC_DATA``.

Tests and the demo read every real file through :func:`data_dir`. The default is
``../shared/data`` relative to the current working directory, which is where the data
sits beside a checkout of the repository.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from pipeline.core.errors import DataDirError

ENV_VAR = "EULC_DATA"
DEFAULT_DATA_DIR = Path("..") / "shared" / "data"


def data_dir(required: tuple[str, ...] = ()) -> Path:
    """Return the real-data directory named by ``EULC_DATA`` (default ``../shared/data``).

    Args:
        required: sub-paths (files or folders) that must exist below the directory.

    Returns:
        The resolved directory path.

    Raises:
        DataDirError: the directory, or one of ``required``, does not exist. The message
            says how to point ``EULC_DATA`` at the data.
    """
    raw = os.environ.get(ENV_VAR)
    root = Path(raw) if raw else DEFAULT_DATA_DIR
    hint = (
        f"Set {ENV_VAR} to the folder that holds the eulc real data "
        f"(e.g. `export {ENV_VAR}=/path/to/shared/data`); "
        f"the default is {DEFAULT_DATA_DIR} relative to the current directory"
    )
    if not root.is_dir():
        raise DataDirError(f"the real-data directory {root} does not exist", hint)
    for sub in required:
        if not (root / sub).exists():
            raise DataDirError(f"{root / sub} is missing from the real-data directory", hint)
    return root.resolve()


def demo_data_dir() -> Path:
    """The demo's own inputs shipped inside the package (``pipeline/demo_data``: the Slovenia
    Sentinel-2 stack and its reference map, a few MB; ``pipeline/demo_data/SOURCES.md``), so
    ``eulc demo`` runs from an installed wheel with no ``EULC_DATA``.
    """
    return Path(str(resources.files("pipeline") / "demo_data"))
