# cython: annotation_typing=False
# (the annotations are for mypy; history.pxd beside it gives the compiled build its C types)
"""Task history: what happened to every attempt of a task (issue 16), kept by the owner.

Each ``TaskRecord`` holds a bounded list of ``Attempt``s. ``RunState.move`` opens one when a task is
dispatched (ASSIGNED) and closes it when the task leaves ASSIGNED/RUNNING; the owner's shell adds
what only the executing node knows (worker pid, start and end, bytes in) from the report
(``observe``). Times are wall-clock seconds (the scheduler's monotonic ``now`` plus the run's
``wall_offset``), so an attempt's times mean the same on a standby that takes the run over. Closed
attempts travel to the standbys with the task's log delta (``row``/``from_row``: the wire form of
``AttemptInfo``) and survive a takeover. When the run is released its records are dropped and only
``freeze``'s compact tuples are kept until the run is forgotten.

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


class Attempt:
    """One dispatch of a task. ``state``: ASSIGNED while out, then DONE, FAILED (the task's own
    error), TIMEOUT, CRASHED, CANCELLED or LOST (lost to the cluster: node lost, input lost,
    report lost...)."""

    __slots__ = (
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

    def __init__(self, attempt: int, node: str, dispatched: float) -> None:
        self.attempt = attempt
        self.node = node
        self.state = "ASSIGNED"
        self.dispatched = dispatched
        self.started = 0.0  # 0.0: not known (yet)
        self.ended = 0.0
        self.pid = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.exc_type = ""
        self.message = ""
        self.traceback = ""
        self.cause = ""

    def row(self) -> tuple[Any, ...]:
        """The wire form (``messages_observability.AttemptInfo``'s fields, in order)."""
        return (
            self.attempt,
            self.node,
            self.state,
            self.dispatched,
            self.started,
            self.ended,
            self.pid,
            self.bytes_in,
            self.bytes_out,
            self.exc_type,
            self.message,
            self.traceback,
            self.cause,
        )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Attempt:
        a = cls(int(row[0]), str(row[1]), float(row[3]))
        a.state, a.started, a.ended = str(row[2]), float(row[4]), float(row[5])
        a.pid, a.bytes_in, a.bytes_out = int(row[6]), int(row[7]), int(row[8])
        a.exc_type, a.message, a.traceback, a.cause = (str(x) for x in row[9:13])
        return a


def _find(attempts: list[Attempt], attempt: int) -> Attempt | None:
    for a in reversed(attempts):
        if a.attempt == attempt:
            return a
    return None


def _append(attempts: list[Attempt], a: Attempt) -> None:
    attempts.append(a)
    if len(attempts) > ATTEMPTS_LIMIT:
        del attempts[1]  # keep the first one


def opened(attempts: list[Attempt], attempt: int, node: str, wall: float) -> None:
    """The task was dispatched to ``node`` as ``attempt`` at ``wall``."""
    _append(attempts, Attempt(attempt, node, wall))


def moved(
    attempts: list[Attempt],
    attempt: int,
    node: str | None,
    old: str,
    new: str,
    wall: float,
    cause: str,
) -> None:
    """The task moved ``old`` -> ``new``: an attempt that was out ends here."""
    if new == "RUNNING":
        a = _find(attempts, attempt)
        if a is not None and not a.started:
            a.started = wall
        return
    if old not in _ACTIVE or node is None:
        return
    a = _find(attempts, attempt)
    if a is None:  # out when we took the run over, dispatched by the previous owner
        a = Attempt(attempt, node, 0.0)
        _append(attempts, a)
    if a.state in _ACTIVE:
        a.state = _CLOSED_AS.get(new, "LOST")
    if not a.ended:
        a.ended = wall
    if not a.cause:
        a.cause = cause


def settled(attempts: list[Attempt], state: str, attempt: int, found_on: str | None) -> None:
    """A takeover merged the task into ``state``; ``found_on``: the node that answered it runs
    ``attempt`` (RUNNING) or holds its value (DONE, finished after the last log batch). The
    attempts the old owner had out and nobody holds any more were lost with it."""
    found = None
    for a in attempts:
        if found_on is not None and a.attempt == attempt and a.node == found_on:
            found = a
        elif a.state in _ACTIVE:
            a.state, a.cause = "LOST", "lost in the owner's takeover"
    if found_on is None:
        return
    if found is None:  # dispatched after the last batch the standby got
        found = Attempt(attempt, found_on, 0.0)
        _append(attempts, found)
    if state == "DONE" and found.state in _ACTIVE:
        found.state, found.cause = "DONE", f"result found on {found_on} at the takeover"


def observe(
    attempts: list[Attempt],
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
    a = _find(attempts, attempt)
    if a is None:
        a = Attempt(attempt, node, 0.0)
        _append(attempts, a)
    a.state = _REPORTED.get(state, state.upper())
    a.pid = pid
    if started:
        a.started = started
    if ended:
        a.ended = ended
    a.bytes_in = bytes_in
    a.bytes_out = bytes_out
    a.exc_type, a.message, a.traceback = error


def observe_done(
    tasks: Any,
    node: str,
    task_ids: Sequence[str],
    attempts: Sequence[int],
    pids: Sequence[int],
    started: Sequence[float],
    ended: Sequence[float],
    bytes_in: Sequence[int],
    bytes_out: Sequence[int],
    latency: Any,
) -> None:
    """``observe`` of each DONE report of a node's message (columns; ``tasks``: task id -> record
    with ``attempts``), unknown tasks skipped, in one compiled loop; ``latency.observe`` gets the
    time from each attempt's dispatch to its start (its latest attempt, reported started)."""
    for i in range(len(task_ids)):
        rec = tasks.get(task_ids[i])
        if rec is None:
            continue
        trail = rec.attempts
        attempt = attempts[i]
        began = started[i]
        if began and trail:
            last = trail[-1]
            if last.attempt == attempt and last.dispatched:
                latency.observe(max(0.0, began - last.dispatched))
        a = _find(trail, attempt)
        if a is None:
            a = Attempt(attempt, node, 0.0)
            _append(trail, a)
        a.state = "DONE"
        a.pid = pids[i]
        if began:
            a.started = began
        if ended[i]:
            a.ended = ended[i]
        a.bytes_in = bytes_in[i]
        a.bytes_out = bytes_out[i]
        a.exc_type, a.message, a.traceback = "", "", ""


_REPORTED = {
    "DONE": "DONE",
    "error": "FAILED",
    "timeout": "TIMEOUT",
    "crash": "CRASHED",
    "cancelled": "CANCELLED",
    "input_lost": "LOST",
    "storage": "FAILED",
}


def rows(attempts: Iterable[Attempt]) -> list[list[Any]]:
    """As plain data (``RunState.snapshot``)."""
    return [list(a.row()) for a in attempts]


def restore(rows_: Iterable[Sequence[Any]]) -> list[Attempt]:
    return [Attempt.from_row(r) for r in rows_][-ATTEMPTS_LIMIT:]


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
    attempts: Iterable[Attempt],
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
        # (list comprehensions: a compiled cpdef function holds no closure)
        tuple([a.row() for a in attempts]),
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
        moves = rec.history
        if since and not (moves and moves[-1][0] >= after):
            continue
        frozen = freeze(
            task_id,
            rec.state,
            rec.node,
            rec.attempts,
            () if brief else moves,
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


ATTEMPT_FIELDS = Attempt.__slots__


def _unpacked(t: Any) -> Frozen:
    """A packed task (``GetTaskHistory.brief``) checked back into its frozen form."""
    task_id, state, node, rows, _transitions, deps = t
    checked = []
    for r in rows:
        if len(r) != len(ATTEMPT_FIELDS):
            raise ValueError(f"task {task_id!r}: an attempt row of {len(r)} fields")
        checked.append(Attempt.from_row(r).row())
    return (str(task_id), str(state), str(node), tuple(checked), (), tuple(str(d) for d in deps))
