"""Output names that stay inside ``--out``: the one check every stage applies before it writes.

Tile ids and manifest names become file names (``<name>_class.tif``, ``<name>.json``,
``<name>_<year>.tif``). A name is safe when it is an EEA cell code or a slug of letters, digits,
``.``, ``_`` and ``-`` that starts with a letter or digit (no path separator, no ``..``), and is
not one of the run's own files (:data:`RESERVED`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pipeline.core.errors import EulcError

_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
RESERVED = frozenset({"catalog", "manifest", "collection"})
"""Stems of the files a map run writes for itself (``catalog.json``, ``manifest.sqlite``)."""


def safe_name(name: str, what: str) -> str:
    """Return ``name`` if it can name an output inside ``--out``.

    Raises:
        EulcError: a path separator, ``..``, a leading dot or dash, other characters, or a reserved
            name (the message names ``what`` it is: ``--tile-id``, ``manifest name``, ``feature file``).
    """
    if not _SLUG.fullmatch(name) or ".." in name:
        raise EulcError(
            f"{what} {name!r} cannot name an output file",
            "Use letters, digits, '.', '_' and '-' only (no '/', no '..'), e.g. an EEA code 10kmE467N253",
        )
    if name.lower() in RESERVED:
        raise EulcError(
            f"{what} {name!r} is the name of a file the run writes for itself",
            f"Rename it: {sorted(RESERVED)} are reserved",
        )
    return name


def unique_names(pairs: Iterable[tuple[str, str]], what: str) -> None:
    """Refuse inputs whose output names collide: ``pairs`` are (output name, input description).

    Raises:
        EulcError: two inputs would write the same outputs (both named).
    """
    seen: dict[str, str] = {}
    for name, src in pairs:
        if name in seen:
            raise EulcError(
                f"{what} {seen[name]} and {src} would both write {name!r}",
                "Rename one of them, or map them in separate runs",
            )
        seen[name] = src
