"""Atomic file output: write to a temporary sibling, then rename into place.

A crash or an error leaves either the previous file or nothing, never half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(dest: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` on success.

    Args:
        dest: the final path. Its parent folder is created if needed.
        suffix: the temporary file's suffix (default: that of ``dest``, so GDAL drivers
            that look at the extension still work).

    Yields:
        A path in the same folder; the caller writes the file there.

    Raises:
        Whatever the body raises; the temporary file is then removed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{dest.name}.", suffix=suffix if suffix is not None else dest.suffix,
        dir=dest.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600; give the file the usual umask mode
            os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(dest: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as UTF-8 JSON to ``dest`` atomically (``indent=None``: compact)."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, sort_keys=False) + "\n", encoding="utf-8")
