"""How many cancels the pool has sent a worker, in 8 bytes of memory the two processes share.

Before each job's outcome the worker reads the cancels that came in while the job ran (see
``_process``: the outcome message then tells the pool whether the next job started). Most jobs
have none, and the look at the pipe was a ``poll`` a job. The pool counts here each cancel before
it writes it to the pipe, and the worker counts the cancels it has read: while the two counts are
equal no cancel can be waiting, and the worker does not look. A cancel counted but not yet written
makes the worker look and find nothing, as a cancel written after its look would: it looks again
after the next job, until it has read it. Without shared memory (no ``memfd_create``: not Linux)
the worker looks after every job, as before.
"""

from __future__ import annotations

import mmap
import os
from multiprocessing import reduction
from typing import Any

_SIZE = 8  # one unsigned 64-bit count


class Count:
    """The pool's side: ``add`` before each cancel is written to the worker's pipe."""

    __slots__ = ("fd", "map", "view", "sent")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.map = mmap.mmap(fd, _SIZE)
        self.view = memoryview(self.map).cast("Q")
        self.sent = 0

    @classmethod
    def create(cls) -> Count | None:
        """A fresh count at 0, or None where memory cannot be shared this way."""
        make = getattr(os, "memfd_create", None)
        if make is None:
            return None
        try:
            fd = make("handoffd-cancels", getattr(os, "MFD_CLOEXEC", 0))
        except OSError:
            return None
        try:
            os.ftruncate(fd, _SIZE)
            return cls(fd)
        except (OSError, ValueError):
            os.close(fd)
            return None

    def add(self) -> None:
        self.sent += 1
        self.view[0] = self.sent

    def for_worker(self) -> Shared:
        """What to pass in the worker's spawn arguments (its fd goes with it)."""
        return Shared(self.fd)

    def close(self) -> None:
        self.view.release()
        self.map.close()
        os.close(self.fd)


class Shared:
    """The count as a spawned worker receives it: pickled with its fd duplicated for the child
    (``multiprocessing.reduction.DupFd``, as a Connection's), read there with ``seen``."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return _attach, (reduction.DupFd(self.fd),)

    def seen(self) -> memoryview:
        """The count, ``[0]`` read as the pool last wrote it (kept open for the process's life)."""
        return memoryview(mmap.mmap(self.fd, _SIZE)).cast("Q")


def _attach(dup: Any) -> Shared:
    return Shared(dup.detach())
