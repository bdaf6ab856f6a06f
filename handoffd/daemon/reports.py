"""What the owner's shell makes of a node's column messages (``RepliedColumns``,
``ReportColumns``): scheduler events, task history, the latency histogram. Pure translation over
the checked columns (``protocol.columns``), one loop over plain lists per message instead of a
record per task; the per-task ``TasksReported`` / ``DispatchReplied`` are still read by
``OwnerIO`` (``daemon.owner``) for senders that send them, and our own executor's records
(``ReportedHere``) share their translation (``list_events``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from handoffd.observability.latency import Buckets
from handoffd.protocol import messages as m
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
    run_id: str, node: str, table: ReportTable, frames: list[bytes], events: list[Any]
) -> None:
    """Append to ``events`` the scheduler's events of the DONE / FAILED reports, in report order:
    each stretch of DONE ones as one ``TasksSucceeded`` (columns: no event object per task), each
    FAILED one as a ``TaskErrored``."""
    task_ids, attempts, states, sizes = table.task_ids, table.attempts, table.states, table.sizes
    durations, value_frames = table.durations, table.frames
    count = len(frames)
    if states.count(_DONE) == len(states):  # (the usual message: its columns as they are)
        if task_ids:
            got = [bytes(frames[f]) if 0 <= f < count else None for f in value_frames]
            events.append(
                ev.TasksSucceeded(run_id, node, task_ids, attempts, sizes, got, durations)
            )
        return
    ids: list[str] = []
    tries: list[int] = []
    stored: list[int] = []
    values: list[bytes | None] = []
    took: list[float] = []
    for i, state in enumerate(states):
        if state == _DONE:
            frame = value_frames[i]
            ids.append(task_ids[i])
            tries.append(attempts[i])
            stored.append(sizes[i])
            values.append(bytes(frames[frame]) if 0 <= frame < count else None)
            took.append(durations[i])
        elif state == _FAILED:
            if ids:
                events.append(ev.TasksSucceeded(run_id, node, ids, tries, stored, values, took))
                ids, tries, stored, values, took = [], [], [], [], []
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
        events.append(ev.TasksSucceeded(run_id, node, ids, tries, stored, values, took))


def list_events(
    run_id: str,
    node: str,
    reports: Sequence[m.TaskReport],
    values: Sequence[Any],
    events: list[Any],
) -> None:
    """Append to ``events`` the scheduler's events of per-task reports (``TasksReported``, or our
    own executor's ``ReportedHere``), in order; ``values``: each report's inline value or None."""
    for report, value in zip(reports, values, strict=True):
        if report.state == "DONE":
            events.append(
                ev.TaskSucceeded(
                    run_id,
                    report.task_id,
                    report.attempt,
                    node,
                    report.size,
                    bytes(value) if value is not None else None,
                    report.duration,
                )
            )
        elif report.state == "FAILED":
            events.append(
                ev.TaskErrored(
                    run_id,
                    report.task_id,
                    report.attempt,
                    node,
                    report.kind,
                    report.exc_type,
                    report.message,
                    report.traceback,
                )
            )


def frame_values(reports: Sequence[m.TaskReport], frames: list[Any]) -> list[Any]:
    """Each report's inline value from the message's ``frames`` (None when it names none)."""
    count = len(frames)
    return [frames[r.frame] if 0 <= r.frame < count else None for r in reports]


def observe_table(run: RunState, node: str, table: ReportTable, latency: Buckets) -> None:
    """Record what ``node`` reports of each attempt in its history (pid, times, bytes, error),
    and in ``latency`` the time from its dispatch to its start (``history_io.observe_reports``
    for columns)."""
    tasks = run.tasks
    attempts, states, started = table.attempts, table.states, table.started
    if states.count(_DONE) == len(states):  # (the usual message: one compiled loop)
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
            latency,
        )
        return
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
