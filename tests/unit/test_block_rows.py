"""A window fill's block of tasks whose attempt numbers differ (``OwnerBooks._dispatch_block``):
the block makes its history row and its move row once an attempt number and shares them between
the records of that number, so a retried task beside fresh ones must still get rows of its own
number. Both builds, each block against the task-by-task chain (``_dispatch`` of each) on a twin
scheduler: the same records, rows, books and dispatch columns. (``test_fill_blocks`` compares
random walks, whose blocks rarely mix attempt numbers.)"""

from __future__ import annotations

import importlib
import random
from typing import Any

import pytest
from scheduler_harness import CPU, Cluster
from test_fill_blocks import books
from test_scheduler_twin import PURE, cluster

from handoffd.spec import TaskSpec

BUILDS = {
    "compiled": importlib.import_module("handoffd.scheduler.owner"),
    "pure": PURE["handoffd.scheduler.owner"],
}


def _queued(build: str, n: int) -> Cluster:
    """A run of ``n`` tasks of one cost, all READY and queued: its one node is full of other
    owners' work and windows are off, so nothing was placed."""
    c = cluster(build == "pure", {"n0": {CPU: 2.0}}, 1, None)
    c.used["n0"] = {CPU: 2.0}
    c.feed(c.update("n0"))
    cost = {CPU: 1.0}
    c.submit("r", [TaskSpec(f"t{i}", (), cost, b"p") for i in range(n)])
    return c


def _trace(build: str, seed: int, block: bool) -> list[Any]:
    rng = random.Random(seed)
    n = rng.randint(2, 12)
    c = _queued(build, n)
    s = c.sched
    run = s._live["r"]
    recs = list(run.ordered)
    assert all(r.state == "READY" and r.queued for r in recs)
    # (retried tasks: an earlier attempt number, as a refusal or a loss leaves READY)
    for rec in recs:
        rec.attempt = rng.choice((0, 0, 1, 3))
    run.attempt_floor = rng.choice((0, 0, 2))
    trace: list[Any] = []
    for part in (recs[: n // 2], recs[n // 2 :]):
        if block:
            s._dispatch_block(run, part, "n0", True, None)
        else:
            for rec in part:
                s._dispatch(run, rec, "n0", True)
        trace.append(books(c))
        trace.append(
            [(key, [repr(t) for t in placed.tasks()]) for key, placed in s._out.dispatches.items()]
        )
    return trace


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_a_block_of_mixed_attempts_writes_what_the_chain_wrote(build: str) -> None:
    mixed = 0
    for seed in range(40):
        chain = _trace(build, seed, False)
        assert _trace(build, seed, True) == chain, (build, seed)
        rows = {a[0] for run in chain[0][0] for rec in run[4] for a in rec[5]}
        mixed += len(rows) > 1
    assert mixed >= 20  # (blocks that mix attempt numbers, the case under test)
