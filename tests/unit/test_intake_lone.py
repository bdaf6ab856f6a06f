"""A lone unpinned task's fit at submission (every one-task ``execute``) is told by
``intake._misfit`` without ``ClusterView.misfit``'s views and walk when some live node holds it;
what it answers is what ``misfit`` answers, over random clusters and small runs (issue 13, W3)."""

from __future__ import annotations

import random

import pytest
from scheduler_harness import Cluster

from handoffd._core import api as core
from handoffd.errors import ValidationError
from handoffd.scheduler import events as ev
from handoffd.scheduler import intake
from handoffd.scheduler.run import RunState
from handoffd.spec import RunOptions, TaskSpec

KINDS = ("cpu", "memory", "gpu")


def _cost(rng: random.Random) -> dict[str, float]:
    return {
        k: rng.choice([0.0, 0.5, 1.0, 2.0, 4.0, 64.0]) for k in rng.sample(KINDS, rng.randint(0, 3))
    }


@pytest.mark.parametrize("backend", ["cython", "python"])
@pytest.mark.parametrize("seed", range(120))
def test_the_lone_task_check_answers_what_misfit_answers(backend: str, seed: int) -> None:
    rng = random.Random(seed)
    nodes = {f"n{i}": _cost(rng) for i in range(rng.randint(0, 4))}
    cluster = Cluster(nodes, backend=backend)
    view = cluster.sched._view
    for name in nodes:
        if rng.random() < 0.3:
            cluster.feed(ev.NodeUpdate(name, name, False, {}, {}, 99))
    n = rng.choice([1, 1, 1, 2, 3])
    specs = []
    for i in range(n):
        mate = f"t{rng.randrange(i)}" if i and rng.random() < 0.3 else None
        pin = rng.choice([*nodes, "gone"]) if rng.random() < 0.2 else None
        specs.append(TaskSpec(f"t{i}", (), _cost(rng), b"p", node=pin, collocate_with=mate))
    try:
        run = RunState("r", specs, RunOptions(), term=1, order=cluster.sched.order)
    except ValidationError:
        return  # (a group pinned to two nodes: refused before any fit is asked)
    kernels = core.kernels(backend)
    before = kernels.decisions()
    short = intake._misfit(view, run)
    middle = kernels.decisions()
    general = view.misfit(run)
    after = kernels.decisions()
    assert repr(short) == repr(general)
    if short is None:  # (a misfit is told by ``misfit`` after the quick look: more tests then)
        # the same fits tests: the compiled core's share of decisions is what it was
        assert {k: middle[k] - before[k] for k in middle} == {
            k: after[k] - middle[k] for k in after
        }
