"""A task's KEPT reply ended as its ``Row`` (key, value, duration, pid: the pool's ``rows``, no
``Outcome``) does exactly what the same reply as an ``Outcome`` does. Two executors take the same
random events (dispatches as tables or items, from our own node's owner or another, queued and
claimed, cpu and gpu costs; reads of their running jobs, KEPT ones as rows on one side only,
among values printed along, no value, errors, cancels and attempts no longer ours; cancels,
withdraws, a new owner, a run freed), and after every step they must have given the same
instructions (jobs, reports, answers, ledger changes), and hold the same tasks, queue, slots,
ledger, store, counters and holdings; the queued demand each keeps is its queue's costs."""

from __future__ import annotations

import random
from dataclasses import fields
from typing import Any

import pytest
from test_executor_state import here

from handoffd.daemon.executor_events import (
    CancelAsked,
    Dispatched,
    Execute,
    OwnerSeen,
    ReportedHere,
    RunFreed,
    Soon,
    WithdrawAsked,
)
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import messages as m
from handoffd.protocol.messages_rebalance import WithdrawTasks
from handoffd.store.store import ResultStore
from handoffd.worker._records import Outcome, expand
from handoffd.worker.ledger import Ledger

pytestmark = pytest.mark.timeout(120)

ME, OTHER = "me:1", "owner:1"
RUNS = ("run-a", "run-b")


def make() -> ExecutorState:
    return ExecutorState(
        address=ME,
        ledger=Ledger({"cpu": 2.0, "gpu": 2.0}),
        store=ResultStore(memory_limit=1 << 30),
        inline_result_bytes=8,
        queue_factor=4.0,
    )


def slots_of(record: Any) -> list[Any]:
    return [getattr(record, f.name, None) for f in fields(record)]


def norm(out: list[Any]) -> list[Any]:
    """Instructions as comparable values (a report batch's table by its reports)."""
    got: list[Any] = []
    for ins in out:
        if isinstance(ins, Execute):
            got.append(("execute", ins.chain, [slots_of(j) for j in expand(ins.jobs)]))
        elif isinstance(ins, ReportedHere):
            got.append(
                ("here", ins.run_id, ins.term, ins.reports, ins.values, ins.free, ins.outputs)
            )
        else:
            got.append(ins)
    return got


class Side:
    def __init__(self, rows: bool) -> None:
        self.rows = rows
        self.st = make()
        self.running: list[Any] = []  # keys of the jobs started, in start order
        self.soon: list[Any] = []

    def step(self, out: list[Any]) -> list[Any]:
        """Carry out ``out`` and the "soon" events it asks for; every instruction given."""
        given = list(out)
        while True:
            for ins in out:
                if isinstance(ins, Execute):
                    self.running.extend(j.key for j in expand(ins.jobs))
                elif isinstance(ins, Soon):
                    self.soon.append(ins.event)
            if not self.soon:
                return given
            out = self.st.handle(self.soon.pop(0), 1.0)
            given += out

    def read(self, ends: list[tuple[Any, str, float]], flush_idle: bool) -> list[Any]:
        outcomes: list[Any] = []
        for key, kind, duration in ends:
            if kind == "kept" and self.rows:
                outcomes.append((key, b"v-" + key[1].encode(), duration, 41))
            else:
                outcomes.append(outcome_of(key, kind, duration))
        self.running = [k for k in self.running if k not in {e[0] for e in ends}]
        return self.step(self.st.tasks_ended(outcomes, 1.0, flush_idle))

    def state(self) -> tuple[Any, ...]:
        st = self.st
        # the queued demand the queue limit is tested against is the queued tasks' costs
        queued: dict[str, float] = {}
        for key in st.local:
            for kind, qty in st.task_records()[key].cost.items():
                queued[kind] = queued.get(kind, 0.0) + qty
        for kind in set(queued) | set(st._local_cost):
            assert abs(queued.get(kind, 0.0) - st._local_cost.get(kind, 0.0)) < 1e-9, kind
        store = {
            (run, t): st.store.get(run, t) for run in RUNS for t in sorted(st.store.tasks_of(run))
        }
        holdings = [st.holdings(1, run, st.term_of(run)) for run in RUNS]
        return (
            dict(st.ledger.free),
            dict(st.counters),
            store,
            list(st.tasks),
            list(st.local),
            {i: sorted(s.members()) for i, s in st.slots.items()},
            holdings,
            st.queue_order(),
        )


def outcome_of(key: Any, kind: str, duration: float) -> Outcome:
    if kind == "kept":  # (what ``_replies`` makes of a KEPT reply without rows)
        return Outcome(key, True, b"v-" + key[1].encode(), duration=duration, pid=41)
    if kind == "printed":
        return Outcome(key, True, b"a value past the inline limit", duration=duration, output="hi")
    if kind == "none":
        return Outcome(key, True, None, duration=duration, pid=41)
    if kind == "cancelled":
        return Outcome(key, False, None, "Cancelled", "the job was cancelled", kind="cancelled")
    return Outcome(key, False, None, "Boom", "failed", "tb", kind="error", duration=duration)


def dispatch(rng: random.Random, count: int, terms: dict[str, int]) -> tuple[Dispatched, int]:
    run = rng.choice(RUNS)
    owner = rng.choice([ME, ME, OTHER])
    items = []
    for _ in range(rng.randint(1, 10)):
        cost = rng.choice([{"cpu": 1.0}, {"cpu": 1.0}, {"cpu": 0.5}, {"cpu": 1.0, "gpu": 1.0}])
        items.append(
            m.DispatchItem(
                f"t{count}", 1, cost, "variadic", None, 0, (), rng.randint(0, 1), rng.random()
            )
        )
        count += 1
    msg = m.DispatchTasks(run, owner, tuple(items))
    term = terms[run]
    if rng.random() < 0.5:
        table, frames = here(msg, [b"payload"])
        return Dispatched(table, frames, term), count
    return Dispatched(msg, [b"payload"], term), count


def control(rng: random.Random, tasks: Any, terms: dict[str, int]) -> Any:
    """A random cancel, withdraw, owner change or free of one of ``RUNS`` (``tasks``: the
    executor's tasks, keyed (run, task, attempt)); an owner change raises ``terms``' term."""
    run = rng.choice(RUNS)
    keys = [k for k in tasks if k[0] == run]
    picked = rng.sample(keys, min(len(keys), rng.randint(1, 3))) if keys else []
    items = tuple(m.TaskAttempt(k[1], k[2]) for k in picked)
    what = rng.random()
    if what < 0.4:
        return CancelAsked(m.CancelTasks(run, items), terms[run])
    if what < 0.75:
        return WithdrawAsked(WithdrawTasks(run, items), terms[run])
    if what < 0.9:
        terms[run] += 1
        return OwnerSeen(run, terms[run], rng.choice([ME, OTHER]), "owner")
    return RunFreed(m.FreeRun(run), terms[run])


@pytest.mark.parametrize("seed", range(30))
def test_rows_end_what_outcomes_end(seed: int) -> None:
    rng = random.Random(seed)
    general, rows = Side(rows=False), Side(rows=True)
    terms = dict.fromkeys(RUNS, 1)
    count = 0
    kept = 0
    for _ in range(60):
        roll = rng.random()
        if roll < 0.3 or not general.running:
            event, count = dispatch(rng, count, terms)
            outs = [s.step(s.st.handle(event, 1.0)) for s in (general, rows)]
        elif roll < 0.8:
            # one read of a chain: some running jobs, in start order, now and then a stale one
            n = rng.randint(1, min(len(general.running), 8))
            ends = []
            for key in general.running[:n]:
                kind = rng.choice(["kept"] * 6 + ["printed", "none", "error", "cancelled"])
                kept += kind == "kept"
                ends.append((key, kind, rng.choice([1e-5, 1e-3, 0.02])))
            if rng.random() < 0.15:
                ends.insert(rng.randint(0, n), ((RUNS[0], "gone", 3), "kept", 1e-3))
            flush_idle = rng.random() < 0.5
            outs = [s.read(ends, flush_idle) for s in (general, rows)]
        else:
            event = control(rng, general.st.tasks, terms)
            outs = [s.step(s.st.handle(event, 1.0)) for s in (general, rows)]
        assert norm(outs[0]) == norm(outs[1])
        assert general.running == rows.running
        assert general.state() == rows.state()
    assert kept > 20  # (rows were ended: a run of other events would prove nothing)
