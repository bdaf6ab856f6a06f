"""``ClusterView.misfit`` over a whole run (a run built on the loop: every task looked at) passes
over a task whose pin and cost items are the very objects of the last task it found fit, without
building and hashing its shape. What it answers must be what a look at each task alone answers:
the first unfinished task (in the run's order) that no live node can hold, or its pinned node is
gone or too small. Runs here share cost objects between tasks of equal cost (as the run's builder
makes them) and vary pins between such tasks, so a pass-over that looked at the cost alone would
miss a pinned task's misfit."""

from __future__ import annotations

import random

import pytest
from scheduler_harness import Cluster

from handoffd.errors import HandoffError
from handoffd.scheduler import events as ev
from handoffd.scheduler.run import DONE, RunState
from handoffd.spec import RunOptions, TaskSpec


def _run(rng: random.Random, nodes: list[str], order: object) -> RunState | None:
    specs = []
    cost = {"cpu": 1.0}
    for i in range(rng.randrange(1, 40)):
        if rng.random() < 0.2:  # (a new cost: a new run of equal costs, a new items object)
            cost = {"cpu": rng.choice([0.5, 1.0, 2.0, 4.0, 16.0])}
        pin = rng.choice([*nodes, "gone"]) if rng.random() < 0.25 else None
        specs.append(TaskSpec(f"t{i}", (), dict(cost), b"p", node=pin))
    try:
        return RunState("r", specs, RunOptions(), term=1, order=order)  # type: ignore[arg-type]
    except HandoffError:
        return None


@pytest.mark.parametrize("backend", ["cython", "python"])
@pytest.mark.parametrize("seed", range(150))
def test_a_whole_run_misfits_where_its_first_misfit_task_alone_does(
    backend: str, seed: int
) -> None:
    rng = random.Random(seed)
    nodes = {f"n{i}": float(rng.choice([1, 2, 4, 8])) for i in range(rng.randint(1, 3))}
    cluster = Cluster(nodes, backend=backend)  # type: ignore[arg-type]
    for name in nodes:
        if rng.random() < 0.25:
            cluster.feed(ev.NodeUpdate(name, name, False, {}, {}, 99))
    run = _run(rng, sorted(nodes), cluster.sched.order)
    if run is None:
        return
    for rec in run.tasks.values():
        if rng.random() < 0.15:
            rec.state = DONE
    view = cluster.sched._view
    # Tasks of equal cost in a row share one items object, as the columns' builder makes them
    # (``plain_graph``): the pass-over has something to skip.
    recs = list(run.tasks.values())
    for before, rec in zip(recs, recs[1:], strict=False):
        if rec.cost_items == before.cost_items:
            rec.cost_items = before.cost_items
    expected = None
    for rec in recs:
        if rec.state == DONE:
            continue
        expected = view.misfit(run, [rec.id])
        if expected is not None:
            break
    assert repr(view.misfit(run)) == repr(expected)
    # finished tasks looked at too: the first misfit among every task
    expected = None
    for rec in recs:
        expected = view.misfit(run, [rec.id], True)
        if expected is not None:
            break
    assert repr(view.misfit(run, None, True)) == repr(expected)
