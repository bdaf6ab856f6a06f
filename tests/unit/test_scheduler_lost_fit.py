"""After a node is lost the owner checks every running run still fits the live nodes; a run built
off the loop is first checked one task per shape, finished tasks too (``ClusterView.misfit(...,
finished=True)`` over ``intake.Prebuilt.probes``), and walked task by task only when that finds a
misfit: the walk over 200,000 tasks took 0.2 s of one batch (1,000,000: with the rest of the loss,
past 1 s). Each test plays the same random run twice, one copy with its probes: instructions,
states and the errors that end runs must agree."""

from __future__ import annotations

import random
from typing import Any

import pytest
from scheduler_harness import Cluster
from test_scheduler_cancel_bulk import _run

from handoffd.scheduler import events as ev
from handoffd.scheduler import intake
from handoffd.spec import TaskSpec

NODES = {"a": 2.0, "b": 4.0, "c": 8.0}


def _dag(rng: random.Random, n: int) -> list[TaskSpec]:
    specs: list[TaskSpec] = []
    for i in range(n):
        deps = tuple(sorted({f"t{rng.randrange(i)}" for _ in range(rng.randrange(3))})) if i else ()
        if rng.random() < 0.5:
            deps = ()
        cost = {"cpu": rng.choice((0.5, 1.0, 2.0, 2.0, 4.0, 8.0))}
        node = rng.choice(("a", "b", "c")) if rng.random() < 0.1 and cost["cpu"] <= 2 else None
        group = None
        if i > 2 and node is None and not deps and rng.random() < 0.15:
            mate = specs[rng.randrange(i)]
            if mate.node is None and mate.collocate_with is None and mate.cost["cpu"] <= 2:
                group = mate.id
                cost = {"cpu": 0.5}
        specs.append(TaskSpec(f"t{i}", deps, cost, b"p", node=node, collocate_with=group))
    return specs


def _step(cluster: Cluster, rng: random.Random, out: list[ev.Instruction]) -> list[Any]:
    more: list[Any] = []
    for ins in out:
        if isinstance(ins, ev.StartTimer) and ins.key[0] == "intake":
            more += cluster.feed(ev.TimerFired(ins.key))
    for d in [i for i in out if isinstance(i, ev.Dispatch)]:
        node_update, answered = cluster.reply(d)
        more += cluster.feed(node_update, answered)
        for task_id, attempt in answered.accepted:
            if rng.random() < 0.8:
                more += cluster.succeed(d.node, d.run_id, task_id, attempt)
    return more


@pytest.mark.parametrize("seed", range(40))
def test_a_loss_checked_by_shapes_ends_what_a_task_by_task_check_ends(seed: int) -> None:
    rng = random.Random(seed)
    specs = _dag(rng, rng.randrange(2, 120))
    walked, probed = Cluster(NODES), Cluster(NODES)
    outs = [walked.submit("r", specs), probed.submit("r", specs)]
    if _run(probed).state != "RUNNING":
        return
    _run(probed).prebuilt = intake.Prebuilt((b"", b""), intake.probes(_run(probed)))
    losses = rng.sample(sorted(NODES), rng.randrange(1, 3))
    for step in range(rng.randrange(2, 30)):
        lose = losses.pop() if losses and rng.random() < 0.25 else None
        outs = [
            _step(c, random.Random(seed * 1000 + step), out)
            for c, out in zip((walked, probed), outs, strict=True)
        ]
        if lose is not None:
            for c in (walked, probed):
                c.alive[lose] = False
            update = ev.NodeUpdate(lose, lose, False, {}, {}, 99)
            outs = [o + walked.feed(update) for o in outs[:1]] + [outs[1] + probed.feed(update)]
        assert repr(outs[0]) == repr(outs[1])
        assert _run(walked).snapshot() == _run(probed).snapshot()
        if _run(walked).state != "RUNNING":
            break


@pytest.mark.parametrize("seed", range(60))
def test_no_misfit_among_every_shape_means_none_among_the_unfinished(seed: int) -> None:
    rng = random.Random(seed)
    specs = _dag(rng, rng.randrange(2, 80))
    cluster = Cluster(NODES)
    out = cluster.submit("r", specs)
    run = _run(cluster)
    probes = intake.probes(run)
    view = cluster.sched._view
    # untouched: the probes find what the walk finds
    assert repr(view.misfit(run, probes, True)) == repr(view.misfit(run))
    for _ in range(rng.randrange(1, 20)):
        out = _step(cluster, rng, out)
    for lose in rng.sample(sorted(NODES), rng.randrange(0, 3)):
        view.nodes[lose].alive = False
    if view.misfit(run, probes, True) is None:
        assert view.misfit(run) is None
