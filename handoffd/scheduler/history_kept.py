# cython: annotation_typing=False, boundscheck=False, wraparound=False
# (the annotations are for mypy; history_kept.pxd beside it gives the compiled build its C types;
# every index here is in range by construction: each column is as long as the tasks kept)
"""What a released run keeps of its task histories (issue 16) until it is forgotten.

A released run's records go (``owned.OwnedRuns.release``); ``keep`` takes what a history query
answers from them first, and ``thaw`` gives it back in ``history.freeze_all``'s shape when asked:
the transitions are built and shifted to the wall clock only then. Columns, one item a task in
the run's order, not a tuple a task: a task's id, state, node, deps and attempt rows are items of
the run's columns, and its moves are a stretch of one flat tuple of every task's moves (a task's
count of atoms kept only when the tasks' counts differ). Every item is an object the record held
(no row or move rebuilt), and the columns are tuples of atoms the collector stops tracking: a
release made a tuple of moves a task, young objects that each gen-0 collection of the release
walked. The loop reads the records' C fields (``history_kept.pxd`` cimports ``run``'s
``TaskRecord``), which ``history`` cannot: ``run`` cimports it.

Pure: no clock, no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from handoffd.scheduler import history
from handoffd.scheduler.history import STRIDE

if TYPE_CHECKING:
    from handoffd.scheduler.run import TaskRecord

#: What a released run keeps (``keep``): seven columns: task ids, states, nodes ("" for none),
#: deps, attempt rows (the one row itself for a task of one attempt, else a tuple of its rows),
#: every task's flat moves one after the other (``TaskRecord.moves``, in the run's own clock),
#: and each task's count of move atoms, None when every task has the same (the run's usual case).
Kept = tuple[
    tuple[str, ...],
    tuple[str, ...],
    tuple[str, ...],
    tuple[tuple[str, ...], ...],
    tuple[tuple[Any, ...], ...],
    tuple[Any, ...],
    "tuple[int, ...] | None",
]


def columns() -> list[list[Any]]:
    """Empty columns for ``keep_next``: for each of ``Kept``'s first six, a list of each slice's
    part (a list); the tasks' counts of move atoms (empty while they are all the same); and that
    one count ([-1] before the first task, [-2] once they differ)."""
    return [[], [], [], [], [], [], [], [-1]]


def keep(tasks: dict[str, TaskRecord], deps: dict[str, Any]) -> Kept:
    """What a released run keeps of each record of ``tasks`` (task id -> record, in the run's
    order; ``deps``: task id -> its dependencies), in one pass."""
    if len(tasks) == 1:  # (a one-task run, every ``execute``: no columns to grow and join)
        for rec in tasks.values():
            return _one(rec, deps)
    cols = columns()
    keep_next(list(tasks.values()), 0, len(tasks), deps, cols)
    return sealed(cols)


def _one(rec: TaskRecord, deps: dict[str, Any]) -> Kept:
    """``keep`` of a run of the one task ``rec``: each column a 1-tuple, its moves the flat tuple
    of the record's (one task: no count of atoms kept)."""
    task_id = rec.id
    attempts = rec.attempts
    return (
        (task_id,),
        (rec.state,),
        (rec.node or "",),
        (tuple(deps[task_id]),),
        (attempts[0] if len(attempts) == 1 else tuple(attempts),),
        tuple(rec.moves),
        None,
    )


def keep_next(
    records: list[TaskRecord], at: int, limit: int, deps: dict[str, Any], cols: list[list[Any]]
) -> int:
    """``keep`` of ``records[at:at + limit]`` added to ``cols`` (``columns()``, ``sealed`` at
    the end); where the next slice starts. A big run's release goes a slice at a time
    (``owned.Releasing``): the same columns as one ``keep``."""
    end = min(len(records), at + limit)
    if end < at:
        end = at
    m = end - at
    counts = cols[6]
    each = cols[7][0]
    total = 0
    kept_before = 0  # (tasks of the slices before this one)
    for part in cols[0]:
        kept_before += len(part)
    for k in range(at, end):
        rec = records[k]
        n = len(rec.moves)
        total += n
        if each == -2:
            counts.append(n)
        elif n != each:
            if each == -1:
                each = n
            else:  # the first task whose count differs: from now on each task's is kept
                counts.extend([each] * (kept_before + k - at))
                counts.append(n)
                each = -2
    cols[7][0] = each
    # Each column's part made at its size and filled in place, not appended to lists that grow:
    # their reallocations copied every column ~8 times over (the moves': 18 atoms a W1 task).
    ids: list[Any] = [None] * m
    states: list[Any] = [None] * m
    nodes: list[Any] = [None] * m
    needs: list[Any] = [None] * m
    rows: list[Any] = [None] * m
    flat: list[Any] = [None] * total
    j = 0
    for k in range(m):
        rec = records[at + k]
        task_id = rec.id
        ids[k] = task_id
        states[k] = rec.state
        nodes[k] = rec.node or ""
        needs[k] = tuple(deps[task_id])
        attempts = rec.attempts
        # (one attempt, the usual task: its row as the item, no tuple around it; ``_rows_of``)
        rows[k] = attempts[0] if len(attempts) == 1 else tuple(attempts)
        moves = rec.moves
        for i in range(len(moves)):
            flat[j] = moves[i]
            j += 1
    cols[0].append(ids)
    cols[1].append(states)
    cols[2].append(nodes)
    cols[3].append(needs)
    cols[4].append(rows)
    cols[5].append(flat)
    return end


def _joined(parts: list[list[Any]]) -> tuple[Any, ...]:
    """A column's parts (``keep_next``'s slices) as one tuple."""
    if len(parts) == 1:
        return tuple(parts[0])
    total = 0
    for part in parts:
        total += len(part)
    whole: list[Any] = [None] * total  # (one list at the size of all: a big run's, by slices)
    j = 0
    for part in parts:
        whole[j : j + len(part)] = part
        j += len(part)
    return tuple(whole)


def sealed(cols: list[list[Any]]) -> Kept:
    """``keep_next``'s columns as ``Kept``."""
    return (
        _joined(cols[0]),
        _joined(cols[1]),
        _joined(cols[2]),
        _joined(cols[3]),
        _joined(cols[4]),
        _joined(cols[5]),
        tuple(cols[6]) if cols[7][0] == -2 else None,
    )


def kept_count(kept: Kept) -> int:
    """How many tasks ``kept`` holds."""
    return len(kept[0])


def _rows_of(item: tuple[Any, ...]) -> tuple[tuple[Any, ...], ...]:
    """A task's attempt rows from its item of ``Kept``'s rows column: a row (its first field an
    int) stands for itself alone; a tuple of rows (or none) is itself."""
    if item and type(item[0]) is not tuple:
        return (item,)
    return item


def thaw(
    kept: Kept, wall_offset: float, since: float = 0.0, brief: bool = False
) -> tuple[history.Frozen, ...]:
    """``keep``'s tasks as ``history.freeze_all`` gives them (with ``since``, wall clock: those
    that moved since; ``brief``: without their transitions)."""
    ids, states, nodes, needs, rows, flat, counts = kept
    n = len(ids)
    each = len(flat) // n if n and counts is None else 0
    out = []
    end = 0
    for i in range(n):
        at = end
        end = at + (each if counts is None else counts[i])
        # (a task's moves are whole moves of STRIDE atoms: none, or its last one read here)
        if since and not (end - at >= STRIDE and flat[end - STRIDE] + wall_offset >= since):
            continue
        steps = () if brief else history.transitions(flat[at:end])
        out.append(
            history.freeze(
                ids[i], states[i], nodes[i], _rows_of(rows[i]), steps, wall_offset, needs[i]
            )
        )
    return tuple(out)
