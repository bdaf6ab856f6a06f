"""Measuring what a worker's task holds in memory: the resident set of the worker and of every
process it started (its descendants), read from /proc (one scan of the process table per look,
however many workers are measured; a statm read per process).

The task's use is the tree's resident memory minus what the worker alone held when the task
became its head (the interpreter, imports, caches of earlier tasks): a task is charged for what it
added. Linux only: elsewhere ``available()`` is False and the pool does not enforce memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from handoffd.worker._records import Worker

MB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def available() -> bool:
    return os.path.exists("/proc/self/statm")


def parent_map() -> dict[int, list[int]]:
    """ppid -> its children's pids, for every process we can see."""
    out: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        ppid = parse_ppid(stat)
        if ppid is not None:
            out.setdefault(ppid, []).append(int(name))
    return out


def parse_ppid(stat: bytes) -> int | None:
    """The parent pid from a /proc/PID/stat line (its comm may hold spaces and parentheses)."""
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


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


def tree_rss(pids: Iterable[int]) -> int:
    return sum(rss(pid) for pid in pids)


def over_limit(workers: Sequence[Worker]) -> list[tuple[Worker, int]]:
    """The workers whose head job holds more than its ceiling, with the bytes it holds."""
    children = parent_map()
    out = []
    for worker in workers:
        pid, limit = worker.process.pid, worker.limit
        if pid is None or limit is None or worker.head is None:
            continue
        used = tree_rss([pid, *descendants(pid, children)]) - worker.baseline
        if used > limit * MB:
            out.append((worker, used))
    return out
