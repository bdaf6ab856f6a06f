"""Run snapshots (frame 0 of ``ReplicateRun``; ``protocol.snapshot``): the plain-data form of
``RunState.snapshot`` as structs, so a standby's copy is checked like any message. Registered by
the import at the end of ``handoffd.protocol.messages`` (and re-exported there), moved out of it
for its size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from handoffd.protocol.registry import struct

if TYPE_CHECKING:  # the codec resolves names via STRUCTS
    from handoffd.protocol.messages import ErrorInfo
    from handoffd.protocol.messages_observability import AttemptInfo


@struct
class SnapshotSpec:
    """A task's spec in a snapshot (``spec.TaskSpec``, with its cloudpickled payload)."""

    id: str
    deps: tuple[str, ...]
    cost: dict[str, float]
    payload: bytes
    argument_inclusion: str
    node: str | None
    collocate_with: str | None
    inline: bool
    max_retries: int | None
    timeout: float | None
    priority: int


@struct
class SnapshotTask:
    """A task's record in a snapshot (``scheduler.run.TaskRecord``)."""

    task_id: str
    state: str
    attempt: int
    node: str | None
    failures: int
    losses: int
    completions: int
    size: int
    value: bytes | None
    locations: tuple[str, ...]
    delayed: bool
    last_error: tuple[str, str, str]  # exc_type, message, traceback
    history: tuple[tuple[float, str, str, str], ...]  # (time, old, new, cause)
    attempts: tuple[AttemptInfo, ...] = ()  # issue 16: the task's attempt history


@struct
class RunSnapshot:
    """A whole run as an owner replicates it to its standbys."""

    run_id: str
    seq: int
    term: int
    state: str
    error: ErrorInfo | None
    released: bool
    holders: tuple[str, ...]
    max_retries: int
    timeout: float | None
    policy: str
    outputs: tuple[str, ...] | None
    specs: tuple[SnapshotSpec, ...]
    group_node: dict[str, str | None]
    tasks: tuple[SnapshotTask, ...]
    packages: tuple[str, ...] = ()  # the run's code packages (their zips follow, ReplicateRun)
    submitted: float = 0.0  # issue 16: wall-clock times of the run
    finished: float = 0.0
