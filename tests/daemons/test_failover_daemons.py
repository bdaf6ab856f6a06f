"""Owner failover with real daemons on loopback (DESIGN.md 3.5, issue 6): kill -9 the node that owns a
2,000-task run at ~30 % progress; the client still gets every correct result under the same run id.

Each test starts 3-4 ``handoffd start`` processes (``--seed``, ``--no-mdns``, random loopback ports,
killed by PID in teardown, their logs shown when the test failed). The DAG: 20 layers of 100 tasks
of 5 ms; task (l, i) adds the values of (l-1, i) and (l-1, i+1) to its own constant, so a wrong,
lost or doubled result changes the checksum.
"""

from __future__ import annotations

import sys

import cloudpickle
import pytest

import handoffd
from handoffd.testing import DaemonCluster, layered_dag, layered_expected, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(300)

LAYERS, WIDTH, SLEEP = 20, 100, 0.005


def build_dag(layers: int = LAYERS, width: int = WIDTH) -> handoffd.DAG:
    return layered_dag(layers, width, SLEEP)


def expected(layers: int = LAYERS, width: int = WIDTH) -> dict[str, int]:
    return layered_expected(layers, width)


def start_cluster(cluster: DaemonCluster, count: int) -> list:
    first = cluster.start(cpu=2, memory=2000)
    daemons = [first] + [
        cluster.start(cpu=2, memory=2000, seeds=[first.address]) for _ in range(count - 1)
    ]
    with handoffd.connect(first.address, timeout=10) as client:
        wait_for(
            lambda: sum(n.status == "ALIVE" for n in client.nodes().values()) == count,
            30,
            0.1,
            what=f"{count} daemons ALIVE",
        )
    return daemons


def kill_at(run, fraction: float, victims: list, total: int) -> None:
    def progressed() -> bool:
        return run.status().counts.get("DONE", 0) >= fraction * total

    wait_for(progressed, 120, 0.02, what=f"{fraction:.0%} progress")
    for daemon in victims:
        daemon.kill()


def check(results: dict, run_id: str, run) -> None:
    assert run.id == run_id
    want = expected()
    assert len(results) == len(want)
    bad = {k: (results.get(k), v) for k, v in want.items() if results.get(k) != v}
    assert not bad, f"{len(bad)} wrong results, e.g. {list(bad.items())[:3]}"


def owner_daemon(daemons: list, run) -> object:
    return next(d for d in daemons if d.name == run.owner)


@pytest.mark.timeout(300)
def test_owner_killed_client_on_owner_gets_every_result(daemons: DaemonCluster) -> None:
    nodes = start_cluster(daemons, 3)
    with handoffd.connect(nodes[0].address, timeout=5) as client:
        run = client.submit(build_dag())
        run_id = run.id
        owner = owner_daemon(nodes, run)
        assert owner is nodes[0]
        # submit returns once ONE standby holds the run; the second may still be pulling it
        wait_for(lambda: len(run.status().standbys) == 2, 30, 0.02, what="two standbys")
        status = run.status()
        assert status.owner == owner.name and status.term == 0
        assert len(status.standbys) == 2
        kill_at(run, 0.3, [owner], LAYERS * WIDTH)
        final = run.wait(timeout=120)
        assert final.state == "DONE"
        assert final.owner != owner.name and final.term == 1
        assert final.owner in status.standbys
        check(run.results(), run_id, run)


@pytest.mark.timeout(300)
def test_owner_and_a_worker_killed_together(daemons: DaemonCluster) -> None:
    nodes = start_cluster(daemons, 4)
    with handoffd.connect(nodes[0].address, timeout=5) as client:
        run = client.submit(build_dag())
        status = run.status()
        owner = owner_daemon(nodes, run)
        # Kill the owner and its *first* standby: the second standby must take over.
        first_standby = next(d for d in nodes if d.name == status.standbys[0])
        kill_at(run, 0.3, [owner, first_standby], LAYERS * WIDTH)
        final = run.wait(timeout=120)
        assert final.state == "DONE"
        assert final.owner == status.standbys[1]
        check(run.results(), run.id, run)


@pytest.mark.timeout(300)
def test_client_on_another_node_follows_the_run(daemons: DaemonCluster) -> None:
    nodes = start_cluster(daemons, 3)
    with handoffd.connect(nodes[0].address, timeout=5) as submitter:
        run = submitter.submit(build_dag())
        owner = owner_daemon(nodes, run)
        other = next(d for d in nodes if d is not owner)
        with handoffd.connect(other.address, timeout=5) as follower:
            followed = follower.run(run.id)  # redirected to the owner
            assert followed.status().owner == owner.name
            kill_at(followed, 0.3, [owner], LAYERS * WIDTH)
            final = followed.wait(timeout=120)
            assert final.state == "DONE" and final.term == 1
            check(followed.results(), run.id, followed)
