"""What the owner's shell makes of a node's column messages (``RepliedColumns``,
``ReportColumns``): scheduler events, task history, the latency histogram. Pure translation over
the checked columns (``protocol.columns``), one loop over plain lists per message instead of a
record per task. Our own executor's reports (``ReportedHere``) and a node of an earlier build's
``TasksReported`` come as the same table (``columns.ReportTable.of_rows``), read the same way
(``table_events``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from handoffd.observability.latency import Buckets
from handoffd.protocol import report_read
from handoffd.protocol.columns import ReportTable, replied_pairs
from handoffd.protocol.messages_columns import RepliedColumns
from handoffd.scheduler import events as ev
from handoffd.scheduler import history
from handoffd.scheduler.run import RunState

log = logging.getLogger("handoffd.tasks")

_DONE, _FAILED = 1, 2


def answered(node: str, msg: RepliedColumns) -> ev.DispatchAnswered:
    """The scheduler's event for a dispatch's answer; ``ColumnError`` if malformed."""
    accepted, refused = replied_pairs(msg)
    return ev.DispatchAnswered(node, msg.run_id, accepted, refused)


def report_events(
    run_id: str, node: str, table: ReportTable, frames: list[Any], events: list[Any]
) -> None:
    """``table_events`` of a received message, each report's value from its ``frames``."""
    table_events(run_id, node, table, frame_values(table, frames), events)


def frame_values(table: ReportTable, frames: list[Any]) -> list[bytes | None]:
    """Each report's inline value of a received message (None when it names no frame)."""
    return report_read.frame_values(table.frames, frames)


_PLAIN = {bytes, type(None)}


def table_events(
    run_id: str,
    node: str,
    table: ReportTable,
    values: Sequence[bytes | None],
    events: list[Any],
    history: bool = False,
    delays: list[float] | None = None,
) -> None:
    """Append to ``events`` the scheduler's events of the DONE / FAILED reports, in report order:
    each stretch of DONE ones as one ``TasksSucceeded`` (columns: no event object per task), each
    FAILED one as a ``TaskErrored``; ``values``: each report's inline value or None (our own
    executor's table carries them beside it, a message in its frames: ``report_events``).
    ``history``: ``observe_table`` left the reports' history to the scheduler (True only for a
    table of DONE reports, which is then one ``TasksSucceeded`` carrying its columns), and the
    dispatch-to-start latencies with it: the scheduler appends them to ``delays`` as it writes
    the rows (the caller observes them after the scheduler's batch)."""
    states = table.states
    if len(states) == 1 and states[0] == _DONE:  # (a lone task's, W3: the one event, at once)
        value = values[0]
        if value is not None and type(value) is not bytes:  # (a buffer: the scheduler keeps bytes)
            value = bytes(value)
        task_id, attempt, size = table.task_ids[0], table.attempts[0], table.sizes[0]
        events.append(
            ev.TaskSucceeded(run_id, task_id, attempt, node, size, value, table.durations[0])
        )
        return
    task_ids, attempts, sizes = table.task_ids, table.attempts, table.sizes
    durations = table.durations
    if not set(map(type, values)) <= _PLAIN:  # (a buffer: the scheduler keeps bytes)
        values = [bytes(v) if v is not None else None for v in values]
    if states.count(_DONE) == len(states):  # (the usual message: its columns as they are)
        if task_ids:  # (a lone task's went above)
            column = values if type(values) is list else list(values)
            if history:  # (the report's columns for the attempts' history: ``observe_table``)
                tell = (table.pids, table.started, table.ended, table.bytes_in, delays)
                events.append(
                    ev.TasksSucceeded(
                        run_id, node, task_ids, attempts, sizes, column, durations, *tell
                    )
                )
            else:
                events.append(
                    ev.TasksSucceeded(run_id, node, task_ids, attempts, sizes, column, durations)
                )
        return
    ids: list[str] = []
    tries: list[int] = []
    stored: list[int] = []
    got: list[bytes | None] = []
    took: list[float] = []
    for i, state in enumerate(states):
        if state == _DONE:
            ids.append(task_ids[i])
            tries.append(attempts[i])
            stored.append(sizes[i])
            got.append(values[i])
            took.append(durations[i])
        elif state == _FAILED:
            if ids:
                events.append(ev.TasksSucceeded(run_id, node, ids, tries, stored, got, took))
                ids, tries, stored, got, took = [], [], [], [], []
            f = table.failures[i]
            events.append(
                ev.TaskErrored(
                    run_id,
                    task_ids[i],
                    attempts[i],
                    node,
                    f.kind,
                    f.exc_type,
                    f.message,
                    f.traceback,
                )
            )
    if ids:
        events.append(ev.TasksSucceeded(run_id, node, ids, tries, stored, got, took))


def observe_table(
    run: RunState, node: str, table: ReportTable, latency: Buckets, later: bool = False
) -> bool:
    """Record what ``node`` reports of each attempt in its history (pid, times, bytes, error),
    and in ``latency`` the time from its dispatch to its start; every node's reports, ours
    included, come as a table. ``later``: the scheduler may write the history of a table of
    DONE reports of more than one task (``table_events(history=True)``: its ``TasksSucceeded``
    carries the columns, and the scheduler builds each attempt's row once with its close and
    counts its latency as it goes, into the event's ``delays``); True when it was left to it
    (nothing is recorded here)."""
    tasks = run.tasks
    attempts, states, started = table.attempts, table.states, table.started
    if states.count(_DONE) == len(states):  # (the usual message: one compiled loop)
        if later and len(states) > 1:
            return True
        delays: list[float] = []  # (appended to by the compiled loop, bucketed at once after)
        history.observe_done(
            tasks,
            node,
            table.task_ids,
            attempts,
            table.pids,
            started,
            table.ended,
            table.bytes_in,
            table.sizes,
            delays,
        )
        latency.observe_all(delays)
        return False
    for i, task_id in enumerate(table.task_ids):
        rec = tasks.get(task_id)
        state = states[i]
        if rec is None or state not in (_DONE, _FAILED):
            continue
        attempt = attempts[i]
        if started[i] and rec.attempts and rec.attempts[-1][0] == attempt:
            dispatched = rec.attempts[-1][history.DISPATCHED]
            if dispatched:
                latency.observe(max(0.0, started[i] - dispatched))
        error = ("", "", "")
        kind = "DONE"
        if state == _FAILED:
            f = table.failures[i]
            kind, error = f.kind, (f.exc_type, f.message, f.traceback)
            log.info(
                "run %s task %s attempt %d on %s: %s (%s: %s)",
                run.run_id,
                task_id,
                attempt,
                node,
                f.kind,
                f.exc_type,
                f.message,
                extra={"run": run.run_id, "task": task_id, "attempt": attempt},
            )
        history.observe(
            rec.attempts,
            attempt,
            node,
            state=kind,
            pid=table.pids[i],
            started=started[i],
            ended=table.ended[i],
            bytes_in=table.bytes_in[i],
            bytes_out=table.sizes[i],
            error=error,
        )
    return False
