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
the one-by-one feed)."""

from __future__ import annotations

from typing import Any


def hold(dirty: set[str], held: dict[str, Any], task_ids: list[str], now: Any) -> bool:
    """Each of ``task_ids`` neither dirty nor held already is held from ``now``, in order (a
    repeat keeps its first place); True if the run holds any change after it."""
    for task_id in task_ids:
        if task_id not in dirty:
            # (one look-up: a task held already keeps its first time)
            held.setdefault(task_id, now)
    return len(held) > 0


def unhold(held: dict[str, Any], task_ids: list[str]) -> bool:
    """``task_ids`` (made dirty by the caller) no longer held; True if that emptied ``held``."""
    if not held:
        return False
    for task_id in task_ids:
        held.pop(task_id, None)
    return not held


def release(held: dict[str, Any], dirty: set[str], cutoff: Any) -> bool:
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
    dirty.update(expired)
    return True
