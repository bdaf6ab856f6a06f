"""Priorities across owners on real nodes: an urgent run submitted to another owner while a
bulk run keeps the only cpu busy starts ahead of the bulk run's remaining tasks."""

from __future__ import annotations

import os
import sys
import threading
import time

import cloudpickle
import pytest

import handoffd
from handoffd.testing import ThreadedCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)


def mark(path, name, seconds):
    with open(path, "a") as f:
        f.write(name + "\n")
    time.sleep(seconds)
    return name


def held(path, name, gates, slots, least):
    """``mark`` for a task that ends when the test says: once ``least`` seconds passed (its
    measured length stays far above what the owner queues or chains behind a running task, as
    the timed tasks' 1 s did) and the gate of its wave (its start's rank // ``slots``) exists."""
    start = time.monotonic()
    with open(path, "a") as f:
        f.write(name + "\n")
    gate = os.path.join(gates, str(started(path).index(name) // slots))
    time.sleep(least)
    deadline = start + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.005)
    return name


def opened(gates, *waves):
    for wave in waves:
        open(os.path.join(gates, str(wave)), "w").close()


def started(path) -> list[str]:
    try:
        with open(path) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def test_an_urgent_run_of_another_owner_starts_ahead_of_a_bulk_queue(tmp_path):
    log = str(tmp_path / "starts")
    bulk_n = 16
    # n0 executes everything (the only cpu); n1 owns the urgent run and runs nothing.
    with ThreadedCluster([{"cpu": 1, "memory": 1000}, {"memory": 1000}]) as cluster:
        a0, a1 = cluster.url(0), cluster.url(1)
        with handoffd.connect(a0, timeout=10) as bulk_client:
            bulk = handoffd.DAG()
            for i in range(bulk_n):
                bulk.add_function(
                    handoffd.Function(id=f"b{i}", code=mark, extra_args=[log, f"b{i}", 0.05])
                )
            run = bulk_client.submit(bulk)
            wait_for(lambda: len(started(log)) >= 2, 30, 0.01, what="the bulk run started")
            result: dict[str, object] = {}

            def urgent() -> None:
                with handoffd.connect(a1, timeout=10) as c:
                    dag = handoffd.DAG().add_function(
                        handoffd.Function(id="u", code=mark, extra_args=[log, "urgent", 0.0])
                    )
                    result["before"] = len(started(log))
                    result.update(c.execute(dag, priority=100))

            t = threading.Thread(target=urgent)
            t.start()
            run.wait()
            t.join(60)
            assert result["u"] == "urgent"
        order = started(log)
        # It may find a bulk task running and one or two dispatched to n0 ahead of it (one
        # more may start while its submission travels), never the rest of the bulk run.
        before = result["before"]
        assert isinstance(before, int)
        assert order.index("urgent") <= before + 3, (before, order)
        assert sorted(order) == sorted([f"b{i}" for i in range(bulk_n)] + ["urgent"])


def test_a_run_on_one_owner_is_not_wedged_by_another_owners_task_on_its_node(tmp_path):
    """The multi-owner wedge: n0's own view of n0 followed only the reports of n0's runs, so when
    the last task to end on n0 was n1's run's, n0 kept seeing its cpu taken and its READY tasks
    waited forever on an idle node. (Now the owner follows its own ledger.)"""
    log = str(tmp_path / "starts")
    with ThreadedCluster([{"cpu": 1, "memory": 1000}, {"memory": 1000}]) as cluster:
        a0, a1 = cluster.url(0), cluster.url(1)
        with handoffd.connect(a0, timeout=10) as c0, handoffd.connect(a1, timeout=10) as c1:
            for round_ in range(3):
                # n1's one task takes the cpu; n0's run is submitted while it runs
                other = handoffd.DAG().add_function(
                    handoffd.Function(id="o", code=mark, extra_args=[log, f"o{round_}", 0.3])
                )
                foreign = c1.submit(other)
                wait_for(lambda r=round_: f"o{r}" in started(log), 30, 0.01, what="n1's task")
                mine = handoffd.DAG()
                for i in range(3):
                    mine.add_function(
                        handoffd.Function(
                            id=f"m{i}", code=mark, extra_args=[log, f"m{round_}.{i}", 0.0]
                        )
                    )
                out = c0.execute(mine, timeout=20)
                assert sorted(out) == ["m0", "m1", "m2"]
                foreign.wait()


def test_run_priority_must_be_an_integer():
    with ThreadedCluster([{"cpu": 1, "memory": 1000}]) as cluster:
        with handoffd.connect(cluster.address, timeout=10) as c:
            dag = handoffd.DAG().add_function(handoffd.Function(id="x", code=mark))
            with pytest.raises(handoffd.ValidationError, match="priority must be an integer"):
                c.submit(dag, priority="high")  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["binpack", "spread", "first_fit"])
@pytest.mark.parametrize("owner", ["same", "other"])
def test_an_urgent_run_starts_ahead_of_queued_bulk_tasks_under_each_policy(tmp_path, policy, owner):
    """Nodes of 1, 2 and 2 cpu (5 slots) all busy with a bulk run's second wave; an urgent run of
    5 tasks with a higher priority, from the bulk run's owner or another, starts on the next 5
    slots to free, ahead of every bulk task still waiting. From another owner it did not: that
    owner queued one task per node (its budget of queued work) and held the rest until one of
    its tasks ended, while the bulk run's owner refilled the other freed slots with bulk tasks."""
    log, gates = str(tmp_path / "starts"), str(tmp_path / "gates")
    os.mkdir(gates)
    slots, bulk_n, least = 5, 15, 0.1
    capacities = [{"cpu": c, "memory": 1000} for c in (1, 2, 2)]
    with ThreadedCluster(capacities) as cluster:
        a0, a1 = cluster.url(0), cluster.url(1 if owner == "other" else 0)
        with handoffd.connect(a0, timeout=10) as c0, handoffd.connect(a1, timeout=10) as c1:
            # Every slot's worker process started (they start lazily), so the waves align; and
            # ``held`` has a measured length (0.2 s, open gate) before the bulk run is placed.
            warm_gates = str(tmp_path / "warm")
            os.mkdir(warm_gates)
            opened(warm_gates, 0)
            warm = handoffd.DAG()
            for i in range(slots):
                warm.add_function(
                    handoffd.Function(
                        id=f"w{i}",
                        code=held,
                        extra_args=[log + ".warm", f"w{i}", warm_gates, 99, 0.2],
                    )
                )
            c0.execute(warm, timeout=60)
            # Each task ends when the test opens its wave's gate: no slot frees meanwhile.
            bulk = handoffd.DAG()
            for i in range(bulk_n):
                bulk.add_function(
                    handoffd.Function(
                        id=f"b{i}", code=held, extra_args=[log, f"b{i}", gates, slots, least]
                    )
                )
            run = c0.submit(bulk, policy=policy)
            wait_for(lambda: len(started(log)) >= slots, 30, 0.01, what="a first wave")
            opened(gates, 0)
            wait_for(lambda: len(started(log)) >= 2 * slots, 30, 0.01, what="a second wave")
            urgent = handoffd.DAG()
            for i in range(slots):
                urgent.add_function(
                    handoffd.Function(
                        id=f"u{i}", code=held, extra_args=[log, f"u{i}", gates, slots, least]
                    )
                )
            before = len(started(log))
            hurry = c1.submit(urgent, policy=policy, priority=10)

            def arrived() -> bool:
                # Every urgent task READY in its owner's queue or accepted by an executor: what
                # the second wave's 1 s gave its submission to travel.
                def where() -> bool:
                    state = next(r for n in cluster.nodes if (r := n.scheduler.run_state(hurry.id)))
                    held_by = {
                        k[1]
                        for n in cluster.nodes
                        for k in n.executor.state.tasks
                        if k[0] == hurry.id
                    }
                    return all(
                        t.state == "READY" or (t.state == "ASSIGNED" and tid in held_by)
                        for tid, t in state.tasks.items()
                    )

                return bool(cluster.run(where))

            wait_for(arrived, 30, 0.01, what="the urgent run at its owner or the executors")
            # The second wave ends: each slot frees once, and takes the next task.
            opened(gates, 1)
            wait_for(lambda: len(started(log)) >= 3 * slots, 30, 0.01, what="a third wave")
            opened(gates, 2, 3)
            assert hurry.wait(60).state == "DONE"
            out = hurry.results()
            assert sorted(out) == [f"u{i}" for i in range(slots)]
            run.wait()
        order = started(log)
        assert sorted(order) == sorted([f"b{i}" for i in range(bulk_n)] + list(out))
        last_urgent = max(order.index(f"u{i}") for i in range(slots))
        bulk_ahead = sum(name.startswith("b") for name in order[:last_urgent])
        # (one bulk task of slack: a second-wave task started late on a loaded machine)
        assert bulk_ahead <= before + 1, f"{before} started before: {' '.join(order)}"
