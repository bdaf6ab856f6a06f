"""Ending a big run without a listener call per task (issue 19, item 7): ``RunState.end`` moves the
tasks that never went out (PENDING, READY) itself, the owner drops the run's ready entries at once,
and a standby cancels those tasks from the run's end alone (``Replica.run_data``). Each test plays
the same random run twice and ends one copy the per-task way (every open task through ``move`` and
its listener, as before): states, histories, books, instructions and the replica must agree."""

from __future__ import annotations

import random
from typing import Any

import pytest
from scheduler_harness import Cluster, dispatches

from handoffd.protocol.messages import TaskDelta
from handoffd.protocol.snapshot import encode_run
from handoffd.replication.standby import Replica
from handoffd.scheduler import events as ev
from handoffd.scheduler import intake
from handoffd.scheduler.run import ACTIVE, RunState
from handoffd.spec import TaskSpec


def _dag(rng: random.Random, n: int) -> list[TaskSpec]:
    specs = []
    for i in range(n):
        deps = tuple(sorted({f"t{rng.randrange(i)}" for _ in range(rng.randrange(3))})) if i else ()
        if rng.random() < 0.4:
            deps = ()
        cost = {"cpu": rng.choice((0.0, 0.5, 1.0, 2.0))}
        specs.append(TaskSpec(f"t{i}", deps, cost, b"p", priority=rng.choice((0, 0, 1, 5))))
    return specs


def _play(cluster: Cluster, specs: list[TaskSpec], seed: int, changed: list[str]) -> None:
    """Submit, then a random mix of intake slices, dispatches and completions (same ``seed``:
    the same steps); the run is left open somewhere in the middle."""
    rng = random.Random(seed)
    cluster.sched.on_change = lambda run_id, task_id: changed.append(task_id)
    out = cluster.submit("r", specs)
    running: list[tuple[str, str, int]] = []
    for _ in range(rng.randrange(1, 40)):
        more: list[ev.Instruction] = []
        for ins in out:
            if isinstance(ins, ev.StartTimer) and ins.key[0] == "intake" and rng.random() < 0.7:
                more += cluster.feed(ev.TimerFired(ins.key))
        for d in dispatches(out):
            node_update, answered = cluster.reply(d)
            more += cluster.feed(node_update, answered)
            assert isinstance(answered, ev.DispatchAnswered)
            running += [(d.node, t, a) for t, a in answered.accepted]
        if running and rng.random() < 0.6:
            node, task_id, attempt = running.pop(rng.randrange(len(running)))
            more += cluster.succeed(node, "r", task_id, attempt)
        out = more


def _run(cluster: Cluster) -> RunState:
    run = cluster.sched.run_state("r")
    assert run is not None
    return run


def _per_task_cancel(cluster: Cluster) -> None:
    """The end as it was: each open task through ``move`` and so through the owner's listener,
    at the time the cancel batch will carry (``Cluster.feed`` steps 0.01)."""
    run = _run(cluster)
    now = cluster.t + 0.01
    for rec in run.tasks.values():
        if rec.state not in ACTIVE and rec.state not in ("DONE", "FAILED", "CANCELLED"):
            run.move(rec, "CANCELLED", now, "run cancelled")


def _books(cluster: Cluster) -> Any:
    ready = cluster.sched._ready
    run = _run(cluster)
    queued = sorted(rec.id for rec in run.tasks.values() if rec.queued)
    return (len(ready), ready.weightless, ready.shape_counts(), queued, dict(run.counters or {}))


def _delta(rec: Any) -> TaskDelta:
    return TaskDelta(
        rec.id,
        rec.state,
        rec.attempt,
        rec.node,
        rec.size,
        tuple(sorted(rec.locations)),
        rec.failures,
        rec.losses,
        rec.completions,
        -1,
    )


@pytest.mark.parametrize("seed", range(25))
def test_the_bulk_end_leaves_what_the_per_task_end_leaves(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    specs = _dag(rng, rng.randrange(1, 300))
    monkeypatch.setattr(intake, "SLICE", rng.choice((1, 5, 32, 1024)))
    nodes = {"a": 2.0, "b": 4.0}
    bulk, each = Cluster(nodes), Cluster(nodes)
    changed_bulk: list[str] = []
    changed_each: list[str] = []
    _play(bulk, specs, seed, changed_bulk)
    _play(each, specs, seed, changed_each)
    assert _run(bulk).snapshot() == _run(each).snapshot()
    replica = Replica("r", 0, 0, "owner", "addr", ("s",), encode_run(_run(bulk)))
    changed_bulk.clear()
    changed_each.clear()

    _per_task_cancel(each)
    out_each = each.feed(ev.CancelRequested("r"))
    out_bulk = bulk.feed(ev.CancelRequested("r"))

    assert repr(out_bulk) == repr(out_each)  # the same CancelAttempts per node, RunFinished, ...
    assert _run(bulk).snapshot() == _run(each).snapshot()  # states and histories
    assert {rec.state for rec in _run(bulk).tasks.values()} <= {"DONE", "CANCELLED"}
    assert _books(bulk) == _books(each)
    assert bulk.sched.run_status("r").state == "CANCELLED"  # type: ignore[union-attr]
    # Only the tasks that were out are logged; the standby gets the rest from the run's end.
    assert set(changed_bulk) <= set(changed_each)
    run = _run(bulk)
    for task_id in sorted(set(changed_bulk)):
        replica.put(_delta(run.tasks[task_id]), None)
    replica.run_fields = (run.state, run.released, None)
    data = replica.run_data()
    assert {t: r["state"] for t, r in data["tasks"].items()} == {
        t: rec.state for t, rec in run.tasks.items()
    }
    assert not any(rec.queued for rec in run.tasks.values())


def test_a_cancel_sends_cancel_tasks_for_each_task_out() -> None:
    cluster = Cluster({"a": 2.0})
    out = cluster.submit("r", [TaskSpec(f"t{i}", (), {"cpu": 1.0}, b"p") for i in range(50)])
    cluster.accept_all(out)
    out = cluster.feed(ev.CancelRequested("r"))
    (cancel,) = [i for i in out if isinstance(i, ev.CancelAttempts)]
    assert cancel.node == "a" and len(cancel.items) == 2
    states = [rec.state for rec in _run(cluster).tasks.values()]
    assert states.count("CANCELLED") == 50
