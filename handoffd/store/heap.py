"""The daemon's C heap settings (glibc ``mallopt``), applied once at start before any thread runs.

A daemon's first big run grows its heap, and every page it touches for the first time is a page
fault. glibc's defaults make that first run dearer than it needs to be, in three ways:

- *One arena per thread.* A thread that is not the main one gets its own arena (a 64 MiB
  reservation), and such an arena grows one page at a time, each by an ``mprotect`` call: glibc
  pads only the main arena's growth (``M_TOP_PAD``). An upload's build runs on its own thread and
  made a thousand of these calls in a 10,000-task run. Its memory, once freed, is kept for that
  arena alone. With one arena (``ARENA_MAX``) every thread allocates from the main heap: it grows
  by ``TOP_PAD`` at a time, and what one thread frees (an upload's buffers) the next reuses. The
  price is one arena lock for all: Python threads allocate holding the GIL (so they never
  contend with each other) and glibc's per-thread cache serves many small blocks without the
  lock; libzmq's I/O threads, which allocate each message's buffer, now take the main arena's
  lock where they took their own.
- *Big buffers as their own mappings.* A block of 128 KiB or more is ``mmap``-ed and unmapped
  again on free, faulting in all its pages each time, until glibc raises that threshold at the
  first free of such a block. A run's big transient buffers (its submission, the standby's
  snapshot, CURVE's copies of them) all came as fresh mappings in a daemon's first run.
  ``MMAP_THRESHOLD`` fixes the threshold above them; a bigger block (a large value) is still a
  mapping of its own, returned whole when freed.
- *Trimming.* Setting the threshold stops glibc's adjusting the trim threshold (freed memory at
  the heap's top past it goes back to the system): ``TRIM_THRESHOLD`` keeps as much as glibc's
  own adjustment would for blocks at the threshold (twice it).

Idle memory: at most ``TRIM_THRESHOLD`` of freed memory stays at the heap's top (the dynamic
settings kept up to twice the largest block freed, up to 64 MiB); a dropped big run is still
given back by ``store.release_free_memory`` (``malloc_trim`` ignores these settings). Nothing is
touched in advance. Where glibc's ``mallopt`` is not available (not Linux, another C library)
nothing changes.
"""

from __future__ import annotations

import sys
from typing import Any

# mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

ARENA_MAX = 1
TOP_PAD = 1 << 20  # the main heap grows (and is trimmed down to) at least this much past need
MMAP_THRESHOLD = 2 << 20  # blocks this large or larger are mappings of their own
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

SETTINGS = (
    (M_ARENA_MAX, ARENA_MAX),
    (M_TOP_PAD, TOP_PAD),
    (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
)

_applied: tuple[int, ...] | None = None  # what ``tune`` got back from each mallopt, once done


def tune() -> tuple[int, ...]:
    """Apply ``SETTINGS`` to this process's C heap (module doc), once; call it before the process
    starts any thread (an arena already made for a thread stays in use). Returns mallopt's result
    for each setting (1 done, 0 refused); an empty tuple where mallopt is not available."""
    global _applied
    if _applied is None:
        mallopt = _find_mallopt()
        _applied = () if mallopt is None else tuple(mallopt(p, v) for p, v in SETTINGS)
    return _applied


def _find_mallopt() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt
