"""A one-task ``execute``'s outcome sent from its report, before the run's bookkeeping.

The reply side of the one-task lane (docs/architecture.md, "The owner's one-task lane"). A
``SubmitAndWait`` with ``release`` that is still held back from replication (``owner_waits.ShortRuns``)
is answered, in the general path, only after our executor's report went through the scheduler's
batch (the report, the placement pass that follows it, the run's end), the run's retention and
output bookkeeping and the outcome's look-ups of the run's results. When that report is the one
successful attempt of the run's only task and its value is in hand, every field of that outcome is
already known: this module sends it from the report itself, and the bookkeeping follows in the
same loop callback (the drain's batch, ``OwnerIO.flush``), its result unchanged. The client's wait
loses the batch and the run's end; the owner's work is the same.

Exactness: the outcome is the one ``Waiting.answer(final=True)`` would send after the batch, field
for field (tests/unit/test_owner_lane.py builds both and compares them). It is sent only when the
batch cannot end otherwise: the report is the task's active attempt on our node, the run is RUNNING
with that task alone, the value is carried whole within the client's budget, and the submitter is
still held (so nothing was said to it, no standby holds the run, and the answer is final). Events the
drain read before the report are fed before it (``OwnerIO._pending``: answers, reports, node
updates, none of which can end or fail this attempt: a refusal or withdrawal of it would mean no
report); anything that could (a cancel, a timer, a takeover, a step-down) feeds the scheduler at
once, so it reaches the scheduler after this report, as it would have. The release the answer
carries (``free_now``) waits for the run's end (``Waiting.run_finished``), as in the general path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from handoffd.daemon.dispatch import HereTable, columns_of
from handoffd.daemon.owner_waits import Waiting, outcome_of
from handoffd.daemon.results import OUTCOME_MAX_BYTES, OUTCOME_VALUE_MAX
from handoffd.scheduler.states import ACTIVE, DONE, RUN_RUNNING

if TYPE_CHECKING:
    from handoffd.daemon.executor_events import AnsweredHere, ReportedHere
    from handoffd.daemon.ports import MembersPort, Replicator
    from handoffd.scheduler import events as ev
    from handoffd.scheduler.owner import OwnerScheduler

_DONE_STATE = 1  # a report's DONE in its table's ``states`` column (``protocol.columns.STATES``)
_VALUE_MAX = min(OUTCOME_MAX_BYTES, OUTCOME_VALUE_MAX)  # the most an outcome carries inline


def answer_early(
    ins: ReportedHere,
    port: MembersPort,
    scheduler: OwnerScheduler,
    waiting: Waiting,
    replication: Replicator,
) -> bool:
    """Answer the held submitter of ``ins``'s run from this report, if it is the run's last word
    (module doc); True when it was answered (the run's end then frees what it released)."""
    table = ins.table
    states = table.states
    if len(states) != 1 or states[0] != _DONE_STATE:
        return False
    value = ins.values[0]
    if type(value) is not bytes:  # kept in our store (big), or a buffer: the general path's
        return False
    run_id = ins.run_id
    held = waiting.short.held
    entry = held.get(run_id)
    if entry is None:
        return False
    waiter = entry[0]
    if len(value) > _VALUE_MAX or len(value) > waiter.max_bytes:
        return False
    run = scheduler.run_state(run_id)
    if run is None or run.state != RUN_RUNNING or run.inline or len(run.tasks) != 1:
        return False
    task_id = table.task_ids[0]
    rec = run.tasks.get(task_id)
    if (
        rec is None
        or rec.state not in ACTIVE
        or rec.attempt != table.attempts[0]
        or rec.node != port.name
    ):
        return False
    outputs = run.options.outputs
    if outputs is not None and tuple(outputs) != (task_id,):
        return False
    counts = run.counts()  # as the batch leaves them: the attempt's state moved to DONE
    counts[rec.state] -= 1
    counts[DONE] += 1
    del held[run_id]  # (``ShortRuns.take``: its delay no longer runs)
    outcome = outcome_of(
        waiter.request_id,
        run_id,
        "DONE",
        counts,
        {},  # released: no placement, as ``Waiting.answer`` sends it
        port.name,
        run.term,
        replication.standbys(run_id),
        None,
        (task_id,),
        (),
        True,
    )
    port.reply(waiter.conn, outcome, [value])
    waiting.answered_early(run_id)
    return True


def may_defer(ins: AnsweredHere, scheduler: OwnerScheduler, waiting: Waiting) -> bool:
    """Our executor took the one task of a held run: its answer may wait for the scheduler's next
    batch (the report's, normally), not make a batch of its own (module doc).

    What the answer tells the scheduler changes nothing it decides meanwhile: the attempt's cost
    moves from our node's outstanding demand to the ledger's use (the free resources the answer
    carries), the same room either way, and a decision that reads either (a timer, a cancel, another
    run's placement, a takeover or a step-down) feeds what waits first (``OwnerIO._settle``): the
    scheduler sees every event in the order it came, the answer as if it came a little later."""
    if ins.refused or ins.run_id not in waiting.short.held:
        return False
    run = scheduler.run_state(ins.run_id)
    return run is not None and len(run.tasks) == 1


def one_table(
    ins: ev.Dispatch,
    owner_address: str,
    address_of: Callable[[str], str | None],
    packages: tuple[str, ...],
) -> tuple[HereTable, list[bytes]] | None:
    """``dispatch.dispatch_here`` of a dispatch of one task without inputs (a one-task run's,
    every W3 call's): the same ``HereTable`` and frames, its columns written as one-entry lists
    with none of the general build's walks and look-ups; None for any other dispatch."""
    placed = columns_of(ins)
    flat = placed.flat
    if len(flat) != 4 or placed.inputs is not None:
        return None
    _, payload, cost, inclusion, timeout = placed.groups[0]
    t = HereTable.__new__(HereTable)
    t.run_id, t.owner_address, t.packages, t.far = ins.run_id, owner_address, packages, ()
    t.task_ids = (flat[0],)
    t.attempts = [flat[1]]
    t.payloads = [0]
    t.costs = [{k: float(q) for k, q in cost.items() if q}]
    t.inclusion, t.inclusions = [0], (inclusion,)
    t.timeouts = [math.nan if timeout is None else float(timeout)]
    t.priorities = [flat[2]]
    t.ranks = [float(flat[3])]
    t.counts, t.input_task_ids, t.frames = [0], (), []
    t.plain, t._held = True, None
    t._ins, t._refs, t._address_of = ins, [], address_of
    return t, [payload]
