"""``RunState.node_lost`` walks a run's tasks once (issue 19 item 7: its three walks took 115-140 ms
of the owner's loop per 200,000 tasks): what to re-queue, the copies dropped, and the tasks
``recompute_needed`` may run again, only those. Each test plays the same random run twice and
loses nodes in one copy with ``node_lost``, in the other with the three walks it replaced: what
they return and every task's state must agree."""

from __future__ import annotations

import random
from typing import Any

import pytest
from scheduler_harness import Cluster
from test_scheduler_cancel_bulk import _run
from test_scheduler_lost_fit import NODES, _dag

from handoffd.scheduler import events as ev
from handoffd.scheduler.run import EXTRA_LOSSES, RunState
from handoffd.scheduler.states import ACTIVE, DONE, RUN_CANCELLED, RUN_FAILED


def _three_walks(run: RunState, node: str, now: float) -> tuple[list[Any], Any]:
    """``node_lost`` as it was: the reference."""
    run.holders.discard(node)
    if run.state in (RUN_FAILED, RUN_CANCELLED):
        for rec in run.tasks.values():
            rec.locations = tuple(n for n in rec.locations if n != node)
        return [], None
    cancels: list[Any] = []
    gave_up = None
    requeue = [r for r in run.tasks.values() if r.state in ACTIVE and r.node == node]
    for rec in run.tasks.values():
        rec.locations = tuple(n for n in rec.locations if n != node)
    for gid, where in run.group_node.items():
        if where == node and run.group_pin.get(gid) is None:
            run.group_node[gid] = None
    for rec in requeue:
        rec.losses += 1
        cancels.extend(run.make_ready(rec, now, f"node {node} lost (attempt {rec.attempt})"))
        if gave_up is None and rec.failures + rec.losses > run.max_retries(rec) + EXTRA_LOSSES:
            gave_up = rec
    for rec in list(run.tasks.values()):
        if rec.state == DONE and not rec.has_copy() and run._needed(rec):
            cancels.extend(run._recompute(rec, now))
    return cancels, gave_up


def _play(cluster: Cluster, rng: random.Random, out: list[Any]) -> list[Any]:
    """One step: intake timers fired, dispatches answered, most started tasks finished (on
    other nodes too, some with their value inline), a few values copied elsewhere."""
    more: list[Any] = []
    for ins in out:
        if isinstance(ins, ev.StartTimer) and ins.key[0] == "intake":
            more += cluster.feed(ev.TimerFired(ins.key))
    for d in [i for i in out if isinstance(i, ev.Dispatch)]:
        node_update, answered = cluster.reply(d)
        more += cluster.feed(node_update, answered)
        for task_id, attempt in answered.accepted:
            if rng.random() < 0.7:
                value = b"v" if rng.random() < 0.2 else None
                more += cluster.succeed(d.node, d.run_id, task_id, attempt, value=value)
    run = cluster.sched.run_state("r")
    if run is not None:
        for rec in run.tasks.values():
            if rec.state == DONE and rec.locations and rng.random() < 0.2:
                node = rng.choice(sorted(NODES))  # (a copy a consumer fetched)
                if node not in rec.locations:
                    rec.locations += (node,)
    return more


def _records(run: RunState) -> list[Any]:
    return [
        (r.id, r.state, r.attempt, r.node, r.losses, sorted(r.locations), r.value)
        for r in run.tasks.values()
    ]


@pytest.mark.parametrize("seed", range(60))
def test_one_walk_loses_a_node_as_three_did(seed: int) -> None:
    rng = random.Random(seed)
    specs = _dag(rng, rng.randrange(2, 150))
    ids = [s.id for s in specs]
    outputs = None if rng.random() < 0.3 else rng.sample(ids, rng.randrange(0, len(ids) + 1))
    retries = rng.choice((0, 1, 3))
    one, three = Cluster(NODES), Cluster(NODES)
    outs = [c.submit("r", specs, outputs=outputs, max_retries=retries) for c in (one, three)]
    for step in range(rng.randrange(0, 25)):
        outs = [
            _play(c, random.Random(seed * 1000 + step), out)
            for c, out in zip((one, three), outs, strict=True)
        ]
    a, b = _run(one), _run(three)
    assert _records(a) == _records(b)
    if rng.random() < 0.1:
        a.state = b.state = rng.choice((RUN_FAILED, RUN_CANCELLED))
    for node in rng.sample(sorted(NODES), rng.randrange(1, 4)):
        now = 100.0 + len(node)
        cancels, gave_up = a.node_lost(node, now)
        expected, expected_gave_up = _three_walks(b, node, now)
        assert cancels == expected
        assert getattr(gave_up, "id", None) == getattr(expected_gave_up, "id", None)
        assert _records(a) == _records(b)
        assert a.snapshot() == b.snapshot()
        assert a.group_node == b.group_node and a.holders == b.holders
