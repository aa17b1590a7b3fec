"""Atomic file output: write to a temporary sibling, then rename into place.

A crash or an error leaves either the previous file or nothing, never half a file. Every
temporary eulc makes is named ``.eulc-tmp.<host>.<pid>.<name>.<random>[suffix]`` (:data:`PREFIX`):
the next run removes those its host's dead processes left (:func:`remove_leftovers`), and nothing
else: eulc never deletes a file it did not write.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PREFIX = ".eulc-tmp."
"""Start of every temporary file or folder name eulc writes."""


def temp_prefix(name: str) -> str:
    """The prefix of a temporary for ``name`` made by this process: ``.eulc-tmp.<host>.<pid>.<name>.``."""
    host = socket.gethostname().replace(".", "-") or "host"
    return f"{PREFIX}{host}.{os.getpid()}.{name}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_leftovers(folder: str | Path, all_hosts: bool = False) -> list[Path]:
    """Remove the temporaries that killed eulc processes left in ``folder`` (not recursive).

    Only names starting with :data:`PREFIX` are touched: those of this host whose process is no
    longer alive, and with ``all_hosts`` (the caller holds the folder's run lock, as ``eulc map``
    does) those of every host.

    Returns:
        The paths removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    here = socket.gethostname().replace(".", "-") or "host"
    gone = []
    for p in folder.iterdir():
        if not p.name.startswith(PREFIX):
            continue
        parts = p.name[len(PREFIX):].split(".", 2)
        if len(parts) < 3 or not parts[1].isdigit():
            continue
        host, pid = parts[0], int(parts[1])
        if (host == here and pid != os.getpid() and not _alive(pid)) or (all_hosts and pid != os.getpid()):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            gone.append(p)
    return gone


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
        prefix=temp_prefix(dest.name), suffix=suffix if suffix is not None else dest.suffix,
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
