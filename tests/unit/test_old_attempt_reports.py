"""A success report of an attempt the owner gave up on is stale: it never finishes the task's
newer attempt, in a report table (``successes.apply``, the owner's common path) as row by row
(``OwnerScheduler._current``). The contract (docs/architecture.md, "How a run flows": a report
names its attempt; one of an attempt that is not the task's current one is skipped): an old
attempt's late success is not counted, the new attempt's own report is, once, with its value.

Random runs on one or two nodes: some dispatches are lost (never answered), the ack timer gives
them up and places attempt 2 (on the same node when there is one); the node, which ran attempt 1
anyway, reports it in a table mixed with current attempts' rows, in random order. Both builds."""

from __future__ import annotations

import random
from typing import Any

import pytest
from scheduler_harness import Cluster, dispatches, spec
from test_scheduler_twin import cluster

from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import ACK_TIMEOUT


def _value(task_id: str, attempt: int) -> bytes:
    return f"{task_id}@{attempt}".encode()


def drain(c: Cluster, run: Any, nodes: Any, mark: int) -> None:
    """The rest of the run: every dispatch since ``c.log[mark]`` still unanswered for a current
    attempt is answered, queued tasks start, every attempt out reports success (its value the
    attempt's), until the run ends."""
    n = len(run.tasks)
    seen = mark
    for _ in range(4 * n):
        if run.state != "RUNNING":
            break
        fresh, seen = dispatches(c.log[seen:]), len(c.log)
        for d in fresh:
            items = [
                i
                for i in d.items
                if ("r", i.task_id, i.attempt) not in c.costs
                and run.tasks[i.task_id].attempt == i.attempt
                and run.tasks[i.task_id].state == "ASSIGNED"
            ]
            if items:
                c.feed(*c.reply(ev.Dispatch(d.node, d.run_id, d.term, items)))
        for node in nodes:
            c.start_queued(node)  # (a window's queued tasks claim their cost as they start)
        for task_id, rec in list(run.tasks.items()):
            if rec.state == "ASSIGNED" and ("r", task_id, rec.attempt) in c.costs:
                assert rec.node is not None
                c.succeed(rec.node, "r", task_id, rec.attempt, 9, _value(task_id, rec.attempt))


def drive(pure: bool, seed: int) -> None:
    rng = random.Random(seed)
    nodes = {f"n{i}": float(rng.randint(2, 6)) for i in range(rng.randint(1, 2))}
    c = cluster(pure, nodes, window=rng.randint(1, 3), budget=None)
    n = rng.randint(2, 12)
    out = c.submit("r", [spec(f"t{i}") for i in range(n)], max_retries=0)
    lost: list[tuple[str, str, int]] = []  # (node, task, attempt) whose dispatch never arrived
    waiting = dispatches(out)
    assert waiting
    drop = [rng.random() < 0.5 for _ in waiting]
    drop[rng.randrange(len(waiting))] = True  # (at least one: the scenario is about an old attempt)
    for d, dropped in zip(waiting, drop, strict=True):
        if dropped:
            lost += [(d.node, item.task_id, item.attempt) for item in d.items]
        else:
            c.feed(*c.reply(d))
    c.t += ACK_TIMEOUT
    redo: list[ev.Dispatch] = []
    for node in nodes:
        redo += dispatches(c.feed(ev.TimerFired(("ack", node))))
    run = c.sched.run_state("r")
    assert run is not None
    for _, task_id, attempt in lost:
        rec = run.tasks[task_id]
        assert rec.attempt > attempt, f"{task_id}: attempt {attempt} not given up"
    mark = len(c.log)
    c.feed(*[e for d in redo for e in c.reply(d)])
    # Attempts still out, old and current, reported by the nodes they went to.
    for node in nodes:
        c.start_queued(node)
    current = {
        t: (rec.node, rec.attempt) for t, rec in run.tasks.items() if rec.state == "ASSIGNED"
    }
    rows: dict[str, list[tuple[str, int, int, bytes, float]]] = {}
    for node, task_id, attempt in lost:
        rows.setdefault(node, []).append((task_id, attempt, 7, _value(task_id, attempt), 0.01))
    for task_id, (node, attempt) in current.items():
        if ("r", task_id, attempt) in c.costs and rng.random() < 0.7:  # (started: it ran)
            c.release(node, "r", task_id, attempt)
            rows.setdefault(node, []).append((task_id, attempt, 9, _value(task_id, attempt), 0.01))
    reported = {(t, a) for node_rows in rows.values() for t, a, *_ in node_rows}
    columns = rng.random() < 0.75
    for node, node_rows in rows.items():
        rng.shuffle(node_rows)
        if columns:
            ids, attempts, sizes, values, took = (list(x) for x in zip(*node_rows, strict=True))
            event: list[Any] = [ev.TasksSucceeded("r", node, ids, attempts, sizes, values, took)]
        else:
            event = [ev.TaskSucceeded("r", t, a, node, *rest) for t, a, *rest in node_rows]
        c.feed(c.update(node), *event)
    for task_id, rec in run.tasks.items():
        mine = current.get(task_id)
        if mine is not None and (task_id, mine[1]) in reported:
            assert (rec.state, rec.value, rec.size) == ("DONE", _value(task_id, mine[1]), 9)
            assert rec.completions == 1
        elif mine is not None:
            # Only an older attempt reported (or none): the current one is still out.
            assert rec.state == "ASSIGNED" and rec.completions == 0, (task_id, rec.state)
    assert run.tally["DONE"] == sum(1 for r in run.tasks.values() if r.state == "DONE")
    drain(c, run, nodes, mark)
    assert run.state == "DONE", [
        (t, r.state, r.attempt) for t, r in run.tasks.items() if r.state != "DONE"
    ]
    assert run.tally["DONE"] == n and run.remaining == 0
    for task_id, rec in run.tasks.items():
        assert rec.completions == 1, task_id
        assert rec.value == _value(task_id, rec.attempt), task_id
        done = [a[0] for a in rec.attempts if a[2] == "DONE"]
        assert done == [rec.attempt], (task_id, rec.attempts)
    for node in nodes:
        assert c.sched.outstanding(node) == {}


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("pure", [False, True], ids=["built", "pure"])
def test_an_old_attempts_late_success_never_finishes_the_new_attempt(pure: bool, seed: int) -> None:
    drive(pure, seed)
