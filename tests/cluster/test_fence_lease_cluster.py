"""Dispatch leases (replication/lease.py) on an in-process cluster of 5 (MemoryNetwork, real
worker processes): the rare partition that quorum fencing misses, made deterministic.

Cut 2 nodes off from 3 while a run owned on the small side runs. The small side's view lags
behind, as it does when it sees the far side go DEAD one member at a time: two far members DEAD
while the third is still ALIVE here is "3 of 5 reachable", no fence, and the DEAD verdicts reach
the owner, which used to place the lost tasks again on its own side while the far side's takeover
ran them too. Here the small side's membership is frozen (no probes, no timers) and the two
verdicts are handed to it as gossip, in that order; later its view catches up (it is fenced), the
far side takes the run over, the partition heals and the run ends. No task that ran on the far
side may run on the small side: the owner's lease lapsed (a standby on the far side stopped
answering), so it dispatched nothing.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import handoffd
from handoffd.config import MembershipConfig
from handoffd.membership import swim
from handoffd.protocol import messages as m
from handoffd.testing import ThreadedCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(180)


def record(i: int, where: str, seconds: float) -> int:
    Path(where, f"{i}-{os.getpid()}-{time.monotonic_ns()}").touch()
    time.sleep(seconds)
    return i * i


def dag(width: int, where: str, seconds: float) -> handoffd.DAG:
    dag = handoffd.DAG()
    for i in range(width):
        kwargs = {"i": i, "where": where, "seconds": seconds}
        dag.add_function(handoffd.Function(id=f"t{i}", code=record, args=[], kwargs=kwargs))
    return dag


def executions(where: Path) -> list[tuple[int, int]]:
    """(task index, worker pid) of every execution started."""
    return [(int(p.name.split("-")[0]), int(p.name.split("-")[1])) for p in where.iterdir()]


def freeze(node: Any) -> None:
    """The node's membership takes no more steps of its own (no probes, no suspicion timers,
    no gossip rounds): its view stays as it is but for what it is handed."""
    run = node._run_membership

    def frozen(event: Any) -> None:
        if not isinstance(event, swim.Tick):
            run(event)

    node._run_membership = frozen
    node.frozen_membership = run


def thaw(node: Any) -> None:
    node._run_membership = node.frozen_membership


def told_dead(node: Any, by: str, name: str) -> None:
    """``by`` gossips to ``node`` that ``name`` is DEAD (the verdict its own probes would reach)."""
    state = node.membership.get(name)
    gossip = m.Gossip((replace(state, status=m.DEAD),))
    node.frozen_membership(swim.Received(by, None, gossip))


def test_a_minority_owner_whose_view_lags_holds_its_dispatches(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    # dead_reap_after 240 s: a DEAD member leaves the quorum's base after 20 s (reap / 12). The
    # two far members told DEAD below must stay in it until the owner's probes find the third
    # unreachable after the thaw (2 of 5 reachable: fenced); once they left (5 s, with 60), the
    # base was 3 and 2 of 3 reachable never fenced, which a loaded machine's slow probing hit.
    membership = replace(MembershipConfig.for_tests(), dead_reap_after=240.0)
    with ThreadedCluster([{"cpu": 2}] * 5, membership=membership) as cluster:
        network = cluster.network
        nodes = cluster.nodes
        addresses = cluster.addresses()
        names = cluster.run(lambda: [n.name for n in nodes])
        big, small = addresses[:3], addresses[3:]
        owner = nodes[3]

        def small_view() -> tuple[bool, int, list[int]]:
            statuses = [owner.membership.get(name).status for name in names[:3]]
            return owner.quorum.fenced, owner.quorum.reachable, statuses

        with handoffd.connect(cluster.url(3), timeout=10) as client:
            run = client.submit(dag(10, str(runs), 2.0))
            wait_for(lambda: len(executions(runs)) == 10, 30, what="all 10 tasks started")
            pid_node = cluster.run(
                lambda: {pid: n.address for n in nodes for pid in n.pool.worker_pids()}
            )
            small_pids = {pid for pid, address in pid_node.items() if address in small}
            on_big = {i for i, pid in executions(runs) if pid_node.get(pid) in big}
            assert on_big, f"no task placed on the big side: {executions(runs)} {pid_node}"

            cluster.run(lambda: [freeze(n) for n in nodes[3:]])
            for a in big:
                for b in small:
                    network.drop(a, b, 1.0)
            time.sleep(0.3)  # the fastest DEAD verdict on the far side comes about this late
            for name in names[:2]:  # one far member at a time, the third still ALIVE here
                cluster.run(lambda name=name: told_dead(owner, names[4], name))
            assert cluster.run(small_view) == (False, 3, [m.DEAD, m.DEAD, m.ALIVE])
            # The small side's own tasks end (2 s) and free its cpus for what it thinks lost;
            # the far side takes the run over meanwhile.
            time.sleep(3.0)
            again = [(i, p) for i, p in executions(runs) if i in on_big and p in small_pids]
            assert not again, f"the minority owner ran the big side's tasks again: {again}"
            assert cluster.run(lambda: run.id in owner.scheduler._ready.held)

            # The view catches up (the third far member is found unreachable): fenced; then heal.
            assert cluster.run(lambda: len(owner.quorum.base)) == 5  # (the two DEAD still in it)
            cluster.run(lambda: [thaw(n) for n in nodes[3:]])
            wait_for(lambda: cluster.run(lambda: owner.quorum.fenced), 30, what="owner fenced")
            # The heal only once the far side owns the run: on a loaded machine its takeover
            # could still be pending at a heal right after the fence, and the small side, still
            # the owner, placed the tasks of the far members it held DEAD again after the heal.
            wait_for(
                lambda: cluster.run(
                    lambda: any(n.scheduler.run_state(run.id) is not None for n in nodes[:3])
                ),
                60,
                what="the far side took the run over",
            )
            network.heal()
            wait_for(
                lambda: not any(cluster.run(lambda: [n.quorum.fenced for n in nodes])),
                30,
                what="every node unfenced after the heal",
            )
            assert run.wait(90).state == "DONE"
            assert run.results() == {f"t{i}": i * i for i in range(10)}
            again = [(i, p) for i, p in executions(runs) if i in on_big and p in small_pids]
            assert not again, f"the minority owner ran the big side's tasks again: {again}"
            # Per task, the small side ran at most its first attempt of it (none of the others).
            on_small = Counter(i for i, p in executions(runs) if p in small_pids)
            assert set(on_small) <= set(range(10)) - on_big, on_small
            assert set(on_small.values()) <= {1}, on_small


def step(*previous: int, seconds: float = 0.2) -> int:
    time.sleep(seconds)
    return sum(previous) + 1


def test_a_crashed_standby_holds_its_runs_only_until_its_host_refuses(tmp_path: Path) -> None:
    # dead_reap_after 600 s: a DEAD member leaves the base after 50 s (evict_after) by itself;
    # the run goes on long before that because the crashed node's address refuses connections.
    membership = replace(MembershipConfig.for_tests(), dead_reap_after=600.0)
    with ThreadedCluster([{"cpu": 1}] * 5, membership=membership) as cluster:
        nodes = cluster.nodes
        names = cluster.run(lambda: [n.name for n in nodes])
        owner = nodes[0]
        chain = handoffd.DAG()
        for i in range(12):  # one after another: every step is a new dispatch
            chain.add_function(
                handoffd.Function(id=f"s{i}", code=step, args=[f"s{i - 1}"] * (i > 0))
            )
        with handoffd.connect(cluster.url(0), timeout=10) as client:
            run = client.submit(chain)
            wait_for(
                lambda: cluster.run(lambda: len(owner.replication.standbys(run.id)) == 2),
                30,
                what="the run replicated to two standbys",
            )
            wait_for(lambda: run.status().counts.get("DONE", 0) >= 2, 30, what="2 steps done")
            standby = cluster.run(lambda: owner.replication.standbys(run.id)[0])
            cluster.crash(names.index(standby))
            wait_for(
                lambda: cluster.run(lambda: standby not in owner.quorum.base),
                30,
                what="the crashed standby out of the owner's base (its address refuses)",
            )
            assert run.wait(30).state == "DONE"
            assert run.results()["s11"] == 12
            leases = cluster.run(lambda: owner.replication.leases)
            assert leases.leases.holds >= 1  # it was held while the standby did not answer
            assert cluster.run(leases.departed) == set()
