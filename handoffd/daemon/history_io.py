"""The owner shell's part of task history (issue 16): what a node's report adds to an attempt,
and the answer to ``GetTaskHistory``. The history itself is scheduler state
(``scheduler.history``)."""

from __future__ import annotations

import logging
import time
from typing import Any

import msgpack

from handoffd.protocol.messages_observability import (
    AttemptInfo,
    GetTaskHistory,
    TaskHistory,
    TaskHistoryReply,
)
from handoffd.protocol.schema import Rows
from handoffd.scheduler.owner import OwnerScheduler

log = logging.getLogger("handoffd.tasks")


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
