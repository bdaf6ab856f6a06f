"""The free resources an answer or report carries become one ``NodeUpdate`` for the scheduler
(``OwnerIO._reported``): ours without a look-up (our name, address and ledger capacity), a live
member's with what membership knows of it, nobody else's (issue 11: a forged report must never
add a node to the scheduler's view). The events equal what the general look-ups gave."""

from __future__ import annotations

import random
from typing import Any

import pytest
from fake_port import FakePort

from handoffd.daemon.executor_events import AnsweredHere
from handoffd.daemon.owner import OwnerIO
from handoffd.protocol import messages as m
from handoffd.protocol.columns import ReportTable
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.spec import TaskSpec

pytestmark = pytest.mark.timeout(60)


class Ledger:
    def __init__(self) -> None:
        self.capacity = {"cpu": 2.0, "memory": 1000.0}
        self.free = {"cpu": 2.0, "memory": 1000.0}
        self.version = 1


def _owner(port: FakePort, ledger: Ledger) -> OwnerIO:
    return OwnerIO(
        port,
        OwnerScheduler(port.name, now=port.now()),
        resources=ledger,
        local_value=lambda run_id, task_id: None,
        keep_results_s=30.0,
    )


def _member(name: str, status: int, cpu: float) -> m.MemberState:
    return m.MemberState(name, f"{name}:9", "default", 1, status, {"cpu": cpu}, {"cpu": cpu}, 3)


def _answer(version: int, free: float) -> AnsweredHere:
    return AnsweredHere("r1", 1, (), (), {"cpu": free, "memory": 1000.0}, version)


def _expected(port: FakePort, ledger: Ledger, node: str, msg: AnsweredHere) -> list[ev.NodeUpdate]:
    """What the general look-ups (``port.address_of``, the member's or our capacity) give."""
    if node == port.name:
        capacity = dict(ledger.capacity)
    else:
        member = port.member(node)
        if member is None or member.status not in (m.ALIVE, m.SUSPECT):
            return []
        capacity = dict(member.capacity)
    address = port.address_of(node) or ""
    return [ev.NodeUpdate(node, address, True, capacity, dict(msg.free), msg.resource_version)]


def test_ours_carries_our_address_and_a_copy_of_the_ledger_capacity() -> None:
    port, ledger = FakePort(), Ledger()
    owner = _owner(port, ledger)
    msg = _answer(5, 1.0)
    (update,) = owner._reported(port.name, msg)
    assert update == ev.NodeUpdate("a", "a:1", True, ledger.capacity, msg.free, 5)
    assert update.capacity is not ledger.capacity and update.free is not msg.free
    assert owner.knows_own(5) and not owner.knows_own(6)
    owner._reported(port.name, _answer(3, 2.0))  # an older version never lowers what we know
    assert owner.knows_own(5) and not owner.knows_own(6)
    ledger.capacity["cpu"] = 4.0  # our capacity changed: what we knew is not current any more
    assert not owner.knows_own(5)
    (update,) = owner._reported(port.name, _answer(6, 3.0))
    assert update.capacity == {"cpu": 4.0, "memory": 1000.0} and owner.knows_own(6)


def test_members_and_strangers() -> None:
    port, ledger = FakePort(), Ledger()
    port.states["b"] = _member("b", m.ALIVE, 4.0)
    port.states["c"] = _member("c", m.SUSPECT, 8.0)
    port.states["d"] = _member("d", m.DEAD, 2.0)
    port.states["e"] = _member("e", m.LEFT, 2.0)
    owner = _owner(port, ledger)
    msg = _answer(7, 0.5)
    (b,) = owner._reported("b", msg)
    assert b == ev.NodeUpdate("b", "b:9", True, {"cpu": 4.0}, msg.free, 7)
    assert b.capacity is not port.states["b"].capacity
    assert owner._reported("c", msg)[0].capacity == {"cpu": 8.0}
    for stranger in ("d", "e", "nobody"):
        assert owner._reported(stranger, msg) == []
    assert not owner.knows_own(7)  # another node's version is not ours


def test_random_reports_equal_the_general_look_ups() -> None:
    rng = random.Random(13)
    port, ledger = FakePort(), Ledger()
    statuses = (m.ALIVE, m.SUSPECT, m.DEAD, m.LEFT)
    for name in "bcdefg":
        port.states[name] = _member(name, rng.choice(statuses), float(rng.randint(1, 9)))
    owner = _owner(port, ledger)
    for _ in range(500):
        node = rng.choice("abcdefgh")
        if rng.random() < 0.1:
            ledger.capacity = {"cpu": float(rng.randint(1, 9))}
        msg = _answer(rng.randint(0, 50), float(rng.randint(0, 4)))
        assert owner._reported(node, msg) == _expected(port, ledger, node, msg)


def _two_tasks_out(port: FakePort, owner: OwnerIO) -> Any:
    """A run of two tasks, both dispatched to us; its live state."""
    specs = [TaskSpec(t, (), {"cpu": 0.5}, t.encode()) for t in ("t0", "t1")]
    owner.batch_reports = True
    owner._feed(ev.RunSubmitted("r1", specs))
    run = owner.scheduler.run_state("r1")
    assert run is not None and {rec.state for rec in run.tasks.values()} == {"ASSIGNED"}
    return run


def _done_table(run: Any) -> ReportTable:
    rows = [(t, rec.attempt, 1, 3, 0.01, 77, 5.5, 6.5, 9) for t, rec in sorted(run.tasks.items())]
    return ReportTable.of_rows(rows, [-1, -1], ())


@pytest.mark.parametrize("releasing", [False, True])
def test_a_table_leaves_its_history_to_the_scheduler_unless_a_release_is_held(
    releasing: bool,
) -> None:
    """A table of DONE reports: its attempt rows are written with the scheduler's event (its
    columns in the ``TasksSucceeded``), and their dispatch-to-start latencies counted as the
    scheduler writes them (into the event's ``delays``, bucketed after its batch), unless a
    release of the run waits in the held events: the scheduler sees that first, so the shell
    writes them at once, as before."""
    port, ledger = FakePort(), Ledger()
    owner = _owner(port, ledger)
    run = _two_tasks_out(port, owner)
    if releasing:
        owner._releasing.add("r1")  # (``_retain(..., later=True)``'s ``ResultsReleased``)
    owner._on_table("r1", port.name, _done_table(run), [None, None], [])
    (event,) = [e for e in owner._pending if type(e) is ev.TasksSucceeded]
    rows = [rec.attempts[-1] for _, rec in sorted(run.tasks.items())]
    if releasing:
        assert event.pids is None and event.delays is None
        assert [(r[2], r[4], r[5], r[6], r[7], r[8]) for r in rows] == [
            ("DONE", 5.5, 6.5, 77, 9, 3)
        ] * 2
        assert owner.dispatch_seconds.count == 2
    else:
        assert event.pids == [77, 77] and event.bytes_in == [9, 9]
        assert event.delays is owner._delays
        assert [r[2] for r in rows] == ["ASSIGNED"] * 2
        assert owner.dispatch_seconds.count == 0
    dispatched = [rec.attempts[-1][3] for _, rec in sorted(run.tasks.items())]
    owner._settle()
    rows = [rec.attempts[-1] for _, rec in sorted(run.tasks.items())]
    assert [(r[2], r[4], r[5], r[6], r[7], r[8]) for r in rows] == [
        ("DONE", 5.5, 6.5, 77, 9, 3)
    ] * 2
    assert owner._releasing == set()
    # (each attempt's once, whoever counted it; none left for the next batch)
    assert owner.dispatch_seconds.count == 2 and owner._delays == []
    assert owner.dispatch_seconds.sum == sum(max(0.0, 5.5 - d) for d in dispatched)
