"""Several owners at once on in-process nodes, at random: every run finishes with the right results.

The wedge this guards against (issue 13): two owners active at once -- one client looping 1-task
DAGs through node A, another bigger DAGs through node B -- and runs submitted to A stayed READY
forever although every cpu was free (A's view of itself followed only its own runs' reports).
Here each client thread drives its own owner with a random mix of shapes (1-task loops, fan-outs,
chains, priorities, policies, short sleeps), seeded, on nodes of unequal size; a run that does not
finish within its deadline fails the test with the seed, the node states and what is left.
"""

from __future__ import annotations

import random
import sys
import threading
import time

import cloudpickle
import pytest

import handoffd
from handoffd.testing import ThreadedCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(240)

POLICIES = ("binpack", "spread", "first_fit")


def nap(seconds, *parts):
    time.sleep(seconds)
    return seconds + sum(parts)


def _dag(rng: random.Random, names: list[str]) -> tuple[handoffd.DAG, dict[str, float]]:
    """A random DAG of short sleeps and the results it must give; some functions pinned to a
    random node (the owner's own among them: its view of itself must follow every owner's work
    there, not only its own)."""
    shape = rng.choice(["one", "one", "fan", "chain", "diamond"])
    dag = handoffd.DAG()
    want: dict[str, float] = {}

    def add(fid: str, seconds: float, deps: list[str], priority: int) -> None:
        pin = rng.choice(names) if rng.random() < 0.4 else None
        dag.add_function(
            handoffd.Function(
                id=fid, code=nap, args=deps, extra_args=[seconds], priority=priority, node=pin
            )
        )
        want[fid] = seconds + sum(want[d] for d in deps)

    def secs() -> float:
        return rng.choice([0.0, 0.001, 0.005, 0.02, 0.05])

    prio = rng.choice([0, 0, 1, 5])
    if shape == "one":
        add("one", secs(), [], prio)
    elif shape == "fan":
        for i in range(rng.randint(2, 12)):
            add(f"f{i}", secs(), [], prio)
    elif shape == "chain":
        prev: list[str] = []
        for i in range(rng.randint(2, 6)):
            add(f"c{i}", secs(), prev, prio)
            prev = [f"c{i}"]
    else:
        add("top", secs(), [], prio)
        width = rng.randint(2, 5)
        for i in range(width):
            add(f"m{i}", secs(), ["top"], prio)
        add("bottom", secs(), [f"m{i}" for i in range(width)], prio)
    return dag, want


def _client_loop(url: str, names: list[str], seed: int, runs: int, failures: list[str]) -> None:
    rng = random.Random(seed)
    try:
        with handoffd.connect(url, timeout=10) as client:
            for i in range(runs):
                dag, want = _dag(rng, names)
                options = {
                    "policy": rng.choice(POLICIES),
                    "priority": rng.choice([0, 0, 10]),
                    "timeout": 30.0,
                }
                if rng.random() < 0.3:  # submit and follow, or execute in one call
                    run = client.submit(dag, **options)
                    run.wait()
                    out = run.results()
                    run.release()
                else:
                    out = client.execute(dag, **options)
                got = {k: round(v, 6) for k, v in out.items()}
                expect = {k: round(v, 6) for k, v in want.items()}
                if got != expect:
                    failures.append(f"seed {seed} run {i}: {got} != {expect}")
                    return
    except Exception as exc:  # noqa: BLE001 (reported with the seed)
        failures.append(f"seed {seed}: {type(exc).__name__}: {exc}")


def _state(cluster: ThreadedCluster) -> str:
    def look(node: object) -> str:
        sched = node.scheduler  # type: ignore[attr-defined]
        runs = {r: dict(sched.run_status(r).counts) for r in sched.runs() if sched.run_status(r)}
        view = {n: (s.free, s.version) for n, s in sched.nodes().items()}
        ledger = node.ledger  # type: ignore[attr-defined]
        return f"runs {runs} view {view} ledger {ledger.free} v{ledger.version}"

    return "\n".join(f"{n.name}: {cluster.run(look, n)}" for n in cluster.nodes)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_owners_at_once_never_wedge(seed: int) -> None:
    rng = random.Random(seed)
    cpus = rng.choice([[1, 2, 2], [1, 1], [2, 1, 1]])
    capacities = [{"cpu": c, "memory": 1000} for c in cpus]
    with ThreadedCluster(capacities) as cluster:
        failures: list[str] = []
        threads = []
        for k in range(len(cpus)):  # one owner per node, each with its own client
            runs = rng.randint(6, 14)
            t = threading.Thread(
                target=_client_loop,
                args=(cluster.url(k), cluster.names(), seed * 100 + k, runs, failures),
                daemon=True,
            )
            threads.append(t)
            t.start()
        for t in threads:
            t.join(120)
        stuck = [t.name for t in threads if t.is_alive()]
        assert not stuck and not failures, f"{failures} stuck={stuck}\n{_state(cluster)}"
