"""The own-node W1 cycle's in-line paths (session 21): a batch of ends across runs handled in
line (reports per run, in order, values inline, a chain's claim released with its last task), a
table's shared cost dict tested against the node once, and a run's values dropped with their counts
summed (the pipe reader's front cut: ``tests/cluster/test_pipe_slices.py``)."""

from __future__ import annotations

from typing import Any

from handoffd.daemon.dispatch import dispatch_here
from handoffd.daemon.executor_events import FLUSH, REFILL, Dispatched, Execute, ReportedHere
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol.columns import replied_pairs
from handoffd.protocol.messages_columns import RepliedColumns
from handoffd.scheduler import events as ev
from handoffd.store.store import ResultStore
from handoffd.worker._records import expand
from handoffd.worker.ledger import Ledger
from handoffd.worker.pool import Outcome

ME = "me:1"


def make(cpu: float = 1.0, queue_factor: float = 64.0) -> ExecutorState:
    return ExecutorState(
        address=ME,
        ledger=Ledger({"cpu": cpu}),
        store=ResultStore(memory_limit=1 << 30),
        inline_result_bytes=4,
        queue_factor=queue_factor,
    )


def table(run: str, ids: list[str], cost: dict[str, float], owner: str = ME) -> Any:
    """Our own owner's table of no-input tasks that share one cost dict (as one function's do)."""
    items = tuple(ev.DispatchedTask(t, 1, b"payload", cost, "variadic", None, ()) for t in ids)
    return dispatch_here(ev.Dispatch(ME, run, 1, items), owner, lambda a: a)


def jobs(out: list[Any]) -> list[Any]:
    return [job for ins in out if isinstance(ins, Execute) for job in expand(ins.jobs)]


def test_a_batch_of_ends_across_runs_reports_each_run_in_order_and_releases_once() -> None:
    st = make()
    cost = {"cpu": 1.0}
    out = st.handle(Dispatched(*table("A", ["a0", "a1", "a2"], cost), 1), 0.0)
    out += st.handle(Dispatched(*table("B", ["b0", "b1"], cost), 1), 0.0)
    out += st.handle(next(i.event for i in out if type(i).__name__ == "Soon"), 0.0)  # refill
    keys = [job.key for job in jobs(out)]
    assert [k[1] for k in keys] == ["a0", "a1", "a2", "b0", "b1"]  # one chain, arrival order
    assert st.ledger.free == {"cpu": 0.0} and len(st.slots) == 1
    order = [keys[0], keys[3], keys[1], keys[4]]  # A, B, A, B: the outbox looked up per change
    values = [b"v0", b"big-value", b"v1", b"v3"]
    ends = [Outcome(k, True, v, duration=1e-4, pid=7) for k, v in zip(order, values, strict=True)]
    st.tasks_ended(ends, 1.0)
    assert st.ledger.free == {"cpu": 0.0}  # a2 still runs under the chain's claim
    last = st.tasks_ended([Outcome(keys[2], True, b"v2", duration=1e-4, pid=7)], 2.0)
    assert st.ledger.free == {"cpu": 1.0} and not st.slots and st.counters["done"] == 5
    assert any(type(i).__name__ == "LedgerChanged" for i in last)
    reports = [i for i in st.handle(FLUSH, 2.0) if isinstance(i, ReportedHere)]
    by_run = {r.run_id: r for r in reports}
    assert list(by_run["A"].table.task_ids) == ["a0", "a1", "a2"]
    assert list(by_run["B"].table.task_ids) == ["b0", "b1"]
    assert by_run["A"].values == (b"v0", b"v1", b"v2")
    assert by_run["B"].values == (None, b"v3")  # over inline_result_bytes: held here only
    assert st.store.get("B", "b0") == b"big-value" and not st.tasks


def test_a_shared_cost_over_the_nodes_capacity_is_refused_for_that_reason_every_time() -> None:
    st = make(cpu=1.0, queue_factor=2.0)
    big, small = {"cpu": 2.0}, {"cpu": 1.0}
    msg, frames = table("A", ["s0", "g0", "s1", "g1", "s2", "s3"], small, owner="peer:1")
    for i in (1, 3):  # (the big tasks share one dict too)
        msg.costs[i] = big
    out = st.handle(Dispatched(msg, frames, 1), 0.0)
    (reply,) = [i.msg for i in out if isinstance(getattr(i, "msg", None), RepliedColumns)]
    accepted, refused = replied_pairs(reply)
    assert [a[0] for a in accepted] == ["s0", "s1", "s2"]
    why = {r[0]: r[2] for r in refused}
    assert why == {
        "g0": "no room: exceeds the node's capacity",
        "g1": "no room: exceeds the node's capacity",
        "s3": "no room: queue full",
    }


def test_dropping_a_run_forgets_its_values_in_memory_and_spilled(tmp_path) -> None:
    store = ResultStore(memory_limit=20, spill_dir=str(tmp_path))
    for i in range(4):
        store.put("r", f"t{i}", b"%d" % i * 8)
    store.put("s", "keep", b"k" * 8)
    store.wait_spills(30)
    assert store.stats.spilled_bytes > 0  # some of r's went to files
    assert store.drop_run("r") == 4
    store.wait_spills(30)
    assert store.stats.values == 1 and store.get("s", "keep") == b"k" * 8
    assert store.stats.in_memory_bytes + store.stats.spilled_bytes == 8
    assert all(store.get("r", f"t{i}") is None for i in range(4))
    assert store.drop_run("r") == 0
    store.close()


def test_a_refill_that_starts_a_slot_sends_its_first_task_and_chain_as_one_execute() -> None:
    # The slot's first task (``_pump_local``) and the tasks chained behind it (``_refill``) in
    # one Execute: the pool then writes the worker one pipe message for them, not two.
    st = make()
    cost = {"cpu": 1.0}
    out = st.handle(Dispatched(*table("A", ["a0"], cost), 1), 0.0)
    (first,) = jobs(out)
    out = st.handle(Dispatched(*table("A", ["a1", "a2", "a3", "a4"], cost), 1), 0.0)
    assert not jobs(out) and st.ledger.free == {"cpu": 0.0}  # queued behind a0's claim
    st.tasks_ended([Outcome(first.key, True, b"v", duration=1e-4, pid=7)], 1.0)
    assert not st.slots and st.ledger.free == {"cpu": 1.0}
    out = st.handle(REFILL, 1.0)
    executes = [ins for ins in out if isinstance(ins, Execute)]
    assert len(executes) == 1
    assert [job.key[1] for job in expand(executes[0].jobs)] == [
        "a1",
        "a2",
        "a3",
        "a4",
    ]  # queue order
    (slot,) = st.slots.values()
    assert executes[0].chain == slot.id and slot.size() == 4
    assert st.ledger.free == {"cpu": 0.0} and not st.local  # one claim for the chain


def test_a_dispatch_to_an_idle_node_sends_its_claimed_task_and_the_chain_as_one_execute() -> None:
    # The task claimed at once and the queued ones chained behind it in the dispatch's own pass,
    # after its answer: one Execute, not the lone task now and the chain a turn later.
    st = make()
    out = st.handle(Dispatched(*table("A", ["a0", "a1", "a2", "a3"], {"cpu": 1.0}), 1), 0.0)
    executes = [i for i in out if isinstance(i, Execute)]
    assert len(executes) == 1
    assert [job.key[1] for job in expand(executes[0].jobs)] == ["a0", "a1", "a2", "a3"]
    kinds = [type(i).__name__ for i in out]
    assert kinds.index("AnsweredHere") < kinds.index("Execute")
    (slot,) = st.slots.values()
    assert executes[0].chain == slot.id and slot.size() == 4 and not st.local
    assert st.ledger.free == {"cpu": 0.0}
