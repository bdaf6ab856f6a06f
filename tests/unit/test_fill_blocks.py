"""The window fill's walk dispatching a node's consecutive tasks of one cost as a block
(``FillPasses._walk`` with ``OwnerBooks._dispatch_block``): both builds, over random DAGs, costs,
nodes, windows, budgets and node behaviour, against the task-by-task chain (``blocks`` False, the
reference). Every call's instructions must be the same, and after every call the books too: each
task's state, attempt, node, moves, history rows and charge, the runs' tallies, counters and
placements, the nodes' outstanding demand, work, pending cost and unanswered dispatches (bit for
bit), the lost messages' watch and the rebalance's queue."""

from __future__ import annotations

import importlib
import random
from typing import Any

import pytest
from pure_build import pure
from scheduler_harness import CPU, Cluster, dispatches
from test_scheduler_twin import PURE, cluster

from handoffd.scheduler import demand as built_demand
from handoffd.spec import TaskSpec

BUILDS = {
    "compiled": importlib.import_module("handoffd.scheduler.owner"),
    "pure": PURE["handoffd.scheduler.owner"],
}

# Shared cost objects, as a run's specs share them: consecutive tasks of one make a block.
COSTS = ({CPU: 1.0}, {CPU: 0.5}, {CPU: 0.25, "mem": 1.0}, {}, {CPU: 2.0})


def books(c: Cluster) -> Any:
    """Everything the dispatch chain writes, as plain values (floats compared exactly)."""
    s = c.sched
    view = s._view
    runs = []
    for run_id, run in sorted(s._live.items()):
        recs = [
            (r.id, r.state, r.attempt, r.node, list(r.moves), list(r.attempts), r.charge, r.queued)
            for r in run.ordered
        ]
        runs.append((run_id, dict(run.tally), dict(run.counters or {}), dict(run.placed), recs))
    return (
        runs,
        {n: list(d.items()) for n, d in view.outstanding.items()},
        {n: list(d.items()) for n, d in view.pending.items()},
        dict(view.work),
        {n: [repr(b) for b in bs] for n, bs in view.unacked.items()},
        s._lost.out_since(),
        s._lost._probe_timer,
        {n: list(keys) for n, keys in s._rebalance.queued.items()},
        len(s._ready),
    )


def workload(rng: random.Random) -> list[TaskSpec]:
    n = rng.randint(1, 60)
    specs = []
    costs = rng.sample(COSTS, rng.randint(1, 3))
    for i in range(n):
        deps = rng.sample(range(i), min(i, rng.choice((0, 0, 0, 1, 2))))
        specs.append(
            TaskSpec(
                f"t{i}",
                tuple(f"t{d}" for d in deps),
                costs[0] if rng.random() < 0.7 else rng.choice(costs),
                b"p" if rng.random() < 0.8 else b"q",
                node=rng.choice((None,) * 9 + ("n0",)),
                priority=rng.choice((0, 0, 0, 1, 2)),
            )
        )
    return specs


def drive(
    c: Cluster, seed: int, specs: list[TaskSpec], policy: str, again: bool = False
) -> list[Any]:
    """Submit (one run or two), then steps of: answer every dispatch (a refusal now and then),
    start what the nodes' queues can, finish, fail or report together some running attempts; the
    instructions of every call and the books after it. ``again``: once all is settled, a run of
    the same specs (the same ids: durations learned a task, each walk's seconds differ) and its
    steps."""
    rng = random.Random(seed)
    trace: list[Any] = []
    waiting: list[Any] = []
    running: list[tuple[str, str, str, int]] = []

    def took(out: list[Any]) -> None:
        trace.append(([repr(i) for i in out], books(c)))
        waiting.extend(dispatches(out))

    def settle() -> None:
        for _ in range(200 if not again else 2000):
            while waiting:
                d = waiting.pop(0)
                answer = c.reply(d, refuse=rng.random() < 0.05)
                for task_id, attempt in getattr(answer[1], "accepted", ()):
                    if (d.run_id, task_id, attempt) in c.costs:
                        running.append((d.node, d.run_id, task_id, attempt))
                took(c.feed(*answer))
            for node in c.queue:
                running.extend((node, *key) for key in c.start_queued(node))
            if not running:
                break
            node, run_id, task_id, attempt = running.pop(rng.randrange(len(running)))
            if rng.random() < 0.1:
                took(c.error(node, run_id, task_id, attempt))
                continue
            done = [(task_id, attempt, 1, b"v", rng.choice((0.0001, 0.01, 0.5)))]
            for other in [r for r in running if r[0] == node and r[1] == run_id][
                : rng.randint(0, 6)
            ]:
                running.remove(other)
                seconds = rng.choice((-1.0, 0.0002, 0.001, 0.004)) if again else -1.0
                done.append((other[2], other[3], 1, None, seconds))
            took(c.succeed_many(node, run_id, done))

    took(c.submit("r", specs, policy=policy, max_retries=2))
    if rng.random() < 0.3:
        took(c.submit("s", specs[: len(specs) // 2 + 1], policy=policy, max_retries=2))
    settle()
    if again:
        took(c.submit("again", specs, policy=policy, max_retries=2))
        settle()
    return trace


def _case(build: str, seed: int, blocks: bool) -> list[Any]:
    rng = random.Random(seed)
    specs = workload(rng)
    sizes = [rng.choice((1.0, 2.0, 4.0)) for _ in range(rng.randint(1, 3))]
    nodes = {f"n{i}": {CPU: size, "mem": 10.0} for i, size in enumerate(sizes)}
    c = cluster(build == "pure", nodes, rng.choice((4, 8, 32)), rng.choice((None, None, 0.05)))
    c.sched._view.blocks = blocks
    return drive(c, seed, specs, rng.choice(("binpack", "spread", "first_fit")))


def _rounds(build: str, seed: int, blocks: bool) -> list[Any]:
    """W1's shape: independent tasks of one cost, run twice (the second's durations learned a
    task, so a block's seconds differ), on 1-3 nodes with a time budget."""
    rng = random.Random(seed)
    cost = rng.choice(COSTS[:3])
    specs = [TaskSpec(f"t{i}", (), cost, b"p") for i in range(rng.randint(20, 120))]
    nodes = {f"n{i}": {CPU: rng.choice((1.0, 2.0)), "mem": 10.0} for i in range(rng.randint(1, 3))}
    c = cluster(build == "pure", nodes, rng.choice((8, 32, 64)), rng.choice((0.002, 0.005, 0.05)))
    c.sched._view.blocks = blocks
    return drive(c, seed, specs, rng.choice(("binpack", "spread", "first_fit")), again=True)


# The chain is the reference: one build's (the compiled) serves both builds' blocks, a seed's
# chain driven once, not once a build (the two builds' chains wrote the same traces for every
# seed here; a drive was a quarter of the file's time). Every seed, both builds, half the seeds
# an item (odd and even: the items take about as long).
HALVES = pytest.mark.parametrize("half", [0, 1])


@HALVES
def test_blocks_write_what_the_task_by_task_chain_wrote(half: int) -> None:
    for seed in range(half, 60, 2):
        chain = _case("compiled", seed, False)
        for build in sorted(BUILDS):
            assert _case(build, seed, True) == chain, (build, seed)


@HALVES
def test_blocks_of_learned_durations_write_what_the_chain_wrote(half: int) -> None:
    for seed in range(half, 12, 2):
        chain = _rounds("compiled", seed, False)
        for build in sorted(BUILDS):
            assert _rounds(build, seed, True) == chain, (build, seed)


def test_the_pure_build_is_the_source() -> None:
    module = BUILDS["pure"]
    assert module.__file__ is not None and module.__file__.endswith(".py")


@pytest.mark.parametrize(
    "demand", [built_demand, pure(built_demand, "handoffd_demand_pure_blocks")]
)
def test_add_times_is_k_adds(demand: Any) -> None:
    rng = random.Random(5)
    for _ in range(500):
        kinds = rng.sample(["cpu", "mem", "gpu"], rng.randint(0, 3))
        cost = {k: rng.choice((0.1, 0.25, 1.0, 1e-10, 3.3)) for k in kinds}
        start = {k: rng.choice((0.0, 0.3, 1e-10, 2.0)) for k in rng.sample(["cpu", "mem"], 1)}
        start = {k: q for k, q in start.items() if q}
        k = rng.randint(0, 40)
        one_by_one = dict(start)
        for _ in range(k):
            demand.add_into(one_by_one, cost, 1)
        at_once = dict(start)
        demand.add_times(at_once, cost, k)
        assert list(at_once.items()) == list(one_by_one.items())
