"""Process-wide settings: where the real data lives (the one setting ``EULC_DATA``), the demo's
shipped inputs, and how many CPU threads eulc uses (``EULC_THREADS``).

Tests read every real file through :func:`data_dir`. Without ``EULC_DATA`` the data folder is
``shared/data`` beside the checkout eulc runs from (the folder holding ``pyproject.toml`` and
``pipeline/``), found from this file's location: never from the current folder, so a test or a
command that changes folder reads the same data. An eulc installed outside a checkout (a wheel
in site-packages) has no default and says to set ``EULC_DATA``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from pipeline.core.errors import DataDirError, EulcError

ENV_VAR = "EULC_DATA"
CHECKOUT_DATA = Path("shared") / "data"
"""The data folder's place beside a checkout: ``<checkout>/../shared/data``."""


def checkout_root() -> Path | None:
    """The repository checkout this eulc runs from (an editable install or ``python -m`` in a
    clone: the folder with ``pyproject.toml`` and ``pipeline/``), or None for an installed package.
    """
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "pipeline").is_dir() else None


def data_dir_setting() -> tuple[Path | None, str]:
    """The data folder in force and where it comes from: ``EULC_DATA`` when set (a relative value
    is taken from the current folder, as the user typed it), else ``shared/data`` beside the
    checkout; None when neither exists as a setting (an installed package without ``EULC_DATA``).
    """
    raw = os.environ.get(ENV_VAR)
    if raw:
        return Path(raw), f"${ENV_VAR}"
    root = checkout_root()
    if root is None:
        return None, f"no default: this eulc is installed outside a checkout ({Path(__file__).parents[1]})"
    return root.parent / CHECKOUT_DATA, f"beside the checkout {root}"


def data_dir(required: tuple[str, ...] = ()) -> Path:
    """Return the real-data directory: ``EULC_DATA``, else ``shared/data`` beside the checkout
    (:func:`data_dir_setting`; never relative to the current folder).

    Args:
        required: sub-paths (files or folders) that must exist below the directory.

    Returns:
        The resolved directory path.

    Raises:
        DataDirError: no setting (an installed package without ``EULC_DATA``), or the directory,
            or one of ``required``, does not exist. The message says how to point ``EULC_DATA``
            at the data.
    """
    root, origin = data_dir_setting()
    hint = (
        f"Set {ENV_VAR} to the folder that holds the eulc real data "
        f"(e.g. `export {ENV_VAR}=/path/to/shared/data`); without it eulc reads ../shared/data beside "
        "the checkout it runs from"
    )
    if root is None:
        raise DataDirError(f"the real-data directory is not set ({origin})", hint)
    if not root.is_dir():
        raise DataDirError(f"the real-data directory {root} ({origin}) does not exist", hint)
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


THREADS_VAR = "EULC_THREADS"
MAX_THREADS = 1024
"""Most threads one eulc process computes with (a bound on ``--threads``, not a default)."""
SPIN_UNDER_LOAD = "10000"
"""``GOMP_SPINCOUNT`` when other work loads the CPU: OpenMP threads spin ~10⁴ iterations
(microseconds) before sleeping, instead of GNU OpenMP's default ~3 × 10⁵ (milliseconds)."""


def cpu_threads() -> int:
    """Threads eulc computes with: ``$EULC_THREADS`` (``eulc --threads``), else the cores this
    process may run on (its CPU affinity, which container and batch-system limits set).

    Raises:
        EulcError: ``EULC_THREADS`` is not a positive integer.
    """
    raw = os.environ.get(THREADS_VAR)
    if raw:
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_THREADS:
            raise EulcError(
                f"{THREADS_VAR}={raw!r} is not a number of threads",
                f"Set {THREADS_VAR} (or `threads`) to 1 to {MAX_THREADS}",
            )
        return int(raw)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def calm_openmp_under_load() -> bool:
    """Before torch is loaded: when other work already keeps at least half of :func:`cpu_threads`
    busy (1-minute load average), make idle OpenMP threads sleep after a short spin
    (``GOMP_SPINCOUNT``). With the default long spin, torch's threads fight the other work:
    150 training steps beside two busy processes on 2 cores took 133 s with the long spin and
    7.8 s with the short one (``benchmarks/bench_threads.py``, ``benchmarks/RESULTS.md``). The
    thread count, hence every number computed, is unchanged; a user's own ``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT`` is kept.

    Returns:
        Whether the short spin was set.
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ or not hasattr(os, "getloadavg"):
        return False
    if os.getloadavg()[0] < 0.5 * cpu_threads():
        return False
    os.environ["GOMP_SPINCOUNT"] = SPIN_UNDER_LOAD
    return True
