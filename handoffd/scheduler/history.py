# cython: annotation_typing=False
# (the annotations are for mypy; history.pxd beside it gives the compiled build its C types)
"""Task history: what happened to every attempt of a task (issue 16), kept by the owner.

Each ``TaskRecord`` holds a bounded list of attempt rows. ``RunState.move`` opens one when a task is
dispatched (ASSIGNED) and closes it when the task leaves ASSIGNED/RUNNING; the owner's shell adds
what only the executing node knows (worker pid, start and end, bytes in) from the report
(``observe``). Times are wall-clock seconds (the scheduler's monotonic ``now`` plus the run's
``wall_offset``), so an attempt's times mean the same on a standby that takes the run over. Closed
attempts travel to the standbys with the task's log delta (a row is the wire form of
``AttemptInfo``; ``row_of`` checks one that arrives) and survive a takeover. When the run is released
its records are dropped and only ``history_kept.keep``'s columns are kept until the run is
forgotten (``history_kept.thaw`` gives them the shape of ``freeze`` when asked).

Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgpack

#: Attempts kept per task (the first and the newest ones: a task lost over and over keeps its
#: first attempt, and the ones that tell how it ended).
ATTEMPTS_LIMIT = 16
_ACTIVE = ("ASSIGNED", "RUNNING")
# How an attempt ended when no report said so, by the task's new state.
_CLOSED_AS = {"DONE": "DONE", "FAILED": "FAILED", "CANCELLED": "CANCELLED"}


#: The fields of an attempt row, in order (``messages_observability.AttemptInfo``'s). ``state``:
#: ASSIGNED while out, then DONE, FAILED (the task's own error), TIMEOUT, CRASHED, CANCELLED or
#: LOST (lost to the cluster: node lost, input lost, report lost...). ``started``/``ended``: 0.0
#: while not known.
ATTEMPT_FIELDS = (
    "attempt",
    "node",
    "state",
    "dispatched",
    "started",
    "ended",
    "pid",
    "bytes_in",
    "bytes_out",
    "exc_type",
    "message",
    "traceback",
    "cause",
)
# An attempt is a row: a tuple of those 13 atoms (str, int, float), replaced whole when it
# changes. Not an object with fields: the collector untracks a tuple of atoms at its first
# collection, and an object (a C class with object fields too) stays tracked for good: a big
# run's finished tasks made every full collection on its owner walk one per task (issue 19).
# Their indices, for readers elsewhere; the compiled functions here index rows by literal (a
# module-level name is a Python object index there: a generic lookup each).
STATE, DISPATCHED, STARTED, ENDED, CAUSE = 2, 3, 4, 5, 12


def new_row(attempt: int, node: str, dispatched: float) -> tuple[Any, ...]:
    """A dispatch of ``attempt`` to ``node`` at ``dispatched`` (wall clock; 0.0: not known)."""
    return (attempt, node, "ASSIGNED", dispatched, 0.0, 0.0, 0, 0, 0, "", "", "", "")


def row_of(row: Sequence[Any]) -> tuple[Any, ...]:
    """A row from the wire or a snapshot, each field checked to its type (ValueError, TypeError
    when one is not)."""
    return (
        int(row[0]),
        str(row[1]),
        str(row[2]),
        float(row[3]),
        float(row[4]),
        float(row[5]),
        int(row[6]),
        int(row[7]),
        int(row[8]),
        str(row[9]),
        str(row[10]),
        str(row[11]),
        str(row[12]),
    )


def _index(attempts: list[tuple[Any, ...]], attempt: int) -> int:
    """The index of ``attempt``'s row (the newest such), -1 if none."""
    i = len(attempts) - 1
    while i >= 0:
        a = attempts[i][0]
        if a is attempt or a == attempt:  # (a small int is one object: no compare)
            return i
        i -= 1
    return -1


def _append(attempts: list[tuple[Any, ...]], row: tuple[Any, ...]) -> int:
    """Append ``row`` (the first and the newest are kept); returns its index."""
    attempts.append(row)
    if len(attempts) > ATTEMPTS_LIMIT:
        del attempts[1]  # keep the first one
    return len(attempts) - 1


def _with(row: tuple[Any, ...], state: str, ended: float, cause: str) -> tuple[Any, ...]:
    # (each field by index: unpacking slices built a list and a tuple a closed attempt)
    return (
        row[0],
        row[1],
        state,
        row[3],
        row[4],
        ended,
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
        cause,
    )


def opened(attempts: list[tuple[Any, ...]], attempt: int, node: str, wall: float) -> None:
    """The task was dispatched to ``node`` as ``attempt`` at ``wall``."""
    _append(attempts, new_row(attempt, node, wall))


def moved(
    attempts: list[tuple[Any, ...]],
    attempt: int,
    node: str | None,
    old: str,
    new: str,
    wall: float,
    cause: str,
) -> None:
    """The task moved ``old`` -> ``new``: an attempt that was out ends here."""
    if new == "RUNNING":
        i = _index(attempts, attempt)
        if i >= 0 and not attempts[i][4]:
            a = attempts[i]
            attempts[i] = (
                a[0],
                a[1],
                a[2],
                a[3],
                wall,
                a[5],
                a[6],
                a[7],
                a[8],
                a[9],
                a[10],
                a[11],
                a[12],
            )
        return
    if old not in _ACTIVE or node is None:
        return
    i = _index(attempts, attempt)
    if i < 0:  # out when we took the run over, dispatched by the previous owner
        i = _append(attempts, new_row(attempt, node, 0.0))
    a = attempts[i]
    closed_as = _CLOSED_AS  # (typed: the dict's own get, not a method looked up and called)
    attempts[i] = _with(
        a,
        closed_as.get(new, "LOST") if a[2] in _ACTIVE else a[2],
        a[5] if a[5] else wall,
        a[12] if a[12] else cause,
    )


def succeeded(
    attempts: list[tuple[Any, ...]], attempt: int, node: str, wall: float, cause: str
) -> None:
    """``moved(attempts, attempt, node, old, "DONE", wall, cause)`` for ``old`` ASSIGNED or
    RUNNING and ``node`` not None (a success report's row: ``successes.finish``), its tests
    written out for that one case."""
    i = _index(attempts, attempt)
    if i < 0:  # out when we took the run over, dispatched by the previous owner
        i = _append(attempts, new_row(attempt, node, 0.0))
    a = attempts[i]
    state = a[2]
    if state == "ASSIGNED" or state == "RUNNING":  # (``_ACTIVE``: still open, closed as DONE)
        state = "DONE"
    ended = a[5]
    if not ended:
        ended = wall
    said = a[12]
    if not said:
        said = cause
    attempts[i] = (
        a[0],
        a[1],
        state,
        a[3],
        a[4],
        ended,
        a[6],
        a[7],
        a[8],
        a[9],
        a[10],
        a[11],
        said,
    )


def settled(
    attempts: list[tuple[Any, ...]], state: str, attempt: int, found_on: str | None
) -> None:
    """A takeover merged the task into ``state``; ``found_on``: the node that answered it runs
    ``attempt`` (RUNNING) or holds its value (DONE, finished after the last log batch). The
    attempts the old owner had out and nobody holds any more were lost with it."""
    found = -1
    for i in range(len(attempts)):
        a = attempts[i]
        if found_on is not None and a[0] == attempt and a[1] == found_on:
            found = i
        elif a[2] in _ACTIVE:
            attempts[i] = _with(a, "LOST", a[5], "lost in the owner's takeover")
    if found_on is None:
        return
    if found < 0:  # dispatched after the last batch the standby got
        found = _append(attempts, new_row(attempt, found_on, 0.0))
    a = attempts[found]
    if state == "DONE" and a[2] in _ACTIVE:
        attempts[found] = _with(a, "DONE", a[5], f"result found on {found_on} at the takeover")


def observe(
    attempts: list[tuple[Any, ...]],
    attempt: int,
    node: str,
    *,
    state: str,
    pid: int,
    started: float,
    ended: float,
    bytes_in: int,
    bytes_out: int,
    error: tuple[str, str, str] = ("", "", ""),
) -> None:
    """The executing node reported the attempt (even a stale one: it is history all the same).
    ``state``: DONE, or the failure kind (error, timeout, crash, cancelled, input_lost)."""
    i = _index(attempts, attempt)
    if i < 0:
        i = _append(attempts, new_row(attempt, node, 0.0))
    a = attempts[i]
    exc_type, message, traceback = error
    attempts[i] = (
        a[0],
        a[1],
        _REPORTED.get(state, state.upper()),
        a[3],
        started if started else a[4],
        ended if ended else a[5],
        pid,
        bytes_in,
        bytes_out,
        exc_type,
        message,
        traceback,
        a[12],
    )


def observe_done(
    tasks: dict[str, Any],
    node: str,
    task_ids: Sequence[str],
    attempts: Sequence[int],
    pids: Sequence[int],
    started: Sequence[float],
    ended: Sequence[float],
    bytes_in: Sequence[int],
    bytes_out: Sequence[int],
    delays: list[float],
) -> None:
    """``observe`` of each DONE report of a node's message (columns; ``tasks``: task id -> record
    with ``attempts``), unknown tasks skipped, compiled; ``delays`` gets the time from each
    attempt's dispatch to its start (``dispatch_delays``), in report order (a typed list)."""
    dispatch_delays(tasks, task_ids, attempts, started, delays)
    for k in range(len(task_ids)):
        rec = tasks.get(task_ids[k])
        if rec is not None:
            a, pid, began = attempts[k], pids[k], started[k]
            observe_row(rec.attempts, a, node, pid, began, ended[k], bytes_in[k], bytes_out[k])


def observe_row(
    trail: list[tuple[Any, ...]],
    attempt: int,
    node: str,
    pid: int,
    began: float,
    end: float,
    bytes_in: int,
    bytes_out: int,
) -> None:
    """``observe`` of one DONE report (``observe_done``'s row; ``successes.apply``'s of a row
    it does not take)."""
    i = _index(trail, attempt)
    if i < 0:
        i = _append(trail, new_row(attempt, node, 0.0))
    a = trail[i]
    trail[i] = (
        a[0],
        a[1],
        "DONE",
        a[3],
        began if began else a[4],
        end if end else a[5],
        pid,
        bytes_in,
        bytes_out,
        "",
        "",
        "",
        a[12],
    )


def done(
    trail: list[tuple[Any, ...]],
    attempt: int,
    node: str,
    pid: int,
    began: float,
    end: float,
    bytes_in: int,
    bytes_out: int,
    wall: float,
    cause: str,
) -> None:
    """``observe_row`` then ``succeeded(trail, attempt, node, wall, cause)``, the row built once
    (the report's pid, start, end, bytes; DONE, ``wall`` for no end, ``cause`` for none)."""
    i = _index(trail, attempt)
    if i < 0:  # out when we took the run over, dispatched by the previous owner
        i = _append(trail, new_row(attempt, node, 0.0))
    a = trail[i]
    e = end  # (the report's times tested as C doubles, the objects kept: see the .pxd)
    if not e:
        end = a[5]
        if not end:
            end = wall
    said = a[12]
    if not said:
        said = cause
    b = began
    trail[i] = (
        a[0],
        a[1],
        "DONE",
        a[3],
        began if b else a[4],
        end,
        pid,
        bytes_in,
        bytes_out,
        "",
        "",
        "",
        said,
    )


def dispatch_delays(
    tasks: dict[str, Any],
    task_ids: Sequence[str],
    attempts: Sequence[int],
    started: Sequence[float],
    delays: list[float],
) -> None:
    """``observe_done``'s ``delays`` (its latest attempt's, reported started) as its rows leave
    the trails: a report of an attempt a trail lacks adds its row last (no dispatch time)."""
    added: set[str] | None = None
    for k in range(len(task_ids)):
        task_id = task_ids[k]
        rec = tasks.get(task_id)
        if rec is None or (added is not None and task_id in added):
            continue
        trail = rec.attempts
        attempt = attempts[k]
        if trail:
            last = trail[-1]
            if last[0] == attempt:
                began = started[k]
                was = last[3]
                if began and was:  # (``max(0.0, ...)``, NaN too, without its call)
                    took = began - was
                    delays.append(took if took > 0.0 else 0.0)
                continue
        if _index(trail, attempt) < 0:
            if added is None:
                added = set()
            added.add(task_id)


_REPORTED = {
    "DONE": "DONE",
    "error": "FAILED",
    "timeout": "TIMEOUT",
    "crash": "CRASHED",
    "cancelled": "CANCELLED",
    "input_lost": "LOST",
    "storage": "FAILED",
}


def rows(attempts: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
    """As plain data (``RunState.snapshot``)."""
    return [list(a) for a in attempts]


def restore(rows_: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    return [row_of(r) for r in rows_][-ATTEMPTS_LIMIT:]


# -- transitions -------------------------------------------------------------------------------
# A task's transitions (``TaskRecord.moves``) are one flat list, ``STRIDE`` atoms per move:
# (now, old, new, cause, a, b). ``cause`` is the text (``a`` None), or for the moves every task
# makes a code whose text ``cause_text`` builds from ``a`` (never None) and ``b`` only when read
# (a query, a snapshot, an illegal move's message). Not a tuple per move nor a string built per move: both were per-task
# costs on the owner for text rarely read, and a flat list of atoms adds no tracked object.

STRIDE = 6
#: ``a`` = node, ``b`` = attempt
DISPATCHED_TO = 1
#: ``a`` = the input's task id
INPUTS_READY = 2
#: ``a`` = node
STARTED_ON = 3


def cause_text(cause: Any, a: Any, b: Any) -> str:
    """The text of a move's ``cause`` (a code, or the text itself)."""
    if cause == DISPATCHED_TO:
        return f"dispatched to {a} attempt {b}"
    if cause == INPUTS_READY:
        return f"inputs ready ({a} done)"
    if cause == STARTED_ON:
        return f"started on {a}"
    return str(cause)


def transitions(moves: Sequence[Any]) -> list[tuple[float, str, str, str]]:
    """The (time, old, new, cause text) tuples of a flat list (or tuple) of moves."""
    out = []
    for i in range(0, len(moves), STRIDE):
        cause = moves[i + 3]
        if moves[i + 4] is not None:  # a code (a restored cause is kept as it came: None, None)
            cause = cause_text(cause, moves[i + 4], moves[i + 5])
        out.append((moves[i], moves[i + 1], moves[i + 2], cause))
    return out


def flat(history: Iterable[Sequence[Any]]) -> list[Any]:
    """(time, old, new, cause text) tuples as a flat list of moves."""
    out: list[Any] = []
    for h in history:
        out.extend((h[0], h[1], h[2], h[3], None, None))
    return out


# -- what the client is shown ------------------------------------------------------------------

#: A frozen task history: (task id, state, node, attempt rows, transitions, deps)
Frozen = tuple[
    str,
    str,
    str,
    tuple[tuple[Any, ...], ...],
    tuple[tuple[float, str, str, str], ...],
    tuple[str, ...],
]


def freeze(
    task_id: str,
    state: str,
    node: str | None,
    attempts: Iterable[tuple[Any, ...]],
    history: Iterable[tuple[float, str, str, str]],
    wall_offset: float,
    deps: Iterable[str] = (),
) -> Frozen:
    """One task's history as tuples of plain values (what a released run keeps: the garbage
    collector stops tracking tuples of atoms)."""
    return (
        task_id,
        state,
        node or "",
        tuple(attempts),
        # (a list comprehension: a compiled cpdef function holds no closure)
        tuple([(t + wall_offset, a, b, c) for t, a, b, c in history]),
        tuple(deps),
    )


def freeze_all(
    tasks: Any, deps: Any, wall_offset: Any, since: float = 0.0, brief: bool = False
) -> tuple[Frozen, ...]:
    """``freeze`` of each task of ``tasks`` (task id -> record with ``state``, ``node``,
    ``attempts``, ``history``; ``deps``: task id -> its dependencies), in order: with ``since``
    (wall clock) only of tasks that moved since; ``brief``: without their transitions. One
    compiled loop: a released run freezes all its tasks at once."""
    after = since - wall_offset  # in the run's own clock
    out = []
    for task_id, rec in tasks.items():
        moves = rec.moves
        if since and not (moves and moves[len(moves) - STRIDE] >= after):
            continue
        frozen = freeze(
            task_id,
            rec.state,
            rec.node,
            rec.attempts,
            () if brief else transitions(moves),
            wall_offset,
            deps[task_id],
        )
        out.append(frozen)
    return tuple(out)


def summary(frozen: Frozen) -> dict[str, Any]:
    """The JSON shape of ``handoffctl tasks --json`` for one task (times are wall-clock seconds;
    ``started``/``finished``: the latest attempt's; None when unknown)."""
    task_id, state, node, attempts, transitions, deps = frozen
    last = attempts[-1] if attempts else None
    started = (last[4] or last[3]) if last is not None else 0.0
    finished = last[5] if last is not None and last[2] not in _ACTIVE else 0.0
    error = None
    for row in reversed(attempts):
        if row[9]:
            error = {"type": row[9], "message": row[10], "traceback": row[11]}
            break
    return {
        "id": task_id,
        "state": state,
        "node": node or None,
        "attempts": len(attempts),
        "started": started or None,
        "finished": finished or None,
        "duration_s": (finished - started) if started and finished else None,
        "error": error,
        "deps": list(deps),
        "history": [dict(zip(ATTEMPT_FIELDS, row, strict=True)) for row in attempts],
        "transitions": [{"time": t, "from": a, "to": b, "cause": c} for t, a, b, c in transitions],
    }


def frozen_tasks(reply: Any) -> list[Frozen]:
    """A ``TaskHistoryReply``'s tasks as frozen tuples, whichever form they came in."""
    tasks: list[Frozen] = [
        (
            t.task_id,
            t.state,
            t.node,
            tuple(tuple(getattr(a, f) for f in a.__dataclass_fields__) for a in t.attempts),
            t.transitions,
            t.deps,
        )
        for t in reply.tasks
    ]
    if reply.packed:
        tasks += [_unpacked(t) for t in msgpack.unpackb(reply.packed, raw=False)]
    return tasks


def document(reply: Any) -> dict[str, Any]:
    """A ``TaskHistoryReply`` as the JSON document of ``handoffctl tasks --json`` (``Run.tasks``)."""
    tasks = [summary(t) for t in frozen_tasks(reply)]
    started = min(
        (a["dispatched"] for t in tasks for a in t["history"] if a["dispatched"]), default=0.0
    )
    return {
        "run_id": reply.run_id,
        "state": reply.state,
        "owner": reply.owner,
        "term": reply.term,
        "submitted": reply.submitted or None,
        "started": started or None,
        "finished": reply.finished or None,
        "tasks": tasks,
    }


def _unpacked(t: Any) -> Frozen:
    """A packed task (``GetTaskHistory.brief``) checked back into its frozen form."""
    task_id, state, node, rows, _transitions, deps = t
    checked = []
    for r in rows:
        if len(r) != len(ATTEMPT_FIELDS):
            raise ValueError(f"task {task_id!r}: an attempt row of {len(r)} fields")
        checked.append(row_of(r))
    return (str(task_id), str(state), str(node), tuple(checked), (), tuple(str(d) for d in deps))
