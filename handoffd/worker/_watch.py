"""Measuring what a worker's task holds in memory: the resident set of the worker and of every
process it started (its descendants), read from /proc: a statm read per worker and a stat read
per descendant on every look; the process table (who is whose child: a stat read of every process
on the machine, ~2-5 ms with a few hundred) is scanned again only every ``SCAN_INTERVAL``, so a
task's new child process counts from the first look after the next scan. A descendant whose parent
is no longer the one the last scan saw (it exited, its pid was reused, or it was re-parented) is
left out until the next scan.

The task's use is the tree's resident memory minus what the worker alone held when the task
became its head (the interpreter, imports, caches of earlier tasks): a task is charged for what it
added. Linux only: elsewhere ``available()`` is False and the pool does not enforce memory.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from handoffd.worker._contain import parent_map, parse_ppid

if TYPE_CHECKING:
    from handoffd.worker._records import Job, Worker

# Seconds between looks at the memory of running jobs.
INTERVAL = 0.1
# Seconds between scans of the process table for the descendants of the workers measured (a scan
# every look cost the daemon's loop ~5 ms per 0.1 s with 180 processes on the machine).
SCAN_INTERVAL = 1.0
# ``on_memory`` is told of a change of at least this many MB (or to or from 0): gossip is not
# re-sent for every page a task touches.
REPORT_STEP = 32.0

MB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def available() -> bool:
    return os.path.exists("/proc/self/statm")


def descendants(pid: int, children: dict[int, list[int]]) -> list[int]:
    out: list[int] = []
    todo = list(children.get(pid, ()))
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(children.get(child, ()))
    return out


def rss(pid: int) -> int:
    """Resident bytes of one process; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def child_rss(pid: int, parent: int) -> int | None:
    """Resident bytes of ``pid`` if it is still a child of ``parent``; None if not (or gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    if parse_ppid(stat) != parent:
        return None
    try:  # after "pid (comm) ": state ppid ... rss is the 22nd field
        return int(stat[stat.rfind(b")") + 2 :].split()[21]) * _PAGE
    except (IndexError, ValueError):
        return None


def descendants_rss(pid: int, children: dict[int, list[int]]) -> int:
    """Resident bytes of the descendants of ``pid`` in ``children`` (a parent map that may be up
    to SCAN_INTERVAL old): each one counts, with its own descendants, only while its parent is
    still the one the map says."""
    total = 0
    todo = [(child, pid) for child in children.get(pid, ())]
    while todo:
        child, parent = todo.pop()
        size = child_rss(child, parent)
        if size is not None:
            total += size
            todo.extend((grandchild, child) for grandchild in children.get(child, ()))
    return total


def measure(
    workers: Sequence[Worker], children: dict[int, list[int]] | None = None
) -> list[tuple[Worker, int]]:
    """Each worker with the resident bytes its head job holds (its process tree's, less the
    worker's own when the job became its head). ``children``: a parent map (``parent_map()``,
    scanned now when not given)."""
    if children is None:
        children = parent_map()
    out = []
    for worker in workers:
        pid = worker.process.pid
        if pid is not None and worker.head is not None:
            used = rss(pid) + descendants_rss(pid, children) - worker.baseline
            out.append((worker, max(0, used)))
    return out


class MemoryWatch:
    """While jobs run, look at them every ``INTERVAL``: call ``kill(worker, used)`` for one over its
    ceiling (its ``Job.memory``, else ``bound``; no ``kill``: nothing is enforced) and tell
    ``on_memory`` the MB running jobs hold beyond what they declared, when that changes."""

    def __init__(
        self,
        busy: Callable[[], list[Worker]],
        kill: Callable[[Worker, int], None] | None,
        bound: float | None,
        on_memory: Callable[[float], None] | None,
    ) -> None:
        self._busy, self._kill, self._bound, self._on_memory = busy, kill, bound, on_memory
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._beyond = 0.0  # MB last told to on_memory
        self._closed = False
        self._children: dict[int, list[int]] = {}  # the last scan's parent map
        self._scanned: float | None = None  # loop time of that scan

    def started(self, worker: Worker, job: Job, loop: asyncio.AbstractEventLoop) -> None:
        """``job`` became the worker's head: measure the worker alone now, and watch it."""
        if worker.statm is None:
            pid = worker.process.pid  # (a property and its check: asked until the file is open)
            if pid is None:
                return
        worker.limit = job.memory if job.memory is not None else self._bound
        if worker.statm is None:  # kept open: a pread per job instead of open, read, close
            try:
                worker.statm = os.open(f"/proc/{pid}/statm", os.O_RDONLY)
            except OSError:
                return
        try:
            worker.baseline = int(os.pread(worker.statm, 128, 0).split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            worker.baseline = 0
        self._loop = loop
        self._soon()

    @staticmethod
    def forget(worker: Worker) -> None:
        """The worker is leaving the pool."""
        if worker.statm is not None:
            os.close(worker.statm)
            worker.statm = None

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _soon(self) -> None:
        if self._timer is None and self._loop is not None and not self._closed:
            self._timer = self._loop.call_later(INTERVAL, self._look)

    def _look(self) -> None:
        self._timer = None
        if self._closed:
            return
        watched = self._busy()
        if watched and self._loop is not None:
            now = self._loop.time()
            if self._scanned is None or now - self._scanned >= SCAN_INTERVAL:
                self._children, self._scanned = parent_map(), now
        beyond = 0
        for worker, used in measure(watched, self._children) if watched else []:
            limit, head = worker.limit, worker.head
            assert head is not None
            if self._kill is not None and limit is not None and used > limit * MB:
                self._kill(worker, used)
            else:
                beyond += max(0, used - int((head.memory or 0) * MB))
        mb = beyond / MB
        told = self._beyond
        if self._on_memory is not None and (
            abs(mb - told) >= REPORT_STEP or (mb == 0) != (told == 0)
        ):
            self._beyond = mb
            self._on_memory(mb)
        if watched:
            self._soon()
