"""The owner shell's part of task history (issue 16): what a node's report adds to an attempt,
and the answer to ``GetTaskHistory``. The history itself is scheduler state
(``scheduler.history``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import msgpack

from handoffd.observability.latency import Buckets
from handoffd.protocol import messages as m
from handoffd.protocol.messages_observability import (
    AttemptInfo,
    GetTaskHistory,
    TaskHistory,
    TaskHistoryReply,
)
from handoffd.protocol.schema import Rows
from handoffd.scheduler import history
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.scheduler.run import RunState

log = logging.getLogger("handoffd.tasks")


def observe_reports(
    run: RunState, node: str, reports: Iterable[m.TaskReport], latency: Buckets
) -> None:
    """Record what ``node`` reports of each attempt (pid, times, bytes, error) in its history,
    and in ``latency`` the time from its dispatch to its start."""
    tasks = run.tasks
    for r in reports:
        rec = tasks.get(r.task_id)
        if rec is None or r.state == "RUNNING":
            continue
        if r.started and rec.attempts and rec.attempts[-1][0] == r.attempt:
            dispatched = rec.attempts[-1][history.DISPATCHED]
            if dispatched:
                latency.observe(max(0.0, r.started - dispatched))
        if r.state != "DONE":
            log.info(
                "run %s task %s attempt %d on %s: %s (%s: %s)",
                run.run_id,
                r.task_id,
                r.attempt,
                node,
                r.kind,
                r.exc_type,
                r.message,
                extra={"run": run.run_id, "task": r.task_id, "attempt": r.attempt},
            )
        history.observe(
            rec.attempts,
            r.attempt,
            node,
            state="DONE" if r.state == "DONE" else r.kind,
            pid=r.pid,
            started=r.started,
            ended=r.ended,
            bytes_in=r.bytes_in,
            bytes_out=r.size,
            error=(r.exc_type, r.message, r.traceback) if r.state != "DONE" else ("", "", ""),
        )


def history_reply(
    scheduler: OwnerScheduler, me: str, msg: GetTaskHistory, known: bool = False
) -> TaskHistoryReply:
    """``known``: the run is not ours but this node knows it exists (said when it is unknown)."""
    now = time.time()
    h = scheduler.run_history(msg.run_id, msg.since, msg.brief)
    if h is None:
        return TaskHistoryReply(
            msg.request_id, msg.run_id, "UNKNOWN", "", 0, 0.0, 0.0, (), known=known
        )
    if msg.brief:
        tasks: tuple[TaskHistory, ...] = ()
        packed = msgpack.packb(h.tasks, use_bin_type=True)
    else:
        packed = b""
        tasks = tuple(
            TaskHistory(tid, state, node, _rows(rows), transitions, deps)
            for tid, state, node, rows, transitions, deps in h.tasks
        )
    return TaskHistoryReply(
        msg.request_id,
        msg.run_id,
        h.state,
        me,
        h.term,
        h.submitted,
        h.finished,
        tasks,
        now,
        h.total,
        packed,
    )


def _rows(rows: tuple[tuple[Any, ...], ...]) -> tuple[AttemptInfo, ...]:
    return Rows(rows)  # type: ignore[return-value]  # encoded as the structs' fields
