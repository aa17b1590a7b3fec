"""One exception family for eulc, with messages that say what to change.

Every error raised on bad input derives from :class:`EulcError`. The CLI prints
``str(err)`` on one line and exits with status 2, without a traceback
(``--debug`` shows it). Modelled on rasterio's ``RasterioError`` family (DESIGN.md §4).
"""

from __future__ import annotations

from pathlib import Path


class EulcError(Exception):
    """Base class of every eulc error caused by input, configuration or data.

    Args:
        what: what is wrong, naming the file, band or column.
        fix: what the user should change.
        path: the offending file, when there is one; it prefixes the message.
    """

    def __init__(self, what: str, fix: str = "", path: str | Path | None = None) -> None:
        self.what = what
        self.fix = fix
        self.path = None if path is None else Path(path)
        msg = f"{self.path}: {what}" if self.path is not None else what
        if fix:
            msg = f"{msg}. {fix}"
        super().__init__(msg)


class DataDirError(EulcError):
    """The real-data directory (``EULC_DATA``) is missing or incomplete."""


class SpecError(EulcError):
    """A feature spec or feature selection is invalid (unknown key, bad expression, ...)."""


class SchemaError(EulcError):
    """A table lacks a required column, or a column has values of the wrong kind."""


class RasterError(EulcError):
    """A raster is unreadable, truncated, lacks a band, or has a CRS the grid cannot handle."""


class NoSceneError(RasterError):
    """No acquisition covers a window (a tile, or one row block of it) in the map year."""


class BundleError(EulcError):
    """A model bundle is incomplete, inconsistent, or does not match the features given."""


class ContractError(EulcError):
    """Two artifacts disagree on what their features mean (spec semantics, order or digest)."""
