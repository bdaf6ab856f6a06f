"""The whole owner's scheduler, built as compiled (the ``.so`` of run, ready, demand, cluster_view and
durations) and as pure Python (the same package imported from its ``.py`` sources), answers every
event with the same instructions.

``tests/unit/test_scheduler_builds.py`` compares each compiled module with its ``.py`` on its own;
this drives both schedulers through one random run (a random DAG, policy, dispatch window, time
budget and node sizes; nodes that accept, queue, refuse, finish and fail tasks in a random order)
and compares what comes out at every step, the decisions included.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import scheduler_harness
from core_strategies import seeded, size
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheduler_harness import CPU, Cluster, dispatches

import handoffd.scheduler
from handoffd.scheduler import COMPILED
from handoffd.scheduler import events as ev
from handoffd.spec import TaskSpec

SCHEDULER_DIR = Path(handoffd.scheduler.__file__ or "").parent


class _FromSource(importlib.abc.MetaPathFinder):
    """Finds the compiled scheduler modules as their .py sources."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        package, _, leaf = name.rpartition(".")
        if package == "handoffd.scheduler" and leaf in COMPILED:
            return importlib.util.spec_from_file_location(name, SCHEDULER_DIR / f"{leaf}.py")
        return None


def _ours(name: str) -> bool:
    # (the events stay shared: both schedulers are fed the same event classes)
    return name.startswith("handoffd.scheduler.") and name != "handoffd.scheduler.events"


def pure_scheduler() -> dict[str, ModuleType]:
    """The scheduler package imported from source, by module name; ``sys.modules`` and the
    package's attributes are left as they were (the rest of the tests use the built one)."""
    saved = {name: sys.modules.pop(name) for name in [n for n in sys.modules if _ours(n)]}
    attributes = dict(vars(handoffd.scheduler))
    for name in saved:  # (``from handoffd.scheduler import history`` reads the attribute first)
        vars(handoffd.scheduler).pop(name.rpartition(".")[2], None)
    finder = _FromSource()
    sys.meta_path.insert(0, finder)
    try:
        importlib.import_module("handoffd.scheduler.owner")
        importlib.import_module("handoffd.scheduler.lane_entry")  # (not imported by the owner)
        importlib.import_module("handoffd.scheduler.retention")  # (the shell's, not the owner's)
        loaded = {name: sys.modules[name] for name in sys.modules if _ours(name)}
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if _ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
        for key in set(vars(handoffd.scheduler)) - set(attributes):
            delattr(handoffd.scheduler, key)
        for key, value in attributes.items():
            setattr(handoffd.scheduler, key, value)
    return loaded


PURE = pure_scheduler()


def test_the_twin_is_pure_python_and_the_built_one_is_not_disturbed() -> None:
    for leaf in COMPILED:
        module = PURE[f"handoffd.scheduler.{leaf}"]
        assert module.__file__ is not None and module.__file__.endswith(".py"), module.__file__
        built = importlib.import_module(f"handoffd.scheduler.{leaf}")
        assert built is not module and sys.modules[built.__name__] is built
    assert scheduler_harness.OwnerScheduler is not PURE["handoffd.scheduler.owner"].OwnerScheduler


def cluster(pure: bool, nodes: dict[str, Any], window: int, budget: float | None) -> Cluster:
    owner = (
        PURE["handoffd.scheduler.owner"]
        if pure
        else importlib.import_module("handoffd.scheduler.owner")
    )
    saved = scheduler_harness.OwnerScheduler
    scheduler_harness.OwnerScheduler = owner.OwnerScheduler  # type: ignore[misc]
    try:
        return Cluster(nodes, window=window, queue_seconds=budget)
    finally:
        scheduler_harness.OwnerScheduler = saved  # type: ignore[misc]


def workload(rng: random.Random) -> tuple[list[TaskSpec], dict[str, Any]]:
    """A run of 1-14 tasks: up to 3 earlier dependencies each, shared cost objects, a few pinned
    (one drawn seed, ``core_strategies.seeded``: a Hypothesis draw per field was most of the
    twin tests' time)."""
    n = size(rng, 1, 14)
    costs = [{}, {CPU: 0.5}, {CPU: 1.0}, {CPU: 2.0}, {CPU: 1.0, "mem": 5.0}]
    specs = []
    for i in range(n):
        deps = rng.sample(range(i), size(rng, 0, min(3, i)))
        specs.append(
            TaskSpec(
                f"t{i}",
                tuple(f"t{d}" for d in deps),
                rng.choice(costs),
                b"p",
                node=rng.choice([None, None, None, "n0"]),
                priority=rng.randint(0, 2),
            )
        )
    options = {
        "policy": rng.choice(["binpack", "spread", "first_fit"]),
        "max_retries": rng.randint(0, 2),
        "outputs": rng.choice([None, (f"t{n - 1}",)]),
    }
    return specs, options


def workloads() -> st.SearchStrategy[tuple[list[TaskSpec], dict[str, Any]]]:
    return seeded(workload)


def drive(
    c: Cluster,
    specs: list[TaskSpec],
    options: dict[str, Any],
    steps: Sequence[Any],
    run_id: str = "r",
) -> Any:
    """Submit, then in each step answer every dispatch, start what the nodes' queues can, and
    finish (or fail) one running attempt picked by the step; the instructions of every call."""
    trace: list[list[str]] = []

    def took(out: list[ev.Instruction]) -> None:
        trace.append([repr(i) for i in out])
        waiting.extend(dispatches(out))

    waiting: list[ev.Dispatch] = []
    running: list[tuple[str, str, str, int]] = []
    took(c.submit(run_id, specs, **options))
    for pick, fails, seconds, together in steps:
        while waiting:
            d = waiting.pop(0)
            answer = c.reply(d)
            for task_id, attempt in answer[1].accepted:  # type: ignore[attr-defined]
                if (d.run_id, task_id, attempt) in c.costs:  # (else queued on the node)
                    running.append((d.node, d.run_id, task_id, attempt))
            took(c.feed(*answer))
        for node in c.queue:
            running += [(node, *key) for key in c.start_queued(node)]
        if not running:
            break
        node, run_id, task_id, attempt = running.pop(pick % len(running))
        if fails:
            took(c.error(node, run_id, task_id, attempt))
        elif together > 1:  # more of the node's attempts in the same report: TasksSucceeded
            done = [(task_id, attempt, pick % 50, b"v", seconds)]
            for other in [r for r in running if r[0] == node][: together - 1]:
                running.remove(other)
                done.append((other[2], other[3], 7, None, -1.0))
            took(c.succeed_many(node, run_id, done))
        else:
            took(c.succeed(node, run_id, task_id, attempt, pick % 50, b"v", duration=seconds))
    status = c.sched.run_status(run_id)
    return trace, repr(status), dict(c.sched.counters), c.sched.outstanding("n0")


def twin_steps(rng: random.Random) -> list[tuple[int, bool, float, int]]:
    return [
        (
            rng.randint(0, 1000),
            rng.random() < 0.25,  # fails 1 in 4
            rng.choice([0.0001, 0.001, 0.05]),
            rng.choice([1, 1, 2, 4]),  # attempts reported together (as columns)
        )
        for _ in range(size(rng, 0, 40))
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    workload=workloads(),
    sizes=st.lists(st.sampled_from([1.0, 2.0, 4.0]), min_size=1, max_size=3),
    window=st.sampled_from([1, 4, 32]),
    budget=st.sampled_from([None, 0.005]),
    steps=seeded(twin_steps),
)
def test_both_builds_of_the_scheduler_answer_the_same(
    workload: Any, sizes: list[float], window: int, budget: float | None, steps: Any
) -> None:
    specs, options = workload
    nodes = {f"n{i}": {CPU: size, "mem": 10.0} for i, size in enumerate(sizes)}
    built = drive(cluster(False, nodes, window, budget), specs, options, steps)
    pure = drive(cluster(True, nodes, window, budget), specs, options, steps)
    assert built == pure
