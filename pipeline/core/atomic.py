"""The one guarded way eulc writes a file: temporary sibling, fsync, verify, rename, record.

Every output of every command goes through :func:`atomic_path` (or :func:`write_json` on it):

1. ``dest`` must not be a symbolic link, and if it exists it must be a file eulc wrote (its name
   recorded in the folder's :data:`WRITTEN` journal, or recognised by the caller, e.g. a
   FeatureTable's own metadata); anything else is refused: eulc never replaces a file it did not
   write.
2. The body writes a temporary ``.eulc-tmp.<host>.<pid>.<name>.<random>[suffix]`` (:data:`PREFIX`,
   made with ``O_EXCL``, so it never follows a link) in the same folder.
3. The temporary is flushed to disk (``fsync``) and verified: not empty, and the caller's check
   (a raster's last block decoded, :func:`pipeline.core.cog.verify_cog`).
4. ``dest``'s name is recorded in the journal, then the temporary is renamed onto it and the folder
   entry is flushed (recorded first, so a kill between the two leaves a file eulc knows as its own).

A crash or an error leaves either the previous file or nothing, never half a file; a full disk
(or a file-size limit) ends in :class:`WriteError` naming the path and the free space, and nothing
is recorded. Temporaries of dead runs are removed by the next run (:func:`remove_leftovers`, which
every command calls through :func:`pipeline.core.ledger.folder_lock`), and nothing else: eulc never
deletes a file it did not write. Locks and databases are opened with :func:`open_no_follow`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.core.errors import EulcError

PREFIX = ".eulc-tmp."
"""Start of every temporary file or folder name eulc writes."""

WRITTEN = ".eulc-written"
"""Per-folder journal (JSON lines ``{"name": ...}``) of the files eulc wrote there."""

NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""``errno`` values that mean the disk (or quota, or file-size limit) is full."""


class WriteError(EulcError):
    """A file could not be written completely: the disk is full, a quota or file-size limit was
    reached, or the written file did not read back. The CLI exits with status 1 (the input was
    fine; the run can be repeated once there is room).
    """

    exit_code = 1


def refuse_link(path: str | Path) -> None:
    """Refuse to create, replace or lock ``path`` through a symbolic link.

    Raises:
        EulcError: ``path`` is a symbolic link (even a dangling one).
    """
    if os.path.islink(path):
        raise EulcError(
            "is a symbolic link; eulc does not write through links",
            "Remove the link or choose another `out`",
            path=path,
        )


def open_no_follow(path: str | Path, flags: int = os.O_RDWR | os.O_CREAT, mode: int = 0o666) -> int:
    """``os.open`` that refuses symbolic links (``O_NOFOLLOW``) and non-regular files, never
    truncates, and closes on exec: for locks and journals.

    Raises:
        EulcError: ``path`` is a link, or exists and is not a regular file.
    """
    refuse_link(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            refuse_link(path)
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise EulcError("is not a regular file", "Remove it or choose another `out`", path=path)
    return fd


def record_written(folder: str | Path, name: str) -> None:
    """Append ``name`` to ``folder``'s :data:`WRITTEN` journal (one ``O_APPEND`` write per line,
    so concurrent workers do not interleave). :func:`atomic_path` records the name *before* the
    rename, so a kill between the two never leaves an output eulc would not recognise.
    """
    line = json.dumps({"name": name}, separators=(",", ":")) + "\n"
    fd = open_no_follow(Path(folder) / WRITTEN, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


_JOURNALS: dict[str, tuple[int, int, set[str]]] = {}
"""Parsed journals by path: (inode, bytes read, names); only the appended tail is read again, so
a run writing n files reads its journal in O(n), not O(n²)."""


def _journal(folder: Path) -> set[str]:
    journal = folder / WRITTEN
    if os.path.islink(journal) or not journal.is_file():
        return set()
    st = os.stat(journal)
    key = str(journal.resolve())
    ino, done, names = _JOURNALS.get(key, (st.st_ino, 0, set()))
    if ino != st.st_ino or st.st_size < done:
        ino, done, names = st.st_ino, 0, set()
    if st.st_size > done:
        with open(journal, "rb") as fh:
            fh.seek(done)
            tail = fh.read()
        whole = tail[: tail.rfind(b"\n") + 1]  # a line still being appended is read next time
        for ln in whole.decode("utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(ln)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("name"), str):
                names.add(rec["name"])
        done += len(whole)
    _JOURNALS[key] = (ino, done, names)
    return names


def written_by_eulc(path: str | Path) -> bool:
    """True if ``path`` is a regular file under a name eulc wrote in its folder (its journal
    records the name). The content may have changed since (a damaged output is redone by the
    next run); a name eulc never wrote there is the user's.
    """
    path = Path(path)
    if os.path.islink(path) or not path.is_file():
        return False
    try:
        return path.name in _journal(path.parent)
    except OSError:
        return False


def check_replaceable(dest: str | Path, recognise: Callable[[Path], bool] | None = None) -> None:
    """Refuse to replace ``dest`` unless it is missing or a file eulc wrote.

    Args:
        dest: the path about to be written.
        recognise: the caller's own test for its earlier output (e.g. a FeatureTable's metadata),
            for files written before the journal or whose journal was removed.

    Raises:
        EulcError: ``dest`` is a link, a folder, or a file eulc did not write.
    """
    dest = Path(dest)
    if dest.name == WRITTEN or dest.name.startswith(PREFIX):
        raise EulcError(
            "is a name eulc keeps for its own journal and temporaries", "Choose another file name", path=dest
        )
    refuse_link(dest)
    refuse_link(dest.parent / WRITTEN)  # the journal is appended to with the write
    if not os.path.lexists(dest):
        return
    if not dest.is_file():
        raise EulcError("exists and is not a file", "Choose another `out`", path=dest)
    if written_by_eulc(dest) or (recognise is not None and recognise(dest)):
        return
    raise EulcError(
        "exists and was not written by eulc",
        "Move it away or choose another `out`; eulc never replaces a file it did not write",
        path=dest,
    )


def check_all_replaceable(folder: str | Path, names: list[str] | tuple[str, ...]) -> None:
    """:func:`check_replaceable` for every name a command may write in ``folder``, before it writes
    the first: a refusal then leaves no partial output.

    Raises:
        EulcError: as :func:`check_replaceable`, for the first name refused.
    """
    for name in names:
        check_replaceable(Path(folder) / name)


def free_bytes(folder: str | Path) -> int | None:
    """Bytes free to this user on ``folder``'s file system, or None if unknown."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _no_space(e: BaseException) -> bool:
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in NO_SPACE:
            return True
        text = str(seen).lower()
        if "no space left" in text or "file too large" in text or "disk quota" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def write_failed(dest: str | Path, reason: str) -> WriteError:
    """The :class:`WriteError` for ``dest``, naming the free space on its disk."""
    dest = Path(dest)
    free = free_bytes(dest.parent)
    shown = "unknown" if free is None else f"{free / 2**20:.1f} MiB"
    return WriteError(
        f"could not be written completely ({reason}; {shown} free on its disk)",
        "Free some space (or raise the file-size limit) and rerun: nothing was recorded as done",
        path=dest,
    )


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
        parts = p.name[len(PREFIX) :].split(".", 2)
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
def atomic_path(
    dest: str | Path,
    suffix: str | None = None,
    *,
    verify: Callable[[Path], None] | None = None,
    recognise: Callable[[Path], bool] | None = None,
    allow_empty: bool = False,
) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; when the body ends, flush, verify and rename it onto
    ``dest`` and record it as eulc's (module docstring).

    Args:
        dest: the final path. Its parent folder is created if needed; ``dest`` itself must not be a
            link, and if it exists must be a file eulc wrote (:func:`check_replaceable`).
        suffix: the temporary file's suffix (default: that of ``dest``, so GDAL drivers
            that look at the extension still work).
        verify: called with the written temporary before the rename; raises if it is incomplete.
        recognise: passed to :func:`check_replaceable`.
        allow_empty: accept a 0-byte file (otherwise an empty temporary is an incomplete write).

    Yields:
        A path in the same folder; the caller writes the file there.

    Raises:
        EulcError: ``dest`` is a link or a file eulc did not write.
        WriteError: the disk is full, or the file did not read back.
        Whatever else the body raises; the temporary file is then removed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    check_replaceable(dest, recognise)
    fd, tmp = tempfile.mkstemp(
        prefix=temp_prefix(dest.name),
        suffix=suffix if suffix is not None else dest.suffix,
        dir=dest.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            if not tmp_path.exists() or tmp_path.is_symlink():
                raise write_failed(dest, "the writer left no file")
            if tmp_path.is_file():
                _fsync(tmp_path)
                if not allow_empty and tmp_path.stat().st_size == 0:
                    raise write_failed(dest, "0 bytes were written")
            if verify is not None:
                verify(tmp_path)
            os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600
            check_replaceable(dest, recognise)  # nothing swapped in while we wrote
            record_written(dest.parent, dest.name)  # first: a kill after the rename still finds it recorded
            os.replace(tmp_path, dest)
            _fsync_dir(dest.parent)
        except WriteError:
            raise
        except Exception as e:
            if _no_space(e) or (free_bytes(dest.parent) or 1) < 2**20:
                raise write_failed(dest, "no space left" if _no_space(e) else str(e).splitlines()[0][:200]) from e
            raise
    except BaseException:
        if tmp_path.is_dir() and not tmp_path.is_symlink():
            shutil.rmtree(tmp_path, ignore_errors=True)
        else:
            tmp_path.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(
    dest: str | Path, obj: Any, indent: int | None = 2, recognise: Callable[[Path], bool] | None = None
) -> None:
    """Write ``obj`` as UTF-8 JSON to ``dest`` through :func:`atomic_path` (``indent=None``: compact).

    Raises:
        EulcError, WriteError: as :func:`atomic_path`.
    """
    with atomic_path(dest, recognise=recognise) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, sort_keys=False) + "\n", encoding="utf-8")
