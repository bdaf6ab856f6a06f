"""Every message on the wire, in one place.

Rules (memberlist's net.go, distributed's lessons): numeric types are append-only and never reused;
each message is a frozen dataclass whose fields are plain types (int, float, str, bytes, bool, None,
tuples and dicts of those, and registered structs); commands are imperative (``DispatchTasks``),
facts are past tense (``TasksFinished``). User values and code never appear here: they travel as
opaque frames beside the message, and only worker processes unpickle them.

Field annotations are the schema: the codec validates every decoded field against them.

Evolution (docs/architecture.md, "Protocol"): within a protocol version a message or struct may only
gain trailing fields with defaults (older decoders ignore them, newer ones fill them in when an
older sender left them out); anything else is a new protocol version (``config.PROTOCOL_MAX``). Every
type's bytes are pinned by tests/unit/golden/messages.json.
"""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING

from handoffd.config import PROTOCOL_MAX, PROTOCOL_MIN
from handoffd.protocol.registry import MESSAGES as MESSAGES  # re-exported
from handoffd.protocol.registry import STRUCTS as STRUCTS
from handoffd.protocol.registry import message, struct

if TYPE_CHECKING:  # registered at the end of this module; the codec resolves names via STRUCTS
    from handoffd.protocol.messages_chunks import FarFrame
    from handoffd.protocol.messages_observability import AttemptInfo

# ---------------------------------------------------------------------------------------------
# Membership (SWIM): 1-19
# ---------------------------------------------------------------------------------------------

# Member status values (stable on the wire).
ALIVE, SUSPECT, DEAD, LEFT = 0, 1, 2, 3
STATUS_NAMES = ("ALIVE", "SUSPECT", "DEAD", "LEFT")


@struct
class MemberState:
    """What one node knows of one member; newer (incarnation, status) and resource_version win."""

    name: str
    address: str  # "host:port" of the member's ROUTER
    cluster: str
    incarnation: int
    status: int  # ALIVE | SUSPECT | DEAD | LEFT
    capacity: dict[str, float]
    free: dict[str, float]
    resource_version: int  # bumped by the member each time its free resources change
    # the member's protocol range: a node admits only members whose range overlaps its own
    protocol_min: int = PROTOCOL_MIN
    protocol_max: int = PROTOCOL_MAX
    # kind -> where the member's capacity figure came from ("flag", "affinity", "cgroup v2
    # cpu.max", "NVML", ...), and "ID NAME" of each GPU it hands out: fixed for a daemon's life
    sources: dict[str, str] = field(default_factory=dict)
    gpus: tuple[str, ...] = ()
    # the port of the member's probe responder on its address's host (issue 19): Pings go there
    # and are answered off its event loop; 0: ping ``address``
    probe_port: int = 0
    # who suspected a SUSPECT member (Lifeguard: independent accusers shorten the timeout)
    accuser: str = ""


@message(1)
class Ping:
    probe_id: int
    updates: tuple[MemberState, ...]  # piggybacked gossip


@message(2)
class Ack:
    probe_id: int
    updates: tuple[MemberState, ...]


@message(3)
class PingReq:
    """Ask the receiver to probe ``target`` on the sender's behalf and forward the ack."""

    probe_id: int
    target: str
    target_address: str
    updates: tuple[MemberState, ...]


@message(4)
class PushPull:
    """Full-state anti-entropy and join: the receiver merges and, if asked, answers with its own."""

    members: tuple[MemberState, ...]
    reply_wanted: bool


@message(5)
class IndirectAck:
    """A relay's answer to PingReq: ``target`` answered probe ``probe_id``."""

    probe_id: int
    target: str
    updates: tuple[MemberState, ...]


@message(6)
class Gossip:
    """One-way dissemination of recent membership/resource updates (memberlist's gossip round)."""

    updates: tuple[MemberState, ...]


# ---------------------------------------------------------------------------------------------
# Client <-> daemon control: 20-39 (every request carries a request_id echoed in its reply)
# ---------------------------------------------------------------------------------------------


@message(20)
class ListNodes:
    request_id: int


@message(21)
class NodeList:
    request_id: int
    members: tuple[MemberState, ...]


@message(22)
class ErrorReply:
    """A request could not be served; ``code`` is a stable word, ``message`` says how to fix it."""

    request_id: int
    code: str
    message: str


@struct
class TaskMeta:
    """One function of a submitted DAG, without its code (the code is the frame at the same index)."""

    id: str
    deps: tuple[str, ...]
    cost: dict[str, float]
    argument_inclusion: str
    node: str | None
    collocate_with: str | None
    inline: bool
    max_retries: int | None
    timeout: float | None
    priority: int


@struct
class ErrorInfo:
    """A HandoffError in plain fields, so the client can raise the same exception type."""

    kind: str  # the exception class name: TaskFailed, Unschedulable, ValidationError, RunCancelled, ...
    function_id: str | None
    message: str
    exc_type: str
    traceback: str
    attempts: int
    need: dict[str, float]
    largest: dict[str, float]
    validation_kind: str


@message(23)
class SubmitRun:
    """Frames: one cloudpickled payload per task, in ``tasks`` order."""

    request_id: int
    run_id: str
    tasks: tuple[TaskMeta, ...]
    max_retries: int
    policy: str
    outputs: tuple[str, ...] | None
    # sha256 of the code packages the run ships; their zips follow the payload frames
    packages: tuple[str, ...] = ()


@message(24)
class RunAccepted:
    request_id: int
    run_id: str
    owner: str


@message(25)
class RunRejected:
    request_id: int
    run_id: str
    error: ErrorInfo


@message(26)
class GetRunStatus:
    """``wait`` > 0: long poll, answered when the run ends or after ``wait`` seconds."""

    request_id: int
    run_id: str
    wait: float


@message(27)
class RunStatusReply:
    request_id: int
    run_id: str
    state: str  # RUNNING | DONE | FAILED | CANCELLED | UNKNOWN
    counts: dict[str, int]
    placement: dict[str, str]
    owner: str
    term: int
    standbys: tuple[str, ...]
    error: ErrorInfo | None
    known: bool = False  # UNKNOWN here, but this node knows the run exists (a takeover?)
    # Its owner is not ALIVE here: the state as last replicated to this node, the standby expected
    # to take over (``daemon.replica_status``). Older clients see only the state above.
    changing: bool = False
    next_owner: str = ""


@message(28)
class FetchResults:
    request_id: int
    run_id: str
    task_ids: tuple[str, ...]
    chunk_bytes: int = 0  # > 0: values past it go by reference (Results.far); 0: all whole


@message(29)
class Results:
    """Frames: one serialised value per entry of ``task_ids`` (only ids that are found);
    ``far``: ids to pull in chunks (``FetchResultChunks``), held here but too big to send."""

    request_id: int
    run_id: str
    task_ids: tuple[str, ...]
    missing: tuple[str, ...]
    far: tuple[str, ...] = ()
    known: bool = False  # all missing: not ours, but this node knows the run exists


@message(30)
class CancelRun:
    request_id: int
    run_id: str


@message(31)
class ListRuns:
    request_id: int


@struct
class RunSummary:
    run_id: str
    state: str
    owner: str
    counts: dict[str, int]


@message(32)
class RunList:
    request_id: int
    runs: tuple[RunSummary, ...]


@message(33)
class StopNode:
    """Ask the daemon to drain and leave (``handoffd stop``)."""

    request_id: int


@message(34)
class Ok:
    request_id: int


# ---------------------------------------------------------------------------------------------
# Execution, owner <-> executing node and node <-> node: 40-59
# ---------------------------------------------------------------------------------------------


@struct
class InputRef:
    """One input of a dispatched task, flattened: ``parent`` -1 = a direct argument (in order),
    else the index (in the same list) of the inline input this one feeds.

    kind "value": a dependency's result, in frame ``frame`` (>= 0) or fetched from ``locations``.
    kind "inline": an inline function re-run here; its payload is frame ``frame``.
    """

    kind: str
    task_id: str
    locations: tuple[str, ...]  # node addresses ("host:port") holding a copy
    frame: int
    argument_inclusion: str
    parent: int


@struct
class DispatchItem:
    task_id: str
    attempt: int
    cost: dict[str, float]
    argument_inclusion: str
    timeout: float | None
    payload_frame: int
    inputs: tuple[InputRef, ...]
    # Where it goes in the node's local queue (higher first; ties: longer critical path first).
    priority: int = 0
    rank: float = 0.0  # upward rank: the task's critical path to the end of its run


@message(40)
class DispatchTasks:
    run_id: str
    owner_address: str
    items: tuple[DispatchItem, ...]
    packages: tuple[str, ...] = ()  # the run's code packages (sha256), fetched if missing
    far: tuple[FarFrame, ...] = ()  # frames sent by reference (messages_chunks)


@struct
class TaskAttempt:
    task_id: str
    attempt: int


@struct
class Refusal:
    task_id: str
    attempt: int
    reason: str


@message(41)
class DispatchReplied:
    run_id: str
    accepted: tuple[TaskAttempt, ...]
    refused: tuple[Refusal, ...]
    free: dict[str, float]
    resource_version: int


@struct
class TaskReport:
    """state: RUNNING | DONE | FAILED. ``frame`` >= 0: the value travels inline in that frame."""

    task_id: str
    attempt: int
    state: str
    size: int
    frame: int
    kind: str  # for FAILED: error | timeout | crash | cancelled
    exc_type: str
    message: str
    traceback: str
    # Issue 16 (task history), trailing: the worker's pid, the attempt's wall-clock start and end
    # on the executing node, and the bytes handed to the function.
    pid: int = 0
    started: float = 0.0
    ended: float = 0.0
    bytes_in: int = 0
    # seconds the attempt ran in its worker (-1: not measured): the owner learns durations from it
    duration: float = -1.0


@message(42)
class TasksReported:
    run_id: str
    reports: tuple[TaskReport, ...]
    free: dict[str, float]
    resource_version: int
    # what each report's attempt printed and logged, in report order (empty: nothing printed)
    outputs: tuple[str, ...] = ()


@message(43)
class FetchValues:
    """Peer to peer: send the values of these tasks to ``reply_to``."""

    request_id: int
    run_id: str
    task_ids: tuple[str, ...]
    reply_to: str


@message(44)
class ValuesFetched:
    """Frames: one per id in ``task_ids`` (those found); ``missing`` lists the others."""

    request_id: int
    run_id: str
    task_ids: tuple[str, ...]
    missing: tuple[str, ...]


@message(45)
class CancelTasks:
    run_id: str
    items: tuple[TaskAttempt, ...]


@message(46)
class FreeRun:
    """The run is over and its results were collected: drop its values everywhere."""

    run_id: str


@message(47)
class FreeValues:
    """No task of the run needs these values any more (every consumer finished and none is an
    output the client asked for): drop them. Sent at the run's term, fenced like ``FreeRun``."""

    run_id: str
    task_ids: tuple[str, ...]


@message(35)
class FreeRunRequest:
    """A client collected a run's results: the owner frees them on every node now."""

    request_id: int
    run_id: str


# One exchange per run (``Client.execute``, ``Run.wait``): the owner answers when the run ends with
# a ``RunOutcome`` that carries the status and the results it holds itself (owner-held inline values
# and its own store's, up to ``max_bytes``); the client fetches the rest with ``FetchResults``.


@message(36)
class SubmitAndWait:
    """``SubmitRun`` answered by a ``RunOutcome`` once the run ends (or after ``wait`` seconds,
    state RUNNING), never before the standbys hold the run. A run still going when they do gets a
    ``RunAccepted`` first (same request id). With ``release``, results the outcome carries in full
    are freed at once (``released`` in the outcome). Frames: one payload per task, as SubmitRun."""

    request_id: int
    run_id: str
    tasks: tuple[TaskMeta, ...]
    max_retries: int
    policy: str
    outputs: tuple[str, ...] | None
    wait: float
    max_bytes: int
    release: bool
    packages: tuple[str, ...] = ()  # as SubmitRun's


@message(37)
class WaitRun:
    """Long poll answered by a ``RunOutcome`` when the run ends or after ``wait`` seconds; with
    ``max_bytes`` > 0 a DONE outcome carries results up to that many bytes."""

    request_id: int
    run_id: str
    wait: float
    max_bytes: int
    release: bool


@message(38)
class RunOutcome:
    """A run's status (as ``RunStatusReply``) and, when DONE, the values of ``task_ids`` (frames, in
    order); ``pending`` are the wanted ids not carried (fetch them with ``FetchResults``);
    ``released``: the owner freed the run's results after this reply (such an outcome's
    ``placement`` is empty: its client took the values; ``GetRunStatus`` has the placement).
    Protocol 7 (``outcome_block``): with ``block_sizes``, ``task_ids`` is empty and the one frame
    holds every wanted value in the submission's order, ``block_ids`` the checksum of their ids."""

    request_id: int
    run_id: str
    state: str  # RUNNING | DONE | FAILED | CANCELLED | UNKNOWN
    counts: dict[str, int]
    placement: dict[str, str]
    owner: str
    term: int
    standbys: tuple[str, ...]
    error: ErrorInfo | None
    task_ids: tuple[str, ...]
    pending: tuple[str, ...]
    released: bool
    known: bool = False  # as RunStatusReply.known
    block_sizes: bytes = b""  # since 7: u32 sizes of the values in the one frame (empty: named)
    block_ids: int = 0  # since 7: ``outcome_block.fingerprint`` of the ids the block's values are


# ---------------------------------------------------------------------------------------------
# Owner replication, takeover and fencing: 60-79 (DESIGN.md 3.5; handoffd/replication)
# The envelope's ``term`` is the sender's term for the run; every message here also names it.
# ---------------------------------------------------------------------------------------------


@message(60)
class ReplicateRun:
    """Owner -> standby: the whole run as of log ``seq``. Frame 0: the run as a ``RunSnapshot``
    (``protocol.snapshot.encode_run``: ``RunState.snapshot`` without histories, payloads past
    ``FAR_BYTES`` left out: ``ReplicaPayloads``), kept packed by the standby until it takes over."""

    run_id: str
    term: int
    seq: int
    owner: str
    owner_address: str
    standbys: tuple[str, ...]  # takeover order


@struct
class TaskDelta:
    """The replicated part of one task's record, as of the batch (state-based: re-applying is safe).
    ``frame`` >= 0: the owner's inline copy of the value travels in that frame."""

    task_id: str
    state: str
    attempt: int
    node: str | None
    size: int
    locations: tuple[str, ...]
    failures: int
    losses: int
    completions: int
    frame: int
    attempts: tuple[AttemptInfo, ...] = ()  # issue 16: the task's attempt history


@message(61)
class ReplicateLog:
    """Owner -> standby: batch ``seq`` of the run's replication log (one per loop iteration)."""

    run_id: str
    term: int
    seq: int
    standbys: tuple[str, ...]
    tasks: tuple[TaskDelta, ...]
    run_state: str
    released: bool
    error: ErrorInfo | None  # the run's error
    frame_sizes: bytes = b""  # the values' frames packed (protocol.columns.join_frames)
    # since 8: the deltas as columns (protocol.log_columns), ``tasks`` then empty
    columns: bytes = b""


@message(62)
class ReplicaAcked:
    """Standby -> owner: applied up to ``seq`` (``need_snapshot``: it saw a gap). ``term`` is the
    highest term the standby knows for the run: above the owner's, the owner steps down."""

    run_id: str
    term: int
    seq: int
    need_snapshot: bool


@message(63)
class DropReplica:
    """Owner -> a node that is no longer one of the run's standbys."""

    run_id: str
    term: int


@message(64)
class ReconcileRun:
    """A standby taking a run over at ``term`` asks a node what it holds and runs for ``run_id``
    (answered by ``RunHoldings``); the node points the run's reports to ``owner_address`` from now
    on and fences lower terms."""

    request_id: int
    run_id: str
    term: int
    owner: str
    owner_address: str


@struct
class HeldValue:
    task_id: str
    size: int


@message(65)
class RunHoldings:
    """A node's answer to ``ReconcileRun``: values stored here and attempts still running here."""

    request_id: int
    run_id: str
    term: int
    held: tuple[HeldValue, ...]
    running: tuple[TaskAttempt, ...]


@message(66)
class RunMoved:
    """Reply to a client request about a run this node does not own: ask ``owner_address``."""

    request_id: int
    run_id: str
    owner: str
    owner_address: str
    term: int


@message(67)
class FollowOwner:
    """The sender owns ``run_id`` at ``term`` (sent to a node back from the dead after a healed
    partition): point the run's reports to ``owner_address``, fence lower terms. No answer."""

    run_id: str
    term: int
    owner: str
    owner_address: str


@message(68)
class ProbeHoldings:
    """The run's owner asks a node, whose report it may have lost, what it holds and runs for the
    run (answered by ``HoldingsProbed``); ``request_id`` is the owner's probe number. A node that
    followed another owner follows this one, as for ``ReconcileRun``."""

    request_id: int
    run_id: str
    term: int
    owner: str
    owner_address: str


@message(69)
class HoldingsProbed:
    """A node's answer to ``ProbeHoldings``: as ``RunHoldings``."""

    request_id: int
    run_id: str
    term: int
    held: tuple[HeldValue, ...]
    running: tuple[TaskAttempt, ...]


from handoffd.protocol import messages_observability as _messages_observability  # noqa: E402,F401,I001
from handoffd.protocol import messages_stream as _messages_stream  # noqa: E402,F401,I001
from handoffd.protocol import messages_reliability as _messages_reliability  # noqa: E402,F401,I001
from handoffd.protocol.messages_snapshot import RunSnapshot as RunSnapshot  # noqa: E402,I001
from handoffd.protocol.messages_snapshot import SnapshotSpec as SnapshotSpec  # noqa: E402,I001
from handoffd.protocol.messages_snapshot import SnapshotTask as SnapshotTask  # noqa: E402,I001
