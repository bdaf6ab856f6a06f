"""The executor's state machine alone: events in, instructions out, no loop, no pool, no sockets.

Admission against the ledger, the local queue's bound, chains (join, claim inheritance, leave by
cancel, release with the last task), fencing by term, cancels of queued / running / chained tasks,
fetches and their timers, frees; then a hypothesis state machine drives random event sequences
through it with a model worker pool and checks the ledger never over-commits, no attempt is started
twice, and once everything settles every accepted task was reported exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from handoffd.daemon.dispatch import dispatch_here
from handoffd.daemon.executor_events import (
    FLUSH,
    REFILL,
    CancelAsked,
    CancelJob,
    CancelTimer,
    ChunkArrived,
    Dispatched,
    Execute,
    FetchTimedOut,
    Instruction,
    LedgerChanged,
    NewOwner,
    OwnerSeen,
    RunFreed,
    SendMessage,
    SetTimer,
    Soon,
    TaskEnded,
    ValuesFreed,
    WithdrawAsked,
)
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import messages as m
from handoffd.protocol.columns import (
    replied_pairs,
    tasks_reported_of,
)
from handoffd.protocol.messages_chunks import FetchChunks, ValueChunk
from handoffd.protocol.messages_columns import RepliedColumns, ReportColumns
from handoffd.protocol.messages_rebalance import TasksWithdrawn, WithdrawTasks
from handoffd.scheduler import events as ev
from handoffd.scheduler.cluster_view import WINDOW
from handoffd.store.store import ResultStore
from handoffd.worker._records import expand
from handoffd.worker.ledger import Ledger
from handoffd.worker.pool import Job, Outcome

RUN = "run-1"
OWNER = "owner:1"
ME = "me:1"
PEER, PEER2 = "peer:1", "peer:2"
CPU = {"cpu": 1.0}


def make(capacity: dict[str, float] | None = None, **kw: Any) -> ExecutorState:
    return ExecutorState(
        address=ME,
        ledger=Ledger(capacity or {"cpu": 2.0}),
        store=ResultStore(memory_limit=1 << 30),
        inline_result_bytes=kw.pop("inline_result_bytes", 1 << 10),
        **kw,
    )


def item(
    task_id: str, cost: dict[str, float] | None = None, attempt: int = 1, inputs: tuple = ()
) -> m.DispatchItem:
    return m.DispatchItem(task_id, attempt, cost or CPU, "variadic", None, 0, inputs)


def scheduled(msg: m.DispatchTasks, frames: list[bytes]) -> ev.Dispatch:
    """The scheduler's ``Dispatch`` that ``msg`` (with ``frames``) is built from on our node
    (node names are addresses here); its frame numbers in range."""

    def refs(inputs: tuple[m.InputRef, ...], parent: int) -> tuple[ev.InputRef, ...]:
        out: list[ev.InputRef] = []
        for j, ref in enumerate(inputs):
            if ref.parent != parent:
                continue
            if ref.kind == "value":
                value = frames[ref.frame] if ref.frame >= 0 else None
                out.append(ev.ValueRef(ref.task_id, ref.locations, value))
            else:
                nested = refs(inputs, j)
                data = frames[ref.frame]
                out.append(ev.InlineRef(ref.task_id, data, ref.argument_inclusion, nested))
        return tuple(out)

    items = tuple(
        ev.DispatchedTask(
            i.task_id,
            i.attempt,
            frames[i.payload_frame],
            dict(i.cost),
            i.argument_inclusion,
            i.timeout,
            refs(i.inputs, -1),
            i.priority,
            i.rank,
        )
        for i in msg.items
    )
    return ev.Dispatch(ME, msg.run_id, 1, items)


def here(msg: m.DispatchTasks, frames: list[bytes]) -> tuple[Any, list[bytes]]:
    """``msg`` as the owner on our own node hands it over (``dispatch.dispatch_here``)."""
    return dispatch_here(scheduled(msg, frames), msg.owner_address, lambda a: a)


def from_peer(dep: str, *holders: str) -> m.InputRef:
    return m.InputRef("value", dep, holders or (PEER,), -1, "variadic", -1)


def dispatch(
    st: ExecutorState,
    items: Iterable[m.DispatchItem],
    term: int = 1,
    owner: str = OWNER,
    run: str = RUN,
    now: float = 0.0,
) -> list[Instruction]:
    msg = m.DispatchTasks(run, owner, tuple(items))
    return st.handle(Dispatched(msg, [b"payload"], term), now)


def whole(fetch: FetchChunks, value: bytes) -> ChunkArrived:
    """A holder's answer to ``fetch`` with a value of one chunk."""
    chunk = ValueChunk(fetch.request_id, RUN, fetch.key, 0, len(value), fetch.chunk_bytes, -1)
    return ChunkArrived(chunk, [value])


def of(out: list[Instruction], kind: type) -> list[Any]:
    return [i for i in out if isinstance(i, kind)]


def sent(out: list[Instruction], kind: type) -> list[Any]:
    """The messages of ``kind`` in ``out``; reports (sent as columns) read as ``TasksReported``."""
    msgs = [per_task(i.msg) for i in of(out, SendMessage)]
    return [msg for msg in msgs if isinstance(msg, kind)]


def per_task(msg: Any) -> Any:
    """Reports and dispatch answers (sent as columns) read back per task."""
    if isinstance(msg, RepliedColumns):
        accepted, refused = replied_pairs(msg)
        return m.DispatchReplied(
            msg.run_id,
            tuple(m.TaskAttempt(*a) for a in accepted),
            tuple(m.Refusal(*r) for r in refused),
            msg.free,
            msg.resource_version,
        )
    return tasks_reported_of(msg) if isinstance(msg, ReportColumns) else msg


def replied(out: list[Instruction]) -> m.DispatchReplied:
    (reply,) = sent(out, m.DispatchReplied)
    return reply


def accepted(out: list[Instruction]) -> list[str]:
    return [a.task_id for a in replied(out).accepted]


def refused(out: list[Instruction]) -> dict[str, str]:
    return {r.task_id: r.reason for r in replied(out).refused}


def jobs(out: list[Instruction]) -> list[tuple[int, Job]]:
    return [(ex.chain, job) for ex in of(out, Execute) for job in expand(ex.jobs)]


def started(out: list[Instruction]) -> list[str]:
    return [job.key[1] for _, job in jobs(out)]


def settle(st: ExecutorState, out: list[Instruction], now: float = 0.0) -> list[Instruction]:
    """``out`` plus what the Soon events it asked for produce, until none is left."""
    everything = list(out)
    pending = [i.event for i in of(out, Soon)]
    while pending:
        more = st.handle(pending.pop(0), now)
        everything += more
        pending += [i.event for i in of(more, Soon)]
    return everything


def ended(
    st: ExecutorState, task_id: str, value: bytes | None = b"v", kind: str = "", attempt: int = 1
) -> list[Instruction]:
    key = (RUN, task_id, attempt)
    if value is not None and not kind:
        outcome = Outcome(key, True, value, duration=0.001)
    else:
        outcome = Outcome(key, False, None, "Boom", "it failed", kind=kind or "error")
    return settle(st, st.handle(TaskEnded(outcome), 0.0))


def reports(out: list[Instruction]) -> dict[str, m.TaskReport]:
    return {r.task_id: r for msg in sent(out, m.TasksReported) for r in msg.reports}


# -- admission ------------------------------------------------------------------------------------


def test_dispatch_claims_what_fits_and_queues_the_rest_until_a_claim_is_released() -> None:
    st = make({"cpu": 2.0})
    out = dispatch(st, [item("big", {"cpu": 2.0}), item("small")])
    assert accepted(out) == ["big", "small"] and not refused(out)
    assert started(out) == ["big"] and st.ledger.free == {"cpu": 0.0}
    assert replied(out).free == {"cpu": 0.0}  # the owner learns what is left at once
    assert of(out, LedgerChanged)
    out = settle(st, out)
    assert started(out) == ["big"]  # "small" cannot chain behind a task of another cost
    assert list(st.local) == [(RUN, "small", 1)]
    out = ended(st, "big")
    assert started(out) == ["small"] and st.ledger.free == {"cpu": 1.0}
    assert reports(out)["big"].state == "DONE"
    out = ended(st, "small")
    assert st.ledger.idle() and not st.tasks and not st.slots


def test_refusals_say_why() -> None:
    st = make({"cpu": 2.0})
    out = dispatch(st, [item("huge", {"cpu": 3.0}), item("nogpu", {"gpu": 1.0})])
    assert refused(out) == {
        "huge": "no room: exceeds the node's capacity",
        "nogpu": "no room: exceeds the node's capacity",
    }
    bad = m.DispatchItem("bad", 1, CPU, "variadic", None, 5, ())
    out = dispatch(st, [bad])
    assert refused(out) == {"bad": "bad payload frame"}
    st.draining = True
    out = dispatch(st, [item("late")])
    assert refused(out) == {"late": "draining"} and not of(out, Execute)
    assert st.counters["refused"] == 4 and st.ledger.idle()


def test_a_duplicate_delivery_is_accepted_again_but_started_once() -> None:
    st = make()
    out = dispatch(st, [item("a")])
    again = dispatch(st, [item("a")])
    assert accepted(again) == ["a"] and not of(again, Execute)
    assert started(out) == ["a"] and st.ledger.free == {"cpu": 1.0}


def test_the_local_queue_holds_at_most_queue_factor_times_capacity() -> None:
    st = make({"cpu": 1.0}, queue_factor=2.0)
    out = dispatch(st, [item(f"t{i}") for i in range(4)])
    assert accepted(out) == ["t0", "t1", "t2"]
    assert refused(out) == {"t3": "no room: queue full"}
    out = settle(st, out)
    # The queued two chained behind t0 (same cost): the queue is empty and takes two more.
    assert started(out) == ["t0", "t1", "t2"] and not st.local
    out = dispatch(st, [item(f"u{i}") for i in range(3)])
    assert accepted(out) == ["u0", "u1"] and refused(out) == {"u2": "no room: queue full"}


def test_the_default_queue_holds_two_owners_full_windows() -> None:
    # Each owner keeps up to WINDOW x capacity outstanding on a node: a queue limit below that
    # refuses part of every window, and each refused task is dispatched, refused and placed again.
    st = make({"cpu": 1.0})
    for owner, run in ((OWNER, RUN), ("owner2:1", "r2")):
        out = dispatch(st, [item(f"{run}-{i}") for i in range(WINDOW)], owner=owner, run=run)
        assert len(accepted(out)) == WINDOW and not refused(out)
    # (a few started or chained behind the first) The queue takes up to 2 x WINDOW queued, no more.
    room = 2 * WINDOW - len(st.local)
    out = dispatch(st, [item(f"x{i}") for i in range(room + 1)], owner="owner3:1", run="r3")
    assert len(accepted(out)) == room and refused(out) == {f"x{room}": "no room: queue full"}


# -- chains ---------------------------------------------------------------------------------------


def test_queued_tasks_of_the_same_cost_join_a_slot_and_inherit_its_claim() -> None:
    cost = {"cpu": 1.0, "gpu": 1.0}
    st = make({"cpu": 2.0, "gpu": 2.0})
    out = dispatch(st, [item("a", cost), item("b", cost), item("c", cost), item("d", cost)])
    first = jobs(out)[:2]
    assert [j.key[1] for _, j in first] == ["a", "b"]  # one claim each, then the queue
    assert {j.devices for _, j in first} == {"0", "1"}
    out = settle(st, out)
    chained = jobs(out)[2:]
    assert sorted(j.key[1] for _, j in chained) == ["c", "d"]
    slot_env = {chain: j.devices for chain, j in first}
    for chain, job in chained:  # the slot's claim and GPU index, no round through the ledger
        assert chain in slot_env and job.devices == slot_env[chain]
    assert st.ledger.free == {"cpu": 0.0, "gpu": 0.0} and len(st.slots) == 2
    (slot_c,) = [c for c, j in chained if j.key[1] == "c"]
    head = next(j.key[1] for c, j in first if c == slot_c)
    out = ended(st, head)
    assert not of(out, LedgerChanged) and st.ledger.free == {"cpu": 0.0, "gpu": 0.0}
    out = ended(st, "c")  # the slot's last task: its claim goes back
    assert of(out, LedgerChanged)
    assert st.ledger.free == {"cpu": 1.0, "gpu": 1.0} and slot_c not in st.slots
    assert sorted(st.ledger._gpus_free) == [int(slot_env[slot_c] or "-1")]


def test_a_task_still_fetching_inputs_is_not_chained_until_they_arrive() -> None:
    st = make({"cpu": 1.0})
    out = dispatch(st, [item("head"), item("needs", inputs=(from_peer("dep"),)), item("free")])
    (fetch,) = sent(out, FetchChunks)
    out = settle(st, out)
    assert started(out) == ["head", "free"]
    out = settle(st, st.handle(whole(fetch, b"dep-value"), 0.0))
    assert of(out, CancelTimer) == [CancelTimer(fetch.request_id)]
    ((chain, job),) = jobs(out)
    assert job.key == (RUN, "needs", 1) and job.inputs == [("value", b"dep-value")]
    assert chain in st.slots and len(st.slots) == 1  # behind "head", under its claim


def test_cancels_of_a_queued_a_running_and_a_chained_task() -> None:
    st = make({"cpu": 1.0})
    out = settle(st, dispatch(st, [item("run"), item("chained"), item("other", {"cpu": 0.5})]))
    assert started(out) == ["run", "chained"] and list(st.local) == [(RUN, "other", 1)]
    cancel = m.CancelTasks(
        RUN, (m.TaskAttempt("other", 1), m.TaskAttempt("chained", 1), m.TaskAttempt("run", 1))
    )
    out = settle(st, st.handle(CancelAsked(cancel, 1), 0.0))
    # queued: reported at once; started (running or chained): the pool is told, the claim held
    assert [c.key[1] for c in of(out, CancelJob)] == ["chained", "run"]
    assert reports(out)["other"].kind == "cancelled" and not st.local
    assert st.ledger.free == {"cpu": 0.0}
    out = ended(st, "run", None, kind="cancelled")
    assert st.ledger.free == {"cpu": 0.0}  # "chained" still holds the slot
    out = ended(st, "chained", None, kind="cancelled")
    assert reports(out)["chained"].kind == "cancelled" and st.ledger.idle() and not st.slots


def test_a_cancelled_task_waiting_for_inputs_releases_its_claim_and_is_never_started() -> None:
    st = make({"cpu": 1.0})
    out = dispatch(st, [item("w", inputs=(from_peer("dep"),))])
    (fetch,) = sent(out, FetchChunks)
    assert st.ledger.free == {"cpu": 0.0} and not of(out, Execute)
    out = settle(st, st.handle(CancelAsked(m.CancelTasks(RUN, (m.TaskAttempt("w", 1),)), 1), 0))
    assert reports(out)["w"].kind == "cancelled" and st.ledger.idle()
    assert not of(settle(st, st.handle(whole(fetch, b"x"), 0.0)), Execute)


# -- fencing --------------------------------------------------------------------------------------


def test_a_lower_term_is_refused_and_a_higher_one_takes_the_run_over() -> None:
    st = make({"cpu": 2.0})
    out = dispatch(st, [item("a")], term=2)
    assert accepted(out) == ["a"] and of(out, SendMessage)[0].term == 2
    out = dispatch(st, [item("b")], term=1, owner="old:1")
    assert refused(out) == {"b": "stale term 1: the run's owner is at term 2"}
    assert of(out, SendMessage)[0].address == "old:1" and of(out, SendMessage)[0].term == 2
    # a deposed owner's commands are ignored
    cancel = m.CancelTasks(RUN, (m.TaskAttempt("a", 1),))
    assert st.handle(CancelAsked(cancel, 1), 0.0) == [] and (RUN, "a", 1) in st.tasks
    assert st.handle(RunFreed(m.FreeRun(RUN), 1), 0.0) == [] and st.term_of(RUN) == 2
    # a higher term (a takeover) is accepted and reported, and gets the reports
    out = st.handle(OwnerSeen(RUN, 3, "new:1", "n2"), 0.0)
    assert of(out, NewOwner) == [NewOwner(RUN, 3, "n2")] and st.run_owners[RUN] == (
        3,
        "new:1",
        "n2",
    )
    out = ended(st, "a")
    (report,) = of(out, SendMessage)
    assert report.address == "new:1" and report.term == 3
    out = dispatch(st, [item("c")], term=4, owner="newer:1")
    assert accepted(out) == ["c"] and of(out, NewOwner) == [NewOwner(RUN, 4, "")]
    assert st.run_owners[RUN] == (4, "newer:1", "")  # (n2's name was term 3's: not carried)


def test_holdings_list_stored_values_and_live_attempts() -> None:
    st = make({"cpu": 1.0})
    settle(st, dispatch(st, [item("a"), item("b")]))
    ended(st, "a", b"value-a")
    holdings = st.holdings(7, RUN, 1)
    assert holdings.held == (m.HeldValue("a", len(b"value-a")),)
    assert holdings.running == (m.TaskAttempt("b", 1),) and holdings.request_id == 7


# -- inputs, fetches and frees --------------------------------------------------------------------


def test_a_fetch_times_out_at_now_plus_the_timeout_then_asks_the_next_holder() -> None:
    st = make({"cpu": 1.0}, fetch_timeout=5.0)
    out = dispatch(st, [item("w", inputs=(from_peer("dep", PEER, ME, PEER2),))], now=100.0)
    (fetch,) = sent(out, FetchChunks)
    (timer,) = of(out, SetTimer)
    assert (timer.key, timer.at, timer.event) == (fetch.request_id, 105.0, FetchTimedOut(1))
    assert of(out, SendMessage)[1].address == PEER
    out = st.handle(FetchTimedOut(fetch.request_id), 105.0)
    (again,) = sent(out, FetchChunks)
    assert of(out, SendMessage)[0].address == PEER2  # never ourselves
    assert of(out, SetTimer)[0].at == 110.0
    nothing = ValueChunk(again.request_id, RUN, "dep", 0, -1, again.chunk_bytes, -1)
    out = settle(st, st.handle(ChunkArrived(nothing, []), 106.0))
    report = reports(out)["w"]
    assert report.kind == "input_lost" and "could not be fetched from any holder" in report.message
    assert st.ledger.idle() and not st.fetches
    # a late answer to a fetch already given up changes nothing
    assert st.handle(whole(fetch, b"x"), 107.0) == []


def test_a_fetched_copy_is_dropped_once_every_local_consumer_started() -> None:
    st = make({"cpu": 2.0})
    ref = from_peer("dep")
    out = dispatch(st, [item("a", inputs=(ref,)), item("b", inputs=(ref,))])
    (fetch,) = sent(out, FetchChunks)  # one fetch for both consumers
    out = settle(st, st.handle(whole(fetch, b"copy"), 0.0))
    assert sorted(started(out)) == ["a", "b"]
    assert not st.store.has(RUN, "dep")  # both jobs carry it; the copy is gone


def test_a_withdrawn_consumer_gives_back_its_need_of_a_fetched_copy() -> None:
    """What a task counted as needed when accepted is given back whichever way it leaves the
    queue: withdrawn, it no longer keeps the copy for the consumer that starts later."""
    st = make({"cpu": 1.0})
    settle(st, dispatch(st, [item("a")]))  # holds the only cpu: b and c wait in the queue
    ref = from_peer("dep")
    other = {"cpu": 0.75}  # (not a's cost: they do not join its chain)
    out = settle(
        st, dispatch(st, [item("b", other, inputs=(ref,)), item("c", other, inputs=(ref,))])
    )
    (fetch,) = sent(out, FetchChunks)
    settle(st, st.handle(whole(fetch, b"copy"), 0.0))
    assert st.store.has(RUN, "dep") and len(st.local) == 2
    ask = WithdrawTasks(RUN, (m.TaskAttempt("b", 1),))
    answer = sent(settle(st, st.handle(WithdrawAsked(ask, 1), 0.0)), TasksWithdrawn)
    assert [t.task_id for t in answer[0].withdrawn] == ["b"]
    assert st.store.has(RUN, "dep")  # c still waits for it
    out = ended(st, "a")
    ((_, job),) = jobs(out)
    assert job.key[1] == "c" and job.inputs == [("value", b"copy")]
    assert not st.store.has(RUN, "dep")  # c's job carries it; nobody else counted it


def test_free_values_and_free_run_drop_what_the_owner_no_longer_needs() -> None:
    st = make({"cpu": 2.0})
    settle(st, dispatch(st, [item("a"), item("b")]))
    ended(st, "a", b"A")
    ended(st, "b", b"B")
    assert st.handle(ValuesFreed(m.FreeValues(RUN, ("a",)), 1), 0.0) == []
    assert not st.store.has(RUN, "a") and st.store.has(RUN, "b")
    # a queued consumer of a freed value is a superseded attempt: it fails input_lost
    out = settle(st, dispatch(st, [item("c", inputs=(from_peer("a", ME),))]))
    assert reports(out)["c"].kind == "input_lost" and st.ledger.idle()
    st.handle(RunFreed(m.FreeRun(RUN), 1), 0.0)
    assert not st.store.has(RUN, "b") and RUN not in st.run_owners and st.term_of(RUN) == 0


def test_reports_are_batched_per_flush_and_small_values_travel_inline() -> None:
    st = make({"cpu": 2.0}, inline_result_bytes=4)
    settle(st, dispatch(st, [item("small"), item("large", {"cpu": 0.5})]))
    out = st.handle(TaskEnded(Outcome((RUN, "small", 1), True, b"abc", duration=0.01)), 0.0)
    out += st.handle(TaskEnded(Outcome((RUN, "large", 1), True, b"abcdef", duration=0.01)), 0.0)
    assert of(out, Soon) == [Soon(FLUSH)] and not sent(out, m.TasksReported)  # one flush
    (send,) = of(st.handle(FLUSH, 0.0), SendMessage)
    assert isinstance(send.msg, ReportColumns)  # built as columns, not per-task records
    msg = tasks_reported_of(send.msg)
    assert [r.task_id for r in msg.reports] == ["small", "large"]
    assert msg.reports[0].frame == 0 and send.frames == [b"abc"]
    assert msg.reports[1].frame == -1 and msg.reports[1].size == 6
    assert msg.free == {"cpu": 2.0} and st.counters["done"] == 2


@pytest.mark.parametrize("event", [REFILL, FLUSH])
def test_a_tick_with_nothing_to_do_does_nothing(event: Any) -> None:
    assert make().handle(event, 0.0) == []
