"""The scheduler tells the replication log a whole batch's task moves in one call
(``OwnerScheduler.on_changes`` -> ``ReplicationIO.tasks_changed`` -> ``ReplicationLog.tasks_changed``),
not one Python call per move (``on_change``): the log, its flush timer and every batch sent to the
standby must be exactly what the one-by-one feed gave."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from fake_port import FakePort
from scheduler_harness import Cluster, dispatches, spec

from handoffd.daemon import replication as shell
from handoffd.protocol import messages as m
from handoffd.replication import log as rlog
from handoffd.scheduler.states import ACTIVE


def _state(rep: shell.ReplicationIO, port: FakePort) -> Any:
    log = rep.log
    runs = {
        run_id: (list(p.changes.items()), p.run_dirty, p.seq) for run_id, p in log._runs.items()
    }
    timers = [(t.due, t.seq) for t in port.pending()]
    sent = [
        (s.address, s.msg.run_id, s.msg.seq, s.msg.tasks, s.msg.columns)
        for s in port.take(m.ReplicateLog)
    ]
    return runs, list(log._dirty), list(log._holding), rep._flush_scheduled, timers, sent


def _drive(seed: int, batched: bool) -> list[Any]:
    rng = random.Random(seed)
    c = Cluster({"n1": 2.0, "n2": 3.0}, window=rng.choice((1, 4)))
    port = FakePort(name="owner", address="owner:1")
    port.join("s")
    rep = shell.ReplicationIO(port, c.sched, replicas=1, grace=0.1)  # type: ignore[arg-type]
    rep.log.hold = rng.choice((0.0, 0.01, rlog.HOLD))  # (below 2 flush intervals: order counts)
    c.sched.on_change = rep.task_changed
    if batched:
        c.sched.on_changes = rep.tasks_changed
    out = c.submit("r", random_specs(rng))
    rep.run_accepted("r", lambda: None)
    trace = [_state(rep, port)]
    random_moves(
        c, port, rng, out, rng.randrange(20, 120), each=lambda: trace.append(_state(rep, port))
    )
    port.advance(1.0)
    trace.append(_state(rep, port))
    return trace


def random_specs(rng: random.Random) -> list[Any]:
    """8-29 tasks of run "r", each depending on up to two earlier ones, one retry each."""
    specs = []
    for i in range(rng.randrange(8, 30)):
        deps = rng.sample([f"t{j}" for j in range(i)], min(i, rng.randrange(3)))
        specs.append(spec(f"t{i}", *deps, max_retries=1))
    return specs


def random_moves(
    c: Cluster,
    port: FakePort,
    rng: random.Random,
    out: list[Any],
    steps: int,
    value: Callable[[random.Random], bytes | None] = lambda rng: b"v",
    each: Callable[[], object] = lambda: None,
) -> None:
    """``steps`` random moves of run "r" on ``c``: dispatches accepted, claimed tasks succeeded
    (their values from ``value``) or failed, queued tasks started, ``port``'s clock advanced;
    ``each`` after every move."""
    run = c.sched.run_state("r")
    assert run is not None
    for _ in range(steps):
        action = rng.random()
        claimed = [
            (rec.node, rec.id, rec.attempt)
            for rec in run.tasks.values()
            if rec.state in ACTIVE and ("r", rec.id, rec.attempt) in c.costs
        ]
        if action < 0.3 and out:
            out[:] = c.accept_all(out)
        elif action < 0.6 and claimed:
            done = rng.sample(claimed, rng.randrange(1, min(4, len(claimed)) + 1))
            for node, task_id, attempt in done:
                c.release(node, "r", task_id, attempt)
            by_node: dict[str, list[tuple[str, int, int, bytes | None, float]]] = {}
            for node, task_id, attempt in done:
                by_node.setdefault(node, []).append((task_id, attempt, 10, value(rng), 0.001))
            events: list[Any] = []
            for node, items in by_node.items():
                ids, tries, sizes, values, took = (list(col) for col in zip(*items, strict=True))
                events += [c.update(node), m_succeeded(node, ids, tries, sizes, values, took)]
            out += c.feed(*events)
        elif action < 0.7 and claimed:
            node, task_id, attempt = rng.choice(claimed)
            out += c.error(node, "r", task_id, attempt, kind=rng.choice(("error", "cancelled")))
        elif action < 0.75:
            for node in c.queue:
                for run_id, task_id, attempt in c.start_queued(node):
                    out += c.feed(c.update(node), started(run_id, task_id, attempt, node))
        else:
            port.advance(rng.choice((0.0, 0.004, 0.01, 0.03, 0.06)))
        each()


def m_succeeded(
    node: str,
    ids: list[str],
    tries: list[int],
    sizes: list[int],
    values: list[Any],
    took: list[float],
) -> Any:
    from handoffd.scheduler import events as ev

    return ev.TasksSucceeded("r", node, ids, tries, sizes, values, took)


def started(run_id: str, task_id: str, attempt: int, node: str) -> Any:
    from handoffd.scheduler import events as ev

    return ev.TaskStarted(run_id, task_id, attempt, node)


@pytest.mark.parametrize("seed", range(40))
def test_a_batch_told_at_once_leaves_the_log_and_its_timer_as_one_by_one(seed: int) -> None:
    one_by_one, batched = _drive(seed, False), _drive(seed, True)
    assert batched == one_by_one
    assert any(step[5] for step in batched)  # (batches did reach the standby)


def test_the_scheduler_tells_a_batch_once_in_order_with_what_went_out() -> None:
    c = Cluster({"n1": 2.0, "n2": 2.0}, window=1)
    one: list[tuple[str, str]] = []
    told: list[list[tuple[str, str, bool]]] = []
    c.sched.on_change = lambda run_id, task_id: one.append((run_id, task_id))
    c.sched.on_changes = told.append
    out = c.submit("r", [spec(f"t{i}") for i in range(6)])  # dispatched in the same batch
    assert one == [] and len(told) == 1
    (first,) = told
    assert sorted(t for _, t, _ in first) == sorted(
        i.task_id for d in dispatches(out) for i in d.items
    )
    assert all(run_id == "r" and held for run_id, _, held in first)
    told.clear()
    out = c.accept_all(out)
    run = c.sched.run_state("r")
    assert run is not None
    rec = run.tasks["t0"]
    c.succeed(rec.node, "r", "t0", rec.attempt)
    assert told[-1][0] == ("r", "t0", False)  # done: not held
    # Outside a batch (a takeover's restore, a lease) the one-by-one listener still hears it.
    c.sched.on_changes = None
    rec = run.tasks["t1"]
    c.succeed(rec.node, "r", "t1", rec.attempt)
    assert ("r", "t1") in one
