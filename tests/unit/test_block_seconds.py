"""A window fill's block carries the seconds its walk charged each task (``FillPasses._walk``):
the block's books (``Demand.went_out_all``'s charges, ``Rebalance.sent_all``'s check) read them
instead of estimating each task again. Each must be the task's own estimate as the walk charges
it, in the block's order; that the books written from them are the task-by-task chain's is
``test_fill_blocks``'s comparison (both builds)."""

from __future__ import annotations

import random
from typing import Any

from scheduler_harness import CPU
from test_fill_blocks import COSTS, drive
from test_scheduler_twin import cluster

from handoffd.scheduler.cluster_view import QUEUE_SECONDS
from handoffd.scheduler.durations import UNKNOWN_CHARGE
from handoffd.spec import TaskSpec


def test_an_unknown_charge_is_above_the_rebalance_s_short() -> None:
    # (the rebalance reads the charged seconds: an unknown estimate, -1, and its charge must
    # both fail its ``0 <= seconds <= QUEUE_SECONDS``)
    assert UNKNOWN_CHARGE > QUEUE_SECONDS


def _spied(seed: int) -> tuple[list[tuple[Any, ...]], int, int]:
    """W1's shape run twice (the second's durations learned a task) on the pure build, every
    block the walk sends checked against each task's estimate at that moment."""
    rng = random.Random(seed)
    cost = rng.choice(COSTS[:3])
    specs = [TaskSpec(f"t{i}", (), cost, b"p") for i in range(rng.randint(20, 120))]
    nodes = {f"n{i}": {CPU: rng.choice((1.0, 2.0)), "mem": 10.0} for i in range(rng.randint(1, 3))}
    c = cluster(True, nodes, rng.choice((8, 32, 64)), rng.choice((0.002, 0.005, 0.05)))
    s = c.sched
    send = s._send_block
    durations = s._view.durations
    wrong: list[tuple[Any, ...]] = []
    seen = [0, 0]  # blocks of more than one task; of which with a learned estimate

    def spy(
        run: Any, recs: list[Any], node: str, queued: bool = False, seconds: Any = None
    ) -> None:
        want = []
        for rec in recs:
            est = durations.estimate_task(rec)
            want.append(UNKNOWN_CHARGE if est < 0.0 else est)
        if seconds != want:
            wrong.append((run.run_id, [r.id for r in recs], seconds, want))
        if len(recs) > 1:
            seen[0] += 1
            seen[1] += any(w != UNKNOWN_CHARGE for w in want)
        send(run, recs, node, queued, seconds)

    s._send_block = spy  # (the pure build: its ``_place`` looks the method up on the instance)
    drive(c, seed, specs, rng.choice(("binpack", "spread", "first_fit")), again=True)
    return wrong, seen[0], seen[1]


def test_a_block_carries_each_task_s_charged_estimate() -> None:
    blocks = learned = 0
    for seed in range(12):
        wrong, many, known = _spied(seed)
        assert not wrong, (seed, wrong[:2])
        blocks += many
        learned += known
    assert blocks and learned  # (blocks of several tasks formed, some with learned seconds)
