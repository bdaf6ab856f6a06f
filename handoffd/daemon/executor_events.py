"""What goes into the executor's state machine (events) and what comes out (instructions).

``ExecutorState.handle(event, now)`` returns a list of instructions; ``Executor`` (the I/O shell)
carries them out in order: sends, worker-pool submits and cancels, timers. Events and instructions
are plain records: no loop, no sockets, so the machine runs in a test without either.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from handoffd.protocol import messages as m
from handoffd.protocol.columns import DispatchTable, ReportTable
from handoffd.protocol.messages_chunks import ValueChunk
from handoffd.protocol.messages_hooks import EncodeFailed
from handoffd.protocol.messages_rebalance import WithdrawTasks
from handoffd.worker._records import Job, JobBlock, Outcome

# -- events (into ExecutorState.handle) ------------------------------------------------------------


@dataclass(slots=True)
class Dispatched:
    """An owner at ``term`` dispatched tasks to us (``msg.items``; payloads and inputs in ``frames``)."""

    msg: m.DispatchTasks | DispatchTable  # (a received DispatchColumns, read: executor_intake)
    frames: list[bytes]
    term: int = 0
    owner: str = ""  # the sender's name ("": not known): two claims at one term settle by it


@dataclass(slots=True)
class ValuesAsked:
    """A peer asks for values we may hold."""

    msg: m.FetchValues


@dataclass(slots=True)
class ValuesArrived:
    """A peer answered one of our fetches: one frame per value in ``msg.task_ids``."""

    msg: m.ValuesFetched
    frames: list[bytes]


@dataclass(slots=True)
class ChunkArrived:
    """A holder sent a chunk of a value we pull (``store.chunks``), or said it has none."""

    msg: ValueChunk
    frames: list[Any]


@dataclass(slots=True)
class FetchTimedOut:
    """The timer set by ``SetTimer(request_id, ...)`` for a fetch fired."""

    request_id: int


@dataclass(slots=True)
class TaskEnded:
    """The worker pool's outcome of a job submitted by ``Execute``."""

    outcome: Outcome


@dataclass(slots=True)
class CancelAsked:
    msg: m.CancelTasks
    term: int = 0


@dataclass(slots=True)
class Leaving:
    """The node is leaving: refuse new dispatches, hand queued tasks back to their owners now,
    let running ones finish, and send their values inline up to ``inline_bytes``."""

    inline_bytes: int = 64 << 20


@dataclass(slots=True)
class WithdrawAsked:
    """The run's owner would start these queued attempts sooner elsewhere."""

    msg: WithdrawTasks
    term: int = 0


@dataclass(slots=True)
class RunFreed:
    msg: m.FreeRun
    term: int = 0


@dataclass(slots=True)
class ValuesFreed:
    msg: m.FreeValues
    term: int = 0


@dataclass(slots=True)
class OwnerSeen:
    """The run's owner is ``address`` (node ``name``) at ``term`` (a takeover or a probe says so)."""

    run_id: str
    term: int
    address: str
    name: str = ""


@dataclass(slots=True)
class Refill:
    """Asked for by ``Soon``: chain queued tasks behind running slots, start what the ledger allows."""


@dataclass(slots=True)
class Flush:
    """Asked for by ``Soon``: send the reports gathered since the last flush, one message per run."""


@dataclass(slots=True)
class HookFailedArrived:
    """A peer's serialize hook for one of our ``FetchEncoded`` fetches raised."""

    msg: EncodeFailed


REFILL = Refill()
FLUSH = Flush()

Event = (
    Dispatched | ValuesAsked | ValuesArrived | FetchTimedOut | TaskEnded | CancelAsked | RunFreed
    | ValuesFreed | OwnerSeen | Refill | Flush | Leaving | WithdrawAsked | HookFailedArrived
    | ChunkArrived
)  # fmt: skip

# -- instructions (out of ExecutorState.handle) ----------------------------------------------------


@dataclass(slots=True)
class SendMessage:
    address: str
    msg: Any
    frames: list[bytes]
    term: int = 0


@dataclass(slots=True)
class Execute:
    """Submit ``jobs``, in order, at the end of worker-pool chain ``chain`` (one slot's claim);
    a ``JobBlock`` among them stands for its jobs (a refill's chained rows, ``_records.expand``)."""

    chain: int
    jobs: list[Job | JobBlock]


@dataclass(slots=True)
class CancelJob:
    """Cancel the job ``key`` in the worker pool; its outcome (kind "cancelled") comes as TaskEnded."""

    key: Hashable


@dataclass(slots=True)
class LedgerChanged:
    """The ledger's free resources changed: gossip them (the shell coalesces)."""


@dataclass(slots=True)
class NewOwner:
    """A run's owner changed to a higher term: if we owned the run, we were deposed."""

    run_id: str
    term: int
    owner: str


@dataclass(slots=True)
class SetTimer:
    """Feed ``event`` back at time ``at`` (the clock ``now`` comes from), unless cancelled first."""

    key: int
    at: float
    event: Event


@dataclass(slots=True)
class CancelTimer:
    key: int


@dataclass(slots=True)
class Soon:
    """Feed ``event`` back once the events already queued have been handled (next loop iteration):
    several dispatches or outcomes in one wake-up then share one refill, one report message."""

    event: Event


@dataclass(slots=True)
class AnsweredHere:
    """The answer to a dispatch of our own node's owner, as a record, not a message: the shell
    hands it to the owner in this process (``Executor.here``), which never encodes, routes or
    unpacks it (issue 13). ``accepted``: (task id, attempt); ``refused``: (task id, attempt,
    reason); ``free``/``resource_version``: our ledger, as a ``DispatchReplied`` carries it."""

    run_id: str
    term: int
    accepted: tuple[tuple[str, int], ...]
    refused: tuple[tuple[str, int, str], ...]
    free: dict[str, float]
    resource_version: int


@dataclass(slots=True)
class ReportedHere:
    """A run's batch of reports to our own node's owner, as a record (``AnsweredHere``): the
    table a remote batch is read into (``columns.ReportTable``: columns from the tasks' ends,
    its ``frames`` all -1, ``outputs`` one per report or () when none printed), each report's
    inline value beside it in ``values``."""

    run_id: str
    term: int
    table: ReportTable
    values: tuple[bytes | None, ...]
    free: dict[str, float]
    resource_version: int

    @property
    def reports(self) -> tuple[m.TaskReport, ...]:
        """The per-task form (tests, tools, the message a shell with no owner sends)."""
        return self.table.reports()

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.table.outputs


LEDGER_CHANGED = LedgerChanged()

Instruction = (
    SendMessage | Execute | CancelJob | LedgerChanged | NewOwner | SetTimer | CancelTimer | Soon
    | AnsweredHere | ReportedHere
)  # fmt: skip
