# cython: annotation_typing=False
# (the annotations are for mypy; block.pxd beside it gives the compiled build its C types)
"""A block of one run's values held in the store's memory at once (``ResultStore.put_all``).

Compiled (``setup.py EXECUTOR_COMPILED``) with block.pxd's types, this file is also its own
pure-Python twin (``tests/unit/test_store_put_all.py`` runs both builds). One loop a block: each
value's key made and hashed once, held by one ``setdefault`` whose count says whether the key was
there already; a key held before (in memory or spilled) or twice in the block undoes what the loop
held, so the caller sees the store as it was and puts the values one by one."""

from __future__ import annotations

from collections.abc import Sequence
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
