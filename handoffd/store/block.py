# cython: annotation_typing=False
# (the annotations are for mypy; block.pxd beside it gives the compiled build its C types)
"""A block of one run's values held in the store's memory at once (``ResultStore.put_all``), and
a run's values taken out of it at once (``ResultStore.drop_run``).

Compiled (``setup.py EXECUTOR_COMPILED``) with block.pxd's types, this file is also its own
pure-Python twin (``tests/unit/test_store_put_all.py`` runs both builds). One loop a block: each
value's key made and hashed once, held by one ``setdefault`` whose count says whether the key was
there already; a key held before (in memory or spilled) or twice in the block undoes what the loop
held, so the caller sees the store as it was and puts the values one by one."""

from __future__ import annotations

import mmap
from collections.abc import Iterable, Sequence
from typing import Any


def hold_new(
    memory: dict[Any, Any],
    spilled: dict[Any, Any],
    run_id: str,
    task_ids: list[str],
    values: Sequence[Any],
) -> bool:
    """Each value held in ``memory`` under ``(run_id, task id)``, in order, when no key is held
    (in memory or spilled) and none comes twice: True. Else ``memory`` as it was: False."""
    count = len(task_ids)
    held = 0
    while held < count:
        key = (run_id, task_ids[held])
        if spilled and key in spilled:
            break
        before = len(memory)
        memory.setdefault(key, values[held])
        if len(memory) == before:  # (held already, or earlier in this block)
            break
        held += 1
    if held == count:
        return True
    undo = 0
    while undo < held:  # (the loop's own keys, each new when it held it)
        del memory[(run_id, task_ids[undo])]
        undo += 1
    return False


def drop_held(memory: dict[Any, Any], run_id: str, task_ids: Iterable[str]) -> tuple[int, int, Any]:
    """Each of ``task_ids``' values taken out of ``memory`` (keys ``(run_id, task id)``; one not
    there is skipped): (how many were, their bytes, a list of those that are ``mmap``s or None
    if none was). Every other value is unreferenced here when this returns (the caller's trim
    gives back only what is free); the ``mmap``s are the caller's to unmap off the loop."""
    count = 0
    freed = 0
    mapped = None
    for task_id in task_ids:
        value = memory.pop((run_id, task_id), None)
        if value is None:
            continue
        count += 1
        freed += len(value)
        if type(value) is mmap.mmap:
            if mapped is None:
                mapped = []
            mapped.append(value)
    return count, freed, mapped
