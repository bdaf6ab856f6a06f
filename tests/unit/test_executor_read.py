"""The outcomes of one read of a worker's pipe, ended in one pass (``ExecutorState.tasks_ended``,
the shell's ``Executor.on_read``), do what the same outcomes fed one ``TaskEnded`` event each do:
the same jobs started (refills), the same reports and values to the owner, the same ledger, store
and counters. Random runs: chained slots, queued tasks, values inline and not, errors, outcomes
of attempts no longer ours, owners on our node and elsewhere. With ``flush_idle`` (the shell's read),
a read that leaves no task of ours flushes the reports in the same pass, as ``handle(FLUSH)``
right after it would."""

from __future__ import annotations

import random
from typing import Any

import pytest

from handoffd.daemon.executor_events import (
    FLUSH,
    Dispatched,
    Execute,
    ReportedHere,
    SendMessage,
    Soon,
    TaskEnded,
)
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import messages as m
from handoffd.protocol.columns import split_frames, tasks_reported_of
from handoffd.protocol.messages_columns import ReportColumns
from handoffd.store.store import ResultStore
from handoffd.worker._records import Job, Outcome, expand
from handoffd.worker.ledger import Ledger

RUN = "run-1"
ME, OTHER = "me:1", "owner:1"


class Side:
    """One executor and what it did: jobs started, reports sent (in order)."""

    def __init__(self, batched: bool, flush_idle: bool = False) -> None:
        self.batched = batched
        self.flush_idle = flush_idle
        self.flushed = 0  # reads whose reports went in their own pass
        self.st = ExecutorState(
            address=ME,
            ledger=Ledger({"cpu": 2.0}),
            store=ResultStore(memory_limit=1 << 30),
            inline_result_bytes=8,
        )
        self.jobs: list[Job] = []  # started, outcome not fed yet
        self.started: list[Any] = []  # every job's key, in the order it was started
        self.reports: list[tuple[Any, ...]] = []
        self.soon: list[Any] = []

    def drive(self, out: list[Any]) -> None:
        for ins in out:
            if isinstance(ins, Execute):
                self.jobs.extend(expand(ins.jobs))
                self.started.extend(j.key for j in expand(ins.jobs))
            elif isinstance(ins, Soon):
                self.soon.append(ins.event)
            elif isinstance(ins, SendMessage) and type(ins.msg) is ReportColumns:
                msg = tasks_reported_of(ins.msg)
                frames = split_frames(ins.msg.frame_sizes, ins.frames, "ReportColumns")
                for r in msg.reports:
                    value = frames[r.frame] if r.frame >= 0 else None
                    self.reports.append((r.task_id, r.state, r.size, r.kind, r.exc_type, value))
            elif isinstance(ins, ReportedHere):
                for r, value in zip(ins.reports, ins.values, strict=True):
                    self.reports.append((r.task_id, r.state, r.size, r.kind, r.exc_type, value))

    def settle(self) -> None:
        while self.soon:
            self.drive(self.st.handle(self.soon.pop(0), 0.0))

    def end(self, outcomes: list[Outcome]) -> None:
        if self.flush_idle:
            out = self.st.tasks_ended(outcomes, 0.0, flush_idle=True)
            if self.st.flushed:
                self.flushed += 1
                assert not self.st.tasks  # (only when nothing of ours is left to join it)
                assert not any(isinstance(i, Soon) for i in out)
                assert any(isinstance(i, (ReportedHere, SendMessage)) for i in out)
            self.drive(out)
        elif self.batched:
            self.drive(self.st.tasks_ended(outcomes, 0.0))
        else:
            for outcome in outcomes:
                self.drive(self.st.handle(TaskEnded(outcome), 0.0))
        self.settle()

    def state(self) -> tuple[Any, ...]:
        st = self.st
        values = {t: st.store.get(RUN, t) for t in sorted(st.store.tasks_of(RUN))}
        return (dict(st.ledger.free), dict(st.counters), values, sorted(st.tasks), sorted(st.slots))


def outcome_of(rng: random.Random, key: Any) -> Outcome:
    kind = rng.choice(["small", "big", "error", "none"])
    if kind == "error":
        return Outcome(key, False, None, "Boom", "failed", "tb", kind="error", duration=0.001)
    if kind == "none":
        return Outcome(key, True, None, duration=0.001)
    value = b"v" + key[1].encode() if kind == "small" else b"a value past the inline limit"
    return Outcome(key, True, value, duration=rng.choice([1e-5, 1e-3, 0.01]), pid=7)


@pytest.mark.parametrize("owner", [ME, OTHER])
@pytest.mark.parametrize("seed", range(20))
def test_one_read_s_outcomes_in_one_pass_do_what_one_event_each_does(owner: str, seed: int):
    rng = random.Random(seed)
    sides = [Side(batched=True), Side(batched=False), Side(batched=True, flush_idle=True)]
    count = 0
    for _ in range(rng.randint(2, 6)):
        items = []
        for _ in range(rng.randint(1, 12)):
            cost = {"cpu": rng.choice([1.0, 1.0, 0.5])}
            items.append(m.DispatchItem(f"t{count}", 1, cost, "variadic", None, 0, ()))
            count += 1
        msg = m.DispatchTasks(RUN, owner, tuple(items))
        for side in sides:
            side.drive(side.st.handle(Dispatched(msg, [b"payload"], 1), 0.0))
            side.settle()
        while sides[0].jobs and rng.random() < 0.8:
            # one read: some of the jobs out, in order, now and then with a stale one among them
            n = rng.randint(1, len(sides[0].jobs))
            keys = [j.key for j in sides[0].jobs[:n]]
            if rng.random() < 0.2:
                keys.insert(rng.randint(0, n), (RUN, "gone", 9))
            outcomes = [outcome_of(rng, k) for k in keys]
            for other in sides[1:]:
                assert [j.key for j in other.jobs] == [j.key for j in sides[0].jobs]
            for side in sides:
                side.jobs = [j for j in side.jobs if j.key not in set(keys)]
                side.end(outcomes)
    batched, single, idle = sides
    for side in (single, idle):
        assert side.started == batched.started
        assert side.reports == batched.reports
        assert side.state() == batched.state()
    assert batched.reports  # (a run that reported nothing would prove nothing)


def test_the_last_task_s_report_goes_in_its_read_s_pass():
    """A read that ends the last task of ours: its report is in the pass's instructions (no
    ``Soon(FLUSH)`` and no second event); while another task runs, the flush waits as before."""
    st = ExecutorState(
        address=ME,
        ledger=Ledger({"cpu": 2.0}),
        store=ResultStore(memory_limit=1 << 30),
        inline_result_bytes=8,
    )
    items = tuple(m.DispatchItem(t, 1, {"cpu": 1.0}, "variadic", None, 0, ()) for t in ("a", "b"))
    st.handle(Dispatched(m.DispatchTasks(RUN, ME, items), [b"payload"], 1), 0.0)
    out = st.tasks_ended([Outcome((RUN, "a", 1), True, b"va")], 0.0, flush_idle=True)
    assert not st.flushed and any(isinstance(i, Soon) for i in out)
    assert not any(isinstance(i, ReportedHere) for i in out)
    out = st.tasks_ended([Outcome((RUN, "b", 1), True, b"vb")], 0.0, flush_idle=True)
    assert st.flushed and not any(isinstance(i, Soon) for i in out)
    (report,) = [i for i in out if isinstance(i, ReportedHere)]
    assert [r.task_id for r in report.reports] == ["a", "b"]  # the waiting one went with it
    assert report.values == (b"va", b"vb")
    assert not st.handle(FLUSH, 0.0)  # nothing is left for the flush that was scheduled
