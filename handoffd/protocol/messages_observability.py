"""Wire messages of observability (issue 16): task history. Type ids 160-179.

``AttemptInfo`` is one attempt of a task (a row of ``scheduler.history``): it rides as a trailing
field on ``TaskDelta`` and ``SnapshotTask`` so a standby holds every closed attempt and a takeover
keeps them. ``GetTaskHistory`` asks a run's owner for every task's history (redirected like the
other run requests when another node owns the run); ``TaskHistoryReply`` answers it.
"""

from __future__ import annotations

from handoffd.protocol.registry import message, struct


@struct
class AttemptInfo:
    attempt: int
    node: str
    state: str  # ASSIGNED | DONE | FAILED | TIMEOUT | CRASHED | CANCELLED | LOST
    dispatched: float  # wall-clock seconds; 0.0: not known
    started: float
    ended: float
    pid: int  # the worker process that ran it (0: not known)
    bytes_in: int
    bytes_out: int
    exc_type: str
    message: str
    traceback: str
    cause: str  # why the attempt ended, as the owner saw it


@struct
class TaskHistory:
    task_id: str
    state: str
    node: str
    attempts: tuple[AttemptInfo, ...]
    transitions: tuple[tuple[float, str, str, str], ...]  # (wall time, old, new, cause)
    deps: tuple[str, ...]  # the tasks it waits for (inline functions resolved): the DAG's edges


@message(160)
class GetTaskHistory:
    """Client -> owner: every task's attempts and transitions of a run; with ``since`` (the
    owner's wall clock, a previous reply's ``now``) only the tasks that moved at or after it."""

    request_id: int
    run_id: str
    since: float = 0.0
    # The dashboard's form: no transitions, and the tasks packed in ``TaskHistoryReply.packed``
    # as msgpack arrays (task id, state, node, attempt rows, [], deps) instead of structs: a tenth
    # of the owner's time for a large run.
    brief: bool = False


@message(161)
class TaskHistoryReply:
    request_id: int
    run_id: str
    state: str  # RUNNING | DONE | FAILED | CANCELLED | UNKNOWN
    owner: str
    term: int
    submitted: float  # wall-clock seconds; 0.0: not known
    finished: float
    tasks: tuple[TaskHistory, ...]
    now: float = 0.0  # the owner's wall clock when it answered (the next ``since``)
    total: int = 0  # tasks in the run (``tasks`` may hold only those that moved)
    packed: bytes = b""  # with ``brief``: the tasks, packed (see ``GetTaskHistory.brief``)
    # UNKNOWN here, but this node knows the run exists (a takeover may be under way)
    known: bool = False


@struct
class RunInfo:
    run_id: str
    state: str
    counts: dict[str, int]
    term: int
    submitted: float  # wall-clock seconds; 0.0: not known
    finished: float
    # issue 19 (race19): a run the node holds a replica of while its owner changes: ``owner``,
    # not alive there, and ``next_owner``, expected to take over; state and counts as replicated
    changing: bool = False
    owner: str = ""
    next_owner: str = ""


@message(162)
class GetNodeInfo:
    """Client (the dashboard) -> any node: its version, uptime and the runs it owns."""

    request_id: int


@message(163)
class NodeInfoReply:
    request_id: int
    name: str
    version: str
    started: float  # wall-clock seconds the daemon started
    http_port: int  # 0: no HTTP
    runs: tuple[RunInfo, ...]


@message(164)
class GetMetrics:
    """The HTTP process -> its daemon: what /metrics exports (``observability.snapshot``)."""

    request_id: int


@message(165)
class MetricsReply:
    request_id: int
    snapshot: bytes  # msgpack of the snapshot dict


__all__ = [
    "GetMetrics",
    "MetricsReply",
    "GetNodeInfo",
    "NodeInfoReply",
    "RunInfo",
    "AttemptInfo",
    "GetTaskHistory",
    "TaskHistory",
    "TaskHistoryReply",
]
