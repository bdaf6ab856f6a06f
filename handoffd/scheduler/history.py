# cython: annotation_typing=False
# (the annotations are for mypy; history.pxd beside it gives the compiled build its C types)
"""Task history: what happened to every attempt of a task (issue 16), kept by the owner.

Each ``TaskRecord`` holds a bounded list of attempt rows. ``RunState.move`` opens one when a task is
dispatched (ASSIGNED) and closes it when the task leaves ASSIGNED/RUNNING; the owner's shell adds
what only the executing node knows (worker pid, start and end, bytes in) from the report
(``observe``). Times are wall-clock seconds (the scheduler's monotonic ``now`` plus the run's
``wall_offset``), so an attempt's times mean the same on a standby that takes the run over. Closed
attempts travel to the standbys with the task's log delta (a row is the wire form of
``AttemptInfo``; ``row_of`` checks one that arrives) and survive a takeover. When the run is released its records are dropped and only
``freeze``'s compact tuples are kept until the run is forgotten.

Pure: no clock, no I/O.
"""

from __future__ import annotations

from array import array
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
        if attempts[i][0] == attempt:
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
    return (*row[:STATE], state, row[DISPATCHED], row[STARTED], ended, *row[6:CAUSE], cause)


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
        if i >= 0 and not attempts[i][STARTED]:
            a = attempts[i]
            attempts[i] = (*a[:STARTED], wall, *a[ENDED:])
        return
    if old not in _ACTIVE or node is None:
        return
    i = _index(attempts, attempt)
    if i < 0:  # out when we took the run over, dispatched by the previous owner
        i = _append(attempts, new_row(attempt, node, 0.0))
    a = attempts[i]
    attempts[i] = _with(
        a,
        _CLOSED_AS.get(new, "LOST") if a[STATE] in _ACTIVE else a[STATE],
        a[ENDED] if a[ENDED] else wall,
        a[CAUSE] if a[CAUSE] else cause,
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
        elif a[STATE] in _ACTIVE:
            attempts[i] = _with(a, "LOST", a[ENDED], "lost in the owner's takeover")
    if found_on is None:
        return
    if found < 0:  # dispatched after the last batch the standby got
        found = _append(attempts, new_row(attempt, found_on, 0.0))
    a = attempts[found]
    if state == "DONE" and a[STATE] in _ACTIVE:
        attempts[found] = _with(a, "DONE", a[ENDED], f"result found on {found_on} at the takeover")


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
        a[DISPATCHED],
        started if started else a[STARTED],
        ended if ended else a[ENDED],
        pid,
        bytes_in,
        bytes_out,
        exc_type,
        message,
        traceback,
        a[CAUSE],
    )


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
    for k in range(len(task_ids)):
        rec = tasks.get(task_ids[k])
        if rec is None:
            continue
        trail = rec.attempts
        attempt = attempts[k]
        began = started[k]
        if began and trail:
            last = trail[-1]
            if last[0] == attempt and last[DISPATCHED]:
                latency.observe(max(0.0, began - last[DISPATCHED]))
        i = _index(trail, attempt)
        if i < 0:
            i = _append(trail, new_row(attempt, node, 0.0))
        a = trail[i]
        trail[i] = (
            a[0],
            a[1],
            "DONE",
            a[DISPATCHED],
            began if began else a[STARTED],
            ended[k] if ended[k] else a[ENDED],
            pids[k],
            bytes_in[k],
            bytes_out[k],
            "",
            "",
            "",
            a[CAUSE],
        )


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


# -- a run's task transitions -----------------------------------------------------------------

#: Transitions kept per task (the newest ones), as a task's list of rows was bounded.
HISTORY_LIMIT = 64
_STATES = ("PENDING", "READY", "ASSIGNED", "RUNNING", "DONE", "FAILED", "CANCELLED")
_STATE_CODE = {s: i for i, s in enumerate(_STATES)}
#: How a transition's cause is kept (``MoveLog.add``'s ``kind``): the text itself (a word), or
#: the parts of the three causes every task has, formatted only when someone asks.
BY_TEXT, DISPATCHED_TO, SUCCEEDED_ON, INPUTS_READY, RAW = 0, 1, 2, 3, 4


class MoveLog:
    """Every task transition of a run, as columns (a C class when compiled, history.pxd).

    A transition was a ``(time, old, new, cause)`` tuple in a list per task: per task a list, three
    tuples, three floats and two formatted causes, made on the loop and freed at release. Here a
    transition is one entry of four arrays: ``at`` (the run's clock), ``code`` (the task's
    ``order`` in its run, the cause's kind, old and new state), ``arg`` (an attempt, or the
    ``order`` of the input whose end readied the task) and ``ref`` (an index into ``words``: a
    node name or a cause's text, each kept once). ``rows``/``by_task`` build the tuples the
    queries always printed (``task_rows``, ``by_task``: the newest ``HISTORY_LIMIT`` per task)."""

    def __init__(self) -> None:
        self.n = 0  # entries (the arrays have room for more)
        self.words: list[Any] = []
        self.word_ix: dict[Any, int] = {}
        self._grow()

    def _grow(self) -> None:
        """Twice the room (8 entries at first): entries are written in place, so compiled, a
        transition is four C stores (typed memoryviews over the arrays), no object made."""
        n = self.n
        room = max(8, 2 * n)
        arrays: list[Any] = []
        for kind in ("d", "q", "q", "q"):
            arrays.append(array(kind, bytes(8 * room)))
        if n:
            arrays[0][:n] = self._at[:n]
            arrays[1][:n] = self._code[:n]
            arrays[2][:n] = self._arg[:n]
            arrays[3][:n] = self._ref[:n]
        self._at: Any = arrays[0]
        self._code: Any = arrays[1]
        self._arg: Any = arrays[2]
        self._ref: Any = arrays[3]
        self.at: Any = arrays[0]
        self.code: Any = arrays[1]
        self.arg: Any = arrays[2]
        self.ref: Any = arrays[3]
        self.room = room

    def __len__(self) -> int:
        return self.n

    def word(self, w: Any) -> int:
        i = self.word_ix.get(w, -1)
        if i < 0:
            i = len(self.words)
            self.words.append(w)
            self.word_ix[w] = i
        return i

    def add(
        self, task: int, old: str, new: str, now: float, kind: int, arg: int, word: Any
    ) -> None:
        """Task ``task`` (its ``order``) went ``old`` -> ``new`` at ``now``."""
        i = self.word_ix.get(word, -1)
        if i < 0:
            i = self.word(word)
        self._put(now, task << 16 | kind << 8 | _STATE_CODE[old] << 4 | _STATE_CODE[new], arg, i)

    def _put(self, now: float, code: int, arg: int, ref: int) -> None:
        n = self.n
        if n == self.room:
            self._grow()
        self.at[n] = now
        self.code[n] = code
        self.arg[n] = arg
        self.ref[n] = ref
        self.n = n + 1

    def add_row(self, task: int, row: Sequence[Any]) -> None:
        """A row as it came (a snapshot's): kept as its parts when they are a transition's
        types, else whole, so it reads back equal."""
        t, old, new, cause = row[0], row[1], row[2], row[3]
        if type(t) is float and type(cause) is str and old in _STATE_CODE and new in _STATE_CODE:
            self.add(task, old, new, t, BY_TEXT, 0, cause)
        else:
            self.words.append((t, old, new, cause))
            self._put(0.0, task << 16 | RAW << 8, 0, len(self.words) - 1)

    def row(self, i: int, ordered: Sequence[Any]) -> tuple[Any, ...]:
        """Entry ``i`` as its ``(time, old, new, cause)`` row (``ordered``: the run's tasks)."""
        code = self.code[i]
        kind = (code >> 8) & 0xFF
        if kind == RAW:
            return self.words[self.ref[i]]  # type: ignore[no-any-return]
        cause = self.text(kind, self.arg[i], self.words[self.ref[i]], ordered)
        return (self.at[i], _STATES[(code >> 4) & 0xF], _STATES[code & 0xF], cause)

    def text(self, kind: int, arg: int, word: Any, ordered: Sequence[Any]) -> str:
        """The text of a cause kept as ``add``'s ``kind``, ``arg`` and ``word``."""
        if kind == BY_TEXT:
            return word  # type: ignore[no-any-return]
        if kind == DISPATCHED_TO:
            return f"dispatched to {word} attempt {arg}"
        if kind == SUCCEEDED_ON:
            return f"succeeded on {word} attempt {arg}"
        return f"inputs ready ({ordered[arg].id} done)"

    def task_rows(self, task: int, ordered: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Task ``task``'s transitions, oldest first (the newest ``HISTORY_LIMIT``)."""
        found = []
        for i in range(self.n):
            if self.code[i] >> 16 == task:
                found.append(i)
        out = []
        for i in found[-HISTORY_LIMIT:]:
            out.append(self.row(i, ordered))
        return out

    def by_task(self, ordered: Sequence[Any], since: bool = False, after: float = 0.0) -> list[Any]:
        """Each task's ``task_rows`` by its ``order``, in one walk; with ``since``, None for a task
        with no transition at or after ``after`` (the run's clock)."""
        n = len(ordered)
        found: list[Any] = [None] * n
        if since:
            last = [-1] * n
            for i in range(self.n):
                last[self.code[i] >> 16] = i
            for k in range(n):
                if last[k] >= 0 and self._time(last[k]) >= after:
                    found[k] = []
        else:
            for k in range(n):
                found[k] = []
        for i in range(self.n):
            entries = found[self.code[i] >> 16]
            if entries is not None:
                entries.append(i)
        for k in range(n):
            entries = found[k]
            if entries:
                rows = []
                for i in entries[-HISTORY_LIMIT:]:
                    rows.append(self.row(i, ordered))
                found[k] = rows
        return found

    def _time(self, i: int) -> float:
        if (self.code[i] >> 8) & 0xFF == RAW:
            return float(self.words[self.ref[i]][0])
        return self.at[i]


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
    tasks: Any,
    deps: Any,
    wall_offset: Any,
    since: float = 0.0,
    brief: bool = False,
    log: MoveLog | None = None,
    ordered: Any = None,
) -> tuple[Frozen, ...]:
    """``freeze`` of each task of ``tasks`` (task id -> record with ``state``, ``node``,
    ``attempts``, ``order``; ``deps``: task id -> its dependencies), in order: with ``since``
    (wall clock) only of tasks that moved since; ``brief``: without their transitions. The
    transitions are ``log``'s (the run's, ``ordered``: its tasks by ``order``), else each record's
    ``history`` (rows). One compiled loop: a released run freezes all its tasks at once."""
    after = since - wall_offset  # in the run's own clock
    by_order = None
    if log is not None and (since or not brief):  # (brief, all tasks: no transition is read)
        by_order = log.by_task(ordered, bool(since), after)
    out = []
    for task_id, rec in tasks.items():
        if log is not None:
            moves = by_order[rec.order] if by_order is not None else []
            if moves is None:
                continue
        else:
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


def _unpacked(t: Any) -> Frozen:
    """A packed task (``GetTaskHistory.brief``) checked back into its frozen form."""
    task_id, state, node, rows, _transitions, deps = t
    checked = []
    for r in rows:
        if len(r) != len(ATTEMPT_FIELDS):
            raise ValueError(f"task {task_id!r}: an attempt row of {len(r)} fields")
        checked.append(row_of(r))
    return (str(task_id), str(state), str(node), tuple(checked), (), tuple(str(d) for d in deps))
