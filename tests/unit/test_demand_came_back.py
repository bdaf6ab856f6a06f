"""A success table's demand leaving its node at once (``Demand.came_back_all``): both builds, over
random went-out / came-back sequences, against ``came_back`` called for each task in order (the
books as the owner kept them one by one). The node's outstanding demand (its kinds, their order
and their floats bit for bit), its expected work (the same, and the dict's order of nodes) and
each task's charge must be the same after every table."""

from __future__ import annotations

import random
from typing import Any

import pytest
from test_scheduler_builds import pure_build

from handoffd.scheduler import demand as built_demand
from handoffd.scheduler.room_index import NodeState
from handoffd.scheduler.run import RunState
from handoffd.spec import RunOptions, TaskSpec

pure_demand = pure_build("demand")

NODES = ("n0", "n1", "n2")
# (equal costs as distinct dicts, a shared one, a fraction that leaves float residue, none, a
# kind at zero: the groups ``came_back_all`` takes back at once and the ones it must not merge)
SHARED = {"cpu": 1.0}
COSTS: tuple[Any, ...] = (
    SHARED,
    SHARED,
    "fresh",
    {"cpu": 0.5, "memory": 7.5},
    {"cpu": 0.1},
    {"cpu": 0.3, "memory": 0.1},
    {},
    {"cpu": 0.0},
)


def _books(module: Any, rng: random.Random) -> Any:
    demand = module.Demand(rng.choice([None, 2.0]), rng.choice([1, 4]))
    for name in NODES:
        capacity = {"cpu": float(rng.randint(1, 4)), "memory": 16.0}
        demand.nodes[name] = NodeState(name, name, True, dict(capacity), capacity, 1)
    return demand


def _state(demand: Any, recs: dict[str, Any]) -> Any:
    return (
        [(node, repr(list(load.items()))) for node, load in demand.outstanding.items()],
        repr(list(demand.work.items())),
        sorted(demand._dirty_rooms),
        # (the charges in the run's task order, the same in both drives: one repr of the list
        # writes each float as repr does; a repr and a tuple a task were most of the test's time)
        repr([rec.charge for rec in recs.values()]),
    )


def _run(seed: int, copy: int) -> RunState:
    rng = random.Random(seed)
    specs = []
    for i in range(60):
        cost = rng.choice(COSTS)
        cost = {"cpu": 1.0} if cost == "fresh" else cost
        specs.append(TaskSpec(f"t{i}", (), cost, f"f{rng.randrange(3)}".encode()))
    return RunState(f"r{copy}", specs, RunOptions())


def drive(module: Any, seed: int, batched: bool) -> list[Any]:
    rng = random.Random(seed)
    demand = _books(module, rng)
    run = _run(seed, 0)
    recs = run.tasks
    out: dict[str, list[str]] = {n: [] for n in NODES}
    idle = list(recs)
    trace: list[Any] = []
    for _ in range(120):
        roll = rng.random()
        if roll < 0.5 and idle:
            for _ in range(rng.randint(1, 8)):
                if not idle:
                    break
                task = idle.pop(rng.randrange(len(idle)))
                node = rng.choice(NODES)
                demand.went_out(node, recs[task])
                out[node].append(task)
        elif roll < 0.6:
            # a duration learned: later dispatches of that key carry another charge
            rec = recs[rng.choice(list(recs))]
            demand.durations.observe_keys(rec.duration_key, rec.shape_key, rng.random() * 0.2)
        else:
            node = rng.choice(NODES)
            if not out[node]:
                continue
            # a table: some of the node's tasks in report order (not sending order), maybe all
            k = rng.randint(1, len(out[node]))
            table = rng.sample(out[node], k) if rng.random() < 0.5 else out[node][:k]
            for task in table:
                out[node].remove(task)
                idle.append(task)
            if batched:
                demand.came_back_all(node, [recs[t] for t in table])
            else:
                for task in table:
                    demand.came_back(node, recs[task])
        trace.append(_state(demand, recs))
    return trace


@pytest.mark.parametrize("module", [built_demand, pure_demand], ids=["built", "pure"])
@pytest.mark.parametrize("seed", range(100))
def test_a_table_taken_back_at_once_leaves_the_books_of_its_tasks_one_by_one(
    module: Any, seed: int
) -> None:
    assert drive(module, seed, True) == drive(module, seed, False)


def test_an_empty_table_changes_nothing() -> None:
    demand = _books(built_demand, random.Random(0))
    demand._dirty_rooms.clear()
    demand.came_back_all("n0", [])
    assert demand.outstanding == {} and demand.work == {} and not demand._dirty_rooms
