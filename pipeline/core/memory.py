"""Giving the heap memory a row block freed back to the operating system (issue #28).

A feature tile is computed one row block at a time; each block allocates its stack and its series
chunks on several threads, and frees them when the block is done. glibc's ``malloc`` keeps freed
chunks that lie below live ones (and in the worker threads' arenas) for reuse, so the process's
resident set grows block after block although the live arrays do not (about 35–75 MB on a
10 km NDVI tile, ``benchmarks/RESULTS.md``). ``malloc_trim(0)`` returns every free page to the
system; dask.distributed's workers do the same ("Memory not released back to the OS",
dask.distributed documentation, *Worker Memory Management*).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim`` (glibc), or None where the C library has none (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return getattr(libc, "malloc_trim", None)


def return_freed_memory() -> bool:
    """Return the heap's free pages to the operating system (glibc ``malloc_trim(0)``); live
    memory is untouched.

    Returns:
        True where the C library can (glibc on Linux), False where this does nothing.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
