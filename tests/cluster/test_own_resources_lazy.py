"""Our free resources reach membership lazily (issue 13, W3): a ledger change (two per task: claim
and release) no longer runs membership at once. Membership takes the latest figure before it
handles its next event (a tick at the latest), so what it gossips is the ledger as it is then;
``ListNodes`` takes it before answering; our own scheduler still hears of every change at once."""

from __future__ import annotations

import pytest

import handoffd
from handoffd.membership import swim
from handoffd.testing import ThreadedCluster, wait_for

pytestmark = pytest.mark.timeout(120)

_NODES = [{"cpu": 2, "memory": 1000}, {"cpu": 2, "memory": 1000}]


def _free_cpu(node, name: str) -> float:
    member = node.membership.me if node.name == name else node.membership.get(name)
    return float(member.free.get("cpu", -1.0))


def _claim(node, cpu: float) -> None:
    """A task's claim as the executor makes it: the ledger, then the publish it schedules."""
    assert node.ledger.try_claim({"cpu": cpu}) is not None
    node._publish_resources()


def test_a_ledger_change_waits_for_membership_s_next_event_and_is_gossiped() -> None:
    with ThreadedCluster(_NODES) as cluster:
        n0, n1 = cluster.nodes
        wait_for(
            lambda: cluster.run(lambda: n1.membership.get(n0.name) is not None),
            30,
            what="the two nodes know each other",
        )

        def claim_twice() -> tuple[float, bool, int]:
            version = n0.membership.me.resource_version
            _claim(n0, 0.5)
            _claim(n0, 1.0)
            return _free_cpu(n0, n0.name), n0._own_stale, version

        before, stale, version = cluster.run(claim_twice)
        assert stale and before == 2.0, "membership ran at once on a ledger change"

        def tick() -> tuple[float, bool, int]:
            n0._run_membership(swim.Tick(0.0))
            return _free_cpu(n0, n0.name), n0._own_stale, n0.membership.me.resource_version

        after, stale, new_version = cluster.run(tick)
        assert (after, stale) == (0.5, False)
        assert new_version == version + 1, "two ledger changes are one update of ours"
        wait_for(
            lambda: cluster.run(lambda: _free_cpu(n1, n0.name)) == 0.5,
            30,
            what="the peer heard our free cpu as the ledger has it",
        )
        cluster.run(lambda: n0.ledger.release({"cpu": 1.5}, []))


def test_list_nodes_answers_with_the_ledger_as_it_is_now() -> None:
    with ThreadedCluster(_NODES[:1]) as cluster:
        (n0,) = cluster.nodes
        with handoffd.connect(cluster.url(0), timeout=10) as client:
            cluster.run(lambda: _claim(n0, 1.5))
            assert client.nodes()[n0.name].free["cpu"] == 0.5
            cluster.run(lambda: (n0.ledger.release({"cpu": 1.5}, []), n0._publish_resources()))
            assert client.nodes()[n0.name].free["cpu"] == 2.0
