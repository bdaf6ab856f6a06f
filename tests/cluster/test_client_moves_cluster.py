"""A client moves its submission to another node by itself (handoffd.client_moves), on an
in-process cluster of 3 (MemoryNetwork, real worker processes), and never runs it twice:

- the node took the run but its answer was lost: the client finds the run through another node
  (a standby) and follows it; no other node starts it;
- the node is gone before it took the run: the client waits until the others no longer see it
  ALIVE, then submits elsewhere; the run runs once;
- the node is leaving: it refuses the run and the client moves it.
Each task records every execution in a directory; the tests count them."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import handoffd
import handoffd.client
from handoffd.testing import ThreadedCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(180)


def noted(i: int, where: str, seconds: float, gate: str = "") -> int:
    """Note the execution, then take ``seconds``, or (``gate``) run until that file exists."""
    Path(where, f"{i}-{os.getpid()}-{time.monotonic_ns()}").touch()
    deadline = time.monotonic() + 120
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(seconds)
    return i * i


def noting_dag(
    width: int, where: Path, seconds: float = 0.0, node: str | None = None, gate: str = ""
) -> Any:
    dag = handoffd.DAG()
    for i in range(width):
        kwargs = {"i": i, "where": str(where), "seconds": seconds, "gate": gate}
        dag.add_function(handoffd.Function(id=f"t{i}", code=noted, kwargs=kwargs, node=node))
    return dag


def ran(where: Path) -> list[int]:
    return sorted(int(p.name.split("-")[0]) for p in where.iterdir())


def owners_of(cluster: ThreadedCluster, run_id: str) -> list[str]:
    """The nodes whose owner side holds the run (exactly one, unless it ran twice)."""
    return cluster.run(
        lambda: [n.name for n in cluster.nodes if n.owner.scheduler.term_of(run_id) is not None]
    )


def test_a_submission_whose_answer_was_lost_is_followed_not_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handoffd.client, "_SUBMIT_TIMEOUT", 2.0)
    with ThreadedCluster([{"cpu": 2}] * 3) as cluster:
        urls = [cluster.url(i) for i in range(3)]
        first = cluster.addresses()[0]
        with handoffd.connect(urls, timeout=2.0) as client:
            assert client.address == first
            # Node 0 takes the run, but none of its answers reaches this client.
            cluster.network.drop(first, client._conn._me, 1.0, both=False)
            healer = threading.Timer(3.0, cluster.network.heal)
            healer.start()
            try:
                run = client.submit(noting_dag(4, tmp_path))
            finally:
                healer.join()
            names = cluster.names()
            assert run.owner == names[0], (run.owner, names)
            assert run.wait(60).state == "DONE"
            assert run.results() == {f"t{i}": i * i for i in range(4)}
            assert owners_of(cluster, run.id) == [names[0]]  # nobody started it a second time
            assert ran(tmp_path) == [0, 1, 2, 3]


def test_a_run_taken_by_a_node_that_then_died_unheard_is_followed_to_its_standby(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node 0 takes the run and replicates it, its answer is lost, and it dies: the run lives on
    in its standbys. The client must find it there (``ask_cluster``), and a node holding the run
    as a standby must not start it as a new one (``ReplicationIO.redirect``)."""
    monkeypatch.setattr(handoffd.client, "_SUBMIT_TIMEOUT", 2.0)
    with ThreadedCluster([{"cpu": 2}] * 3) as cluster:
        urls = [cluster.url(i) for i in range(3)]
        first = cluster.addresses()[0]
        names = cluster.names()
        with handoffd.connect(urls, timeout=2.0) as client:
            cluster.network.drop(first, client._conn._me, 1.0, both=False)
            got: list[Any] = []
            submitter = threading.Thread(
                target=lambda: got.append(client.submit(noting_dag(4, tmp_path, 0.5)))
            )
            submitter.start()

            def replicated() -> bool:
                def check() -> bool:
                    runs = list(cluster.nodes[0].owner.scheduler.runs())
                    held = [set(n.replication.standby.replicas) for n in cluster.nodes[1:]]
                    return bool(runs) and all(runs[0] in h for h in held)

                return bool(cluster.run(check))

            wait_for(replicated, 30, what="node 0 took the run and both standbys hold it")
            cluster.crash(0)
            submitter.join(60)
            assert got, "submit() did not return"
            run = got[0]
            assert run.wait(60).state == "DONE"
            assert run.results() == {f"t{i}": i * i for i in range(4)}
            owners = cluster.run(
                lambda: [(n.name, r) for n in cluster.nodes[1:] for r in n.owner.scheduler.runs()]
            )
            # One run among the live nodes: the standby that took it over, no second start.
            assert len(owners) == 1 and owners[0] == (owners[0][0], run.id), owners
            assert owners[0][0] in names[1:], owners


def test_a_submission_to_a_node_gone_before_it_answered_runs_once_elsewhere(
    tmp_path: Path,
) -> None:
    with ThreadedCluster([{"cpu": 2}] * 3) as cluster:
        urls = [cluster.url(i) for i in range(3)]
        names = cluster.names()
        with handoffd.connect(urls, timeout=2.0) as client:
            assert client.address == cluster.addresses()[0]
            cluster.crash(0)  # no answer from node 0 from now on; the others see it ALIVE a while
            results = client.execute(noting_dag(4, tmp_path))
            assert results == {f"t{i}": i * i for i in range(4)}
            assert client.address != cluster.addresses()[0]
            run_ids = cluster.run(
                lambda: [r for n in cluster.nodes[1:] for r in n.owner.scheduler.runs()]
            )
            assert len(run_ids) == 1, run_ids
            assert owners_of(cluster, run_ids[0]) in ([names[1]], [names[2]])
            assert ran(tmp_path) == [0, 1, 2, 3]


def test_a_leaving_node_refuses_a_run_and_the_client_moves_it(tmp_path: Path) -> None:
    busy, moved = tmp_path / "busy", tmp_path / "moved"
    busy.mkdir()
    moved.mkdir()
    with ThreadedCluster([{"cpu": 2}] * 3) as cluster:
        names = cluster.names()
        with handoffd.connect(cluster.url(0), timeout=5.0) as client:
            wait_for(lambda: len(client.nodes()) == 3, 30, what="3 members known")
            # A task keeps node 0 draining (it is given 30 s to finish) while we submit: it runs
            # until the test opens its gate.
            gate = tmp_path / "gate"
            long = client.submit(noting_dag(1, busy, node=names[0], gate=str(gate)))
            wait_for(lambda: ran(busy) == [0], 30, what="the long task started")
            stopping = cluster.call(lambda: _start_stop(cluster.nodes[0]), timeout=10)
            wait_for(
                lambda: cluster.run(lambda: cluster.nodes[0]._stopping),
                10,
                what="node 0 leaving",
            )
            run = client.submit(noting_dag(3, moved))
            assert run.owner in names[1:], (run.owner, names)
            assert run.wait(60).state == "DONE"
            assert run.results() == {f"t{i}": i * i for i in range(3)}
            assert ran(moved) == [0, 1, 2]
            assert owners_of(cluster, run.id) == [run.owner]
            assert cluster.run(lambda: cluster.nodes[0]._stopping)  # still draining all along
            gate.touch()
            wait_for(lambda: cluster.run(stopping.done), 30, what="node 0 drained and stopped")
            assert ran(busy) == [0]
            del long


async def _start_stop(node: Any) -> Any:
    """Start node's graceful stop (drain 30 s) without waiting for it."""
    import asyncio

    return asyncio.get_running_loop().create_task(node.stop(grace=30.0))


def test_a_node_never_starts_a_run_id_it_holds_as_a_standby(tmp_path: Path) -> None:
    """The same submission (same run id) sent again: to a standby of the run it is answered with
    ``RunMoved`` to the owner (not started a second time); to the owner it is a retried
    submission. Sent by hand, as a client retrying after a lost answer would."""
    from handoffd.protocol import codec
    from handoffd.protocol import messages as m

    with ThreadedCluster([{"cpu": 2}] * 3) as cluster:
        names, addresses = cluster.names(), cluster.addresses()
        dag = noting_dag(3, tmp_path, 1.0)
        rows, payloads = dag.wire_tasks(
            policy="binpack", max_retries=3, outputs=None, allow_empty=False, packages=()
        )
        with handoffd.connect(cluster.url(0), timeout=10) as client:
            wait_for(lambda: len(client.nodes()) == 3, 30, what="3 members known")
            run = client.submit(dag)
            assert run.owner == names[0]

            def again(index: int) -> Any:
                msg = m.SubmitRun(
                    next(client._ids), run.id, codec.Rows(rows), 3, "binpack", None, ()
                )
                client._connect(addresses[index])
                reply, _ = client._request(msg, payloads, timeout=10)
                return reply

            def standbys() -> list[bool]:
                return cluster.run(
                    lambda: [run.id in n.replication.standby.replicas for n in cluster.nodes]
                )

            wait_for(lambda: standbys() == [False, True, True], 30, what="both standbys")
            for index in (1, 2):
                reply = again(index)
                assert isinstance(reply, m.RunMoved), reply
                assert (reply.owner, reply.owner_address) == (names[0], addresses[0])
            assert isinstance(again(0), m.RunAccepted)  # the owner: a retried submission
            assert owners_of(cluster, run.id) == [names[0]]
            assert run.wait(60).state == "DONE"
            assert ran(tmp_path) == [0, 1, 2]
