"""Events into and instructions out of the owner's scheduler (``OwnerScheduler.handle``).

Events are facts, past tense (``TaskSucceeded``; a client's request the daemon relays is the fact that
it was made: ``RunSubmitted``, ``CancelRequested``); instructions are commands, imperative
(``Dispatch``), or outcomes the daemon tells the client (``SubmissionAccepted``, ``RunFinished``). All are
dataclasses of plain values, so the daemon can log them and tests can compare them, and nothing changes
one once built. Those built once per task or per message on the owner's hot path (``_hot``, ``_hot_run``) are not
frozen: a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, about 4x a
plain one's; they keep the frozen ones' hash (``unsafe_hash``). So are those every run makes, a
one-task ``execute``'s too (its submission, acceptance, deadline timer, end, release and free: each
frozen one's build was ~5k instructions a run). The others are frozen. Node identity
is always the node *name*; the daemon maps names to addresses from membership. No name here is also a
wire message's name (``protocol.messages``): the daemon translates between the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, dataclass_transform

from handoffd.errors import HandoffError
from handoffd.spec import RunOptions, TaskSpec

if TYPE_CHECKING:
    from handoffd.scheduler.graph import TaskGraph
    from handoffd.scheduler.run import RunState

TimerKey = tuple[Union[str, int], ...]
#: A refusal reason's start for a dispatch the node could not even read (``daemon.oversize``).
FRAME_TOO_LARGE = "frame_too_large"
RunEnd = Literal["DONE", "FAILED", "CANCELLED"]


_T = TypeVar("_T")


@dataclass_transform(field_specifiers=(field,))
def _hot(cls: type[_T]) -> type[_T]:
    """A per-task event or instruction: a plain (fast to build) dataclass, hashed like a frozen one."""
    return dataclass(slots=True, unsafe_hash=True)(cls)


def _field_state(self: Any) -> list[Any]:
    return [getattr(self, f.name) for f in fields(self)]


def _set_field_state(self: Any, state: list[Any]) -> None:
    for f, value in zip(fields(self), state, strict=True):
        object.__setattr__(self, f.name, value)


@dataclass_transform(field_specifiers=(field,))
def _hot_run(cls: type[_T]) -> type[_T]:
    """``_hot`` for an event or instruction every run makes (it was frozen): pickled as a frozen
    slotted dataclass is (its fields' values in a list), so what was pickled before loads."""
    made = _hot(cls)
    made.__getstate__ = _field_state  # type: ignore[assignment,method-assign]
    made.__setstate__ = _set_field_state  # type: ignore[attr-defined]
    return made


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


@_hot_run
class RunSubmitted:
    """A client handed us a DAG: we own it from now on."""

    run_id: str
    specs: Sequence[TaskSpec]
    options: RunOptions = field(default_factory=RunOptions)
    # The specs' TaskGraph when it was built off the event loop (``daemon.upload_intake``, for
    # a big upload); None: the owner builds it.
    graph: TaskGraph | None = None
    # The whole run, built (untouched, not owned by anyone yet) where the graph was: None, the
    # owner builds it (``scheduler.intake.accept``).
    run: RunState | None = None


@_hot
class NodeUpdate:
    """What we know of one node, from gossip or from a message it sent us.

    ``free`` replaces our view only when ``resource_version`` is newer (or the node just came back);
    ``alive=False`` (DEAD or LEFT) means every task and result copy there is lost. When a reply
    (``DispatchAnswered``) or report carries the node's free resources, feed this event first.
    """

    name: str
    address: str
    alive: bool
    capacity: dict[str, float]
    free: dict[str, float]
    resource_version: int


@_hot
class DispatchAnswered:
    """The executing node's ledger decided: ``accepted`` (task_id, attempt), ``refused`` (+ reason;
    one starting with ``FRAME_TOO_LARGE`` can never be taken: it fails the run with that reason)."""

    node: str
    run_id: str
    accepted: Sequence[tuple[str, int]] = ()
    refused: Sequence[tuple[str, int, str]] = ()


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """The task's inputs are gathered and its function is running (inputs no longer needed)."""

    run_id: str
    task_id: str
    attempt: int
    node: str


@_hot
class TaskSucceeded:
    """``node`` stored the result (``size`` bytes); ``value`` is set when it travelled with the report."""

    run_id: str
    task_id: str
    attempt: int
    node: str
    size: int
    value: bytes | None = field(default=None, repr=False)
    duration: float = -1.0  # seconds the attempt ran in its worker (-1: not measured)


@dataclass(frozen=True, slots=True)
class TasksSucceeded:
    """``TaskSucceeded`` of many attempts on one node of one run, as columns (index ``i`` of each is
    one attempt, in report order): what one report message says, without an event per task.
    ``pids``, ``started``, ``ended``, ``bytes_in`` (lists): the report's columns of what only the
    executing node knows, for the attempts' history (``sizes`` are their bytes out), written by
    the scheduler with each attempt's close (``successes.apply``); None: the owner's shell wrote
    them already (``history.observe_done``). ``delays``: a list the scheduler appends each
    reported attempt's time from its dispatch to its start to as it writes its row (the shell's
    latency histogram reads it after the batch), or None (not counted)."""

    run_id: str
    node: str
    task_ids: Sequence[str]
    attempts: Sequence[int]
    sizes: Sequence[int]
    values: Sequence[bytes | None] = field(repr=False)
    durations: Sequence[float]
    pids: list[int] | None = field(default=None, repr=False)
    started: list[float] | None = field(default=None, repr=False)
    ended: list[float] | None = field(default=None, repr=False)
    bytes_in: list[int] | None = field(default=None, repr=False)
    delays: list[float] | None = field(default=None, repr=False)


@_hot
class TaskErrored:
    """An attempt ended without a result; ``kind`` says why (only ``cancelled`` is not the task's fault)."""

    run_id: str
    task_id: str
    attempt: int
    node: str
    kind: str  # error | timeout | crash | cancelled
    exc_type: str = ""
    message: str = ""
    traceback: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class RunProbed:
    """``node``'s answer to ``ProbeRun`` number ``probe``: the attempts of the run it runs or queues
    (task_id, attempt) and the results of the run its store holds (task_id, size in bytes)."""

    node: str
    run_id: str
    probe: int
    running: Sequence[tuple[str, int]] = ()
    held: Sequence[tuple[str, int]] = ()


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A ``StartTimer`` ran out."""

    key: TimerKey


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """The client asked to cancel the run."""

    run_id: str


@dataclass(frozen=True, slots=True)
class ValuesWanted:
    """A client asked for values of a finished run that no copy holds any more: recompute them."""

    run_id: str
    task_ids: tuple[str, ...]


@_hot_run
class ResultsReleased:
    """The client fetched everything (or retention passed): free the run's results everywhere."""

    run_id: str


@dataclass(frozen=True, slots=True)
class WithdrawAnswered:
    """``node`` dropped ``withdrawn`` (task_id, attempt) unstarted, as we asked (``Withdraw``);
    ``kept`` had started or were unknown there: they report as usual."""

    node: str
    run_id: str
    withdrawn: Sequence[tuple[str, int]] = ()
    kept: Sequence[tuple[str, int]] = ()


@dataclass(frozen=True, slots=True)
class PeerRestarted:
    """``name`` is a new process under that name, started before membership declared its old one
    DEAD (it said so: ``messages_io.NodeRestarted``): what we had out on the old one may be gone.
    One probe answer per run settles its attempts there at once (``LostMessages.restarted``)."""

    name: str


Event = Union[
    PeerRestarted,
    ValuesWanted,
    RunSubmitted,
    WithdrawAnswered,
    NodeUpdate,
    DispatchAnswered,
    TaskStarted,
    TaskSucceeded,
    TasksSucceeded,
    TaskErrored,
    RunProbed,
    TimerFired,
    CancelRequested,
    ResultsReleased,
]

# ---------------------------------------------------------------------------------------------
# Instructions
# ---------------------------------------------------------------------------------------------


@_hot
class ValueRef:
    """A regular dependency's result: inline ``value`` when the owner holds it, else fetch it from one
    of ``locations`` (node names), peer to peer."""

    task_id: str
    locations: tuple[str, ...]
    value: bytes | None = field(default=None, repr=False)


@_hot
class InlineRef:
    """An inline function, re-run inside the consumer's job on ``inputs`` (nested refs, args order)."""

    task_id: str
    payload: bytes = field(repr=False)
    argument_inclusion: str
    inputs: tuple[InputRef, ...]


InputRef = Union[ValueRef, InlineRef]


@_hot
class DispatchedTask:
    """One attempt of one task in a ``Dispatch``: what the node needs to run it."""

    task_id: str
    attempt: int
    payload: bytes = field(repr=False)
    cost: dict[str, float]
    argument_inclusion: str
    timeout: float | None
    inputs: tuple[InputRef, ...]  # one per dependency, in args order
    priority: int = 0  # the function's priority (the run's added): the node's queue order
    rank: float = 0.0  # its upward rank (critical path): ties in the node's queue


@_hot
class Dispatch:
    """Run ``items`` of ``run_id`` on ``node``; at most one per (node, run) per ``handle`` call.
    From the scheduler ``items`` is its ``outbox.Placed`` columns, a sequence of the
    ``DispatchedTask`` items it stands for (equal to their tuple); one made elsewhere may hold
    the tuple itself."""

    node: str
    run_id: str
    term: int
    items: Sequence[DispatchedTask]


@dataclass(frozen=True, slots=True)
class CancelAttempts:
    """Stop these (task_id, attempt) on ``node`` and drop their claims; a late report is ignored."""

    node: str
    run_id: str
    items: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class ProbeRun:
    """Ask ``node`` what it runs and holds for ``run_id`` (answer: ``RunProbed`` with ``probe``);
    at the run's current ``term`` the question changes nothing on the node."""

    node: str
    run_id: str
    term: int
    probe: int


@_hot_run
class StartTimer:
    """Feed ``TimerFired(key)`` back after ``delay`` seconds (a key may be started again)."""

    key: TimerKey
    delay: float


@_hot_run
class SubmissionAccepted:
    """The run is ours (a retried submission of a known run is accepted again)."""

    run_id: str


@dataclass(frozen=True, slots=True)
class SubmissionRejected:
    """Nothing of the run was kept."""

    run_id: str
    error: HandoffError


@_hot_run
class RunFinished:
    """The run ended. After a lineage recompute of a lost, not yet released output a DONE run is
    reopened and finishes again: the daemon answers waiters on the latest one."""

    run_id: str
    state: RunEnd
    error: HandoffError | None = None


@_hot_run
class FreeResults:
    """Delete the run's stored results on ``nodes``."""

    run_id: str
    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FreeUnneededValues:
    """Delete these values of the run on ``node`` (no task needs them any more); at most one per
    (node, run) per ``handle`` call, at the run's ``term`` (a deposed owner's is ignored)."""

    node: str
    run_id: str
    term: int
    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Ask ``node`` to drop these attempts (task_id, attempt) of ``run_id`` if not started yet
    (answer: ``WithdrawAnswered``): another node can start them sooner."""

    node: str
    run_id: str
    term: int
    items: tuple[tuple[str, int], ...]


Instruction = Union[
    Withdraw,
    Dispatch,
    CancelAttempts,
    ProbeRun,
    StartTimer,
    SubmissionAccepted,
    SubmissionRejected,
    RunFinished,
    FreeResults,
    FreeUnneededValues,
]

__all__ = [
    "RunSubmitted",
    "NodeUpdate",
    "DispatchAnswered",
    "TaskStarted",
    "TaskSucceeded",
    "TasksSucceeded",
    "TaskErrored",
    "RunProbed",
    "PeerRestarted",
    "TimerFired",
    "CancelRequested",
    "ResultsReleased",
    "Event",
    "ValueRef",
    "InlineRef",
    "InputRef",
    "DispatchedTask",
    "Dispatch",
    "CancelAttempts",
    "Withdraw",
    "WithdrawAnswered",
    "ProbeRun",
    "StartTimer",
    "SubmissionAccepted",
    "SubmissionRejected",
    "RunFinished",
    "FreeResults",
    "FreeUnneededValues",
    "Instruction",
    "TimerKey",
]
