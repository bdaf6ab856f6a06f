"""Run snapshots (frame 0 of ``ReplicateRun``; ``protocol.snapshot``): the plain-data form of
``RunState.snapshot`` as structs, so a standby's copy is checked like any message. Registered by
the import at the end of ``handoffd.protocol.messages`` (and re-exported there), moved out of it
for its size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from handoffd.protocol.registry import struct

if TYPE_CHECKING:  # the codec resolves names via STRUCTS
    from handoffd.protocol.messages import ErrorInfo, MemberState
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


#: The first protocol version whose standbys read ``RunSnapshot.columns``: an older one ignores the
#: trailing field and would see a run without specs, so it is sent the spec rows (``specs``).
SNAPSHOT_COLUMNS_SINCE = 5


#: The first protocol version whose standbys read ``SnapshotColumns.heads``: an older one would
#: take the tails for the payloads, so a run whose columns carry heads goes to it as spec rows.
SNAPSHOT_HEADS_SINCE = 6


#: The first protocol version whose standbys read ``SnapshotColumns.tails``: an older one would
#: see no payloads, so a run whose columns carry their tails as one blob goes to it with the
#: tails split back into ``payloads`` (``protocol.snapshot.encode_run``).
SNAPSHOT_TAILS_SINCE = 7


def reads_columns(member: MemberState | None) -> int:
    """Whether a standby (its state as membership knows it) reads ``RunSnapshot.columns``: 0 if
    not, else its protocol version (``SNAPSHOT_HEADS_SINCE`` or more: their heads too), what
    ``protocol.snapshot.encode_run``'s ``columns`` takes."""
    if member is None or member.protocol_max < SNAPSHOT_COLUMNS_SINCE:
        return 0
    return member.protocol_max


@struct
class SnapshotColumns:
    """A plain run's specs as columns (``RunSnapshot.columns``): the arrays its ``SubmitColumns``
    came with (``protocol.messages_submit``: ids, ``dep_counts`` (i) and the flattened deps, each
    distinct cost map once (as parsed) with ``cost_of`` (i), inclusions with ``inclusion`` (B),
    ``priorities`` (q)), and the payloads in order (one past ``FAR_BYTES`` empty, as in a row).
    Every other spec field is as in a plain function: no pin, collocation, inline type, retries
    or timeout. Protocol 6 (``SNAPSHOT_HEADS_SINCE``): ``heads`` and ``head_of`` as in
    ``SubmitColumns`` (each code head once, a payload then its tail: ``heads[head_of[i]] +
    payloads[i]``, -1 whole); sent only to a standby whose range reaches 6. Protocol 7
    (``SNAPSHOT_TAILS_SINCE``): the payloads (tails) as one blob, ``tails``, cut by
    ``tail_sizes`` (q, one a function), ``payloads`` then empty: the upload's own bytes, where a
    bin a payload was packed a task; sent only to a standby whose range reaches 7."""

    ids: tuple[str, ...]
    dep_counts: bytes
    deps: tuple[str, ...]
    costs: tuple[dict[str, float], ...]
    cost_of: bytes
    inclusions: tuple[str, ...]
    inclusion: bytes
    priorities: bytes
    payloads: tuple[bytes, ...]
    heads: tuple[bytes, ...] = ()
    head_of: bytes = b""
    tails: bytes = b""
    tail_sizes: bytes = b""


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
    # Protocol 5 (``SNAPSHOT_COLUMNS_SINCE``): a plain run's specs as columns, ``specs`` then empty;
    # sent only to a standby whose range reaches 5 (``protocol.snapshot.encode_run``).
    columns: SnapshotColumns | None = None
    # Protocol 7 (``SNAPSHOT_TAILS_SINCE``): every task as its run built it (PENDING, never
    # dispatched: ``protocol.snapshot._AS_BUILT``), ``tasks`` then empty: a standby makes a task
    # a spec; sent only to a standby whose range reaches 7.
    tasks_built: bool = False
