"""The local queue's start order (``QueueOrder``) taken without a sort where a sort would change
nothing: a table of one priority and one rank appended behind the order's last key
(``QueueOrder.arrived``), the keys the refill took or found gone trimmed off the order's front
(``executor_rows.refill``). Whatever the events, the queued keys the order gives are the queue
sorted by queue key, each once; W1's tables take the append."""

from __future__ import annotations

import random
from typing import Any

import pytest
from test_executor_rows import RUNS, Side, control, dispatch
from test_executor_rows_build import PURE
from test_executor_state import here

from handoffd.daemon import executor_intake, executor_rows, executor_state
from handoffd.daemon.executor_events import CancelAsked, Dispatched
from handoffd.daemon.executor_records import QueueOrder
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import messages as m
from handoffd.store.store import ResultStore
from handoffd.worker.ledger import Ledger

pytestmark = pytest.mark.timeout(120)

ME = "me:1"


class CountingOrder(QueueOrder):
    """A ``QueueOrder`` that counts its arrivals taken without a sort."""

    def __init__(self) -> None:
        super().__init__()
        self.appended = 0

    def arrived(self, local: Any, queued: list[Any], in_order: bool) -> None:
        before = len(self.keys)
        super().arrived(local, queued, in_order)
        if not self.dirty and len(self.keys) == before + len(queued):
            self.appended += 1


def check(st: ExecutorState) -> None:
    """The order's queued keys: the queue by queue key, each once."""
    local = st.local
    given = st.queue_order()
    live = [k for k in given if k in local]
    assert live == sorted(local, key=local.__getitem__)
    assert len(set(live)) == len(live)
    if not st._order.dirty:  # (no key that left is kept at its old place for a later return)
        assert len(set(given)) == len(given)


def table(run: str, first: int, count: int, priority: int = 0, rank: float = 0.0) -> Dispatched:
    items = tuple(
        m.DispatchItem(f"t{i}", 1, {"cpu": 1.0}, "variadic", None, 0, (), priority, rank)
        for i in range(first, first + count)
    )
    msg, frames = here(m.DispatchTasks(run, ME, items), [b"payload"])
    return Dispatched(msg, frames, 1)


def one_cpu() -> ExecutorState:
    st = ExecutorState(
        address=ME,
        ledger=Ledger({"cpu": 1.0}),
        store=ResultStore(memory_limit=1 << 30),
        inline_result_bytes=64,
    )
    st._order = CountingOrder()
    return st


def test_w1_s_tables_join_the_order_without_a_sort_and_the_refill_trims_its_front(
    build: str,
) -> None:
    side = Side(rows=True)
    side.st = st = one_cpu()
    order = st._order
    assert isinstance(order, CountingOrder)
    side.step(st.handle(table("r", 0, 40), 0.0))  # (one starts, a chain behind it, the rest wait)
    check(st)
    waiting = len(st.local)
    assert waiting and order.keys == [k for k in order.keys if k in st.local]
    side.step(st.handle(table("r", 40, 20), 0.0))
    side.step(st.handle(table("r", 60, 20), 0.5))  # (the same aging level: still in order)
    assert order.appended == 3 and not order.dirty  # (every table: no sort)
    assert len(order.keys) == len(st.local) == waiting + 40
    check(st)
    # The chain's tasks end: each refill takes the order's front and trims it off
    for _ in range(2):
        side.read([(key, "kept", 1e-4) for key in side.running], False)
        check(st)
        assert len(order.keys) == len(st.local)  # (nothing that left is kept)
    assert 0 < len(st.local) < waiting + 40
    # A table of mixed priorities is sorted in; a task cancelled while queued, then dispatched
    # again, is found at its new place only
    mixed = table("r", 100, 4, priority=2)
    side.step(st.handle(mixed, 0.5))
    assert order.appended == 3  # (its priority puts it first: sorted in)
    check(st)
    queued = next(iter(st.local))
    side.step(st.handle(CancelAsked(m.CancelTasks("r", (m.TaskAttempt(queued[1], 1),)), 1), 0.6))
    side.step(st.handle(table("r", int(queued[1][1:]), 1), 0.6))
    assert queued in st.local
    check(st)
    assert order.keys.count(queued) == 1 or order.dirty


@pytest.fixture(params=["compiled", "py"])
def build(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The intake's and the refill's loops of the build imported, or of the ``.py`` run as
    plain Python."""
    if request.param == "py":
        monkeypatch.setattr(executor_intake, "accept_columns", PURE.accept_columns)
        monkeypatch.setattr(executor_state, "refill", PURE.refill)
    else:
        assert executor_intake.accept_columns is executor_rows.accept_columns
    return str(request.param)


@pytest.mark.parametrize("seed", range(12))
def test_the_order_is_the_queue_sorted_whatever_the_events(seed: int, build: str) -> None:
    rng = random.Random(seed)
    side = Side(rows=True)
    side.st = st = ExecutorState(
        address=ME,
        ledger=Ledger({"cpu": 2.0, "gpu": 2.0}),
        store=ResultStore(memory_limit=1 << 30),
        inline_result_bytes=8,
        queue_factor=4.0,
    )
    st._order = order = CountingOrder()
    terms = dict.fromkeys(RUNS, 1)
    count = 0
    now = 0.0
    for _ in range(120):
        roll = rng.random()
        now += rng.choice([0.0, 0.0, 0.3])
        if roll < 0.25 or not side.running:
            event, count = dispatch(rng, count, terms)
            side.step(st.handle(event, now))
        elif roll < 0.5:  # W1's: one priority and rank, our own owner's table, one cost
            run = rng.choice(RUNS)
            n = rng.randint(1, 12)
            event = table(run, count, n, rng.randint(0, 1), rng.choice([0.0, 1.5]))
            event = Dispatched(event.msg, event.frames, terms[run])
            count += n
            side.step(st.handle(event, now))
        elif roll < 0.6 and st.local:  # a queued task cancelled, then dispatched again
            key = rng.choice(list(st.local))
            ask = CancelAsked(
                m.CancelTasks(key[0], (m.TaskAttempt(key[1], key[2]),)), terms[key[0]]
            )
            side.step(st.handle(ask, now))
            items = (m.DispatchItem(key[1], key[2], {"cpu": 1.0}, "variadic", None, 0, (), 0, 0.0),)
            msg, frames = here(m.DispatchTasks(key[0], ME, items), [b"payload"])
            side.step(st.handle(Dispatched(msg, frames, terms[key[0]]), now))
        elif roll < 0.9:
            n = rng.randint(1, min(len(side.running), 8))
            ends = [(key, rng.choice(["kept"] * 5 + ["error"]), 1e-4) for key in side.running[:n]]
            side.read(ends, rng.random() < 0.5)
        else:
            side.step(st.handle(control(rng, st.tasks, terms), now))
        check(st)
    assert order.appended >= 5  # (the append was taken: a run of sorts would prove nothing)


def test_the_queue_s_sum_is_its_tasks_costs_when_a_refill_takes_rows_then_a_task(
    build: str,
) -> None:
    """The refill keeps the queue's sum of the one slot's kind between its rows' steps and
    writes it back before a ``Task`` (a row asked for: ``ExecutorState.task``) takes the
    general steps, which read and write it too; the intake keeps it between a table's
    queued tasks. After each pass the sum is the queued tasks' costs."""
    side = Side(rows=True)
    side.st = st = one_cpu()
    side.step(st.handle(table("r", 0, 60), 0.0))
    for _ in range(4):
        queued = list(st.local)
        assert len(queued) > 12
        for key in queued[2:12:3]:  # (rows among them turned into their Tasks for good)
            st.task(key)
        side.read([(key, "kept", 1e-4) for key in side.running], False)
        costs = sum(st.task_records()[key].cost["cpu"] for key in st.local)
        assert st._local_cost.get("cpu", 0.0) == pytest.approx(costs, abs=1e-9)
        side.step(st.handle(table("r", 100 + 10 * _, 10), 0.1))
        costs = sum(st.task_records()[key].cost["cpu"] for key in st.local)
        assert st._local_cost.get("cpu", 0.0) == pytest.approx(costs, abs=1e-9)
    check(st)
