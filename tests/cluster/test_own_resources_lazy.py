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


def _publish_own_handles(node) -> int:
    return sum(
        1
        for handle in node._loop._ready  # (asyncio's ready queue: callbacks of the next turn)
        if getattr(handle._callback, "__func__", None) is type(node)._publish_own
    )


def test_our_owner_hears_our_ledger_after_our_waiting_answers_with_no_callback_of_its_own() -> None:
    """A ledger change published while answers of ours wait in ``_local``: the owner is told
    after they are delivered (they mostly carry it: then nothing is fed), by that delivery, not
    by a callback of its own; with nothing waiting, one callback later as before."""
    from handoffd.protocol import messages as m

    with ThreadedCluster(_NODES[:1]) as cluster:
        (n0,) = cluster.nodes
        told: list[object] = []

        def setup() -> None:
            owner = n0.owner
            flush, own = owner.flush, owner.own_resources
            owner.flush = lambda: (told.append("flush"), flush())[1]
            owner.own_resources = lambda free, v: (told.append((free["cpu"], v)), own(free, v))[1]

        cluster.run(setup)

        def claim_while_answers_wait() -> tuple[int, int, object]:
            told.clear()
            n0._queue_here(m.FreeRun("no-such-run"), [], 0)  # waits for its callback
            assert n0.ledger.try_claim({"cpu": 0.5}) is not None
            n0._publish_resources()
            return _publish_own_handles(n0), n0.ledger.version, n0._own_after

        handles, version, after = cluster.run(claim_while_answers_wait)
        assert handles == 0, "a callback of its own was scheduled"
        assert after == ({"cpu": 1.5, "memory": 1000.0}, version)
        wait_for(lambda: cluster.run(lambda: list(told)) == ["flush", (1.5, version)], 30)
        assert cluster.run(lambda: n0._own_after) is None

        def claim_with_nothing_waiting() -> int:
            told.clear()
            assert n0.ledger.try_claim({"cpu": 0.5}) is not None
            n0._publish_resources()
            return _publish_own_handles(n0)

        assert cluster.run(claim_with_nothing_waiting) == 1
        wait_for(lambda: cluster.run(lambda: list(told)) == [(1.0, version + 1)], 30)
        cluster.run(lambda: n0.ledger.release({"cpu": 1.0}, []))
