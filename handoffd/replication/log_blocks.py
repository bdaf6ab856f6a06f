# cython: annotation_typing=False
# (the annotations are for mypy; log_blocks.pxd beside it gives the compiled build its C types)
"""A block of task moves applied to a run's replication log, one loop a block (``ReplicationLog``).

Compiled (``setup.py EXECUTOR_COMPILED``, by dotted name) with log_blocks.pxd's types, this file is
also its own pure-Python twin (``tests/unit/test_log_blocks.py`` runs both builds). A dispatch
block's held moves, a success table's done ones and the release of held changes that are due
were each a few C calls over the block from Python (``dict.fromkeys`` then ``update``, a
``map`` of ``dict.pop`` consumed by a deque, ``takewhile`` and ``islice``): a temporary dict,
a bound-method call a task. Here each is one loop of the dicts' and sets' own C calls, and the
log's state after it is the one those calls left (``test_replication_stretch`` holds the log to
the one-by-one feed).

A run's dirty tasks are a dict (its values None) in the order each was first made dirty since its
last batch: the batch goes in that order (``take``), where sorting a set of them by id was ~0.7k
instructions a W1 task; a batch carries each task's current state, so its order changes no
standby's replica."""

from __future__ import annotations

from typing import Any


def hold(dirty: dict[str, None], held: dict[str, Any], task_ids: list[str], now: Any) -> bool:
    """Each of ``task_ids`` neither dirty nor held already is held from ``now``, in order (a
    repeat keeps its first place); True if the run holds any change after it."""
    for task_id in task_ids:
        if task_id not in dirty:
            # (one look-up: a task held already keeps its first time)
            held.setdefault(task_id, now)
    return len(held) > 0


def mark(dirty: dict[str, None], task_ids: list[str]) -> None:
    """Each of ``task_ids`` dirty, in order (one dirty already keeps its place)."""
    for task_id in task_ids:
        dirty[task_id] = None


def take(dirty: dict[str, None], limit: int | None) -> tuple[str, ...]:
    """The first ``limit`` (None: all) dirty tasks, in order, no longer dirty."""
    if limit is None or len(dirty) <= limit:
        tasks = tuple(dirty)
        dirty.clear()
        return tasks
    taken: list[str] = []
    for task_id in dirty:
        if len(taken) == limit:
            break
        taken.append(task_id)
    for task_id in taken:
        del dirty[task_id]
    return tuple(taken)


def unhold(held: dict[str, Any], task_ids: list[str]) -> bool:
    """``task_ids`` (made dirty by the caller) no longer held; True if that emptied ``held``."""
    if not held:
        return False
    for task_id in task_ids:
        held.pop(task_id, None)
    return not held


def release(held: dict[str, Any], dirty: dict[str, None], cutoff: Any) -> bool:
    """The leading held changes (time order) whose time is at most ``cutoff`` (None: all) become
    dirty; True if any did."""
    expired: list[str] = []
    if cutoff is None:
        expired = list(held)
    else:
        for task_id, since in held.items():
            if since > cutoff:
                break
            expired.append(task_id)
    if not expired:
        return False
    if len(expired) == len(held):
        held.clear()
    else:
        for task_id in expired:
            del held[task_id]
    for task_id in expired:
        dirty[task_id] = None
    return True
