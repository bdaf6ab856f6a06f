"""A member's free resources gossiped amid a transport's drain join the drain's scheduler batch
(``NodeReliability._run_membership``, ``NodeViews.member_updates(batched=True)``): fed on their
own they fed the reports read so far in a batch of their own, splitting the drain's in two.
Outside a drain, and for any change of a member's status, the owner is fed at once as before."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from handoffd.membership import swim
from handoffd.protocol import messages as m
from handoffd.scheduler import events as ev
from handoffd.testing import ThreadedCluster

pytestmark = pytest.mark.timeout(120)


def _gossip(node: Any, member: m.MemberState) -> None:
    node._run_membership(swim.Received(member.name, None, m.Gossip((member,))))


def _fed_updates(batches: list[tuple[Any, ...]], name: str) -> list[list[Any]]:
    """Each batch fed to the scheduler, as the ``NodeUpdate``s of ``name`` it held."""
    return [[e for e in b if type(e) is ev.NodeUpdate and e.name == name] for b in batches]


def test_free_resources_gossiped_amid_a_drain_are_fed_with_the_drains_batch():
    with ThreadedCluster([{"cpu": 1}, {"cpu": 1}]) as cluster:
        node, other = cluster.nodes

        async def body() -> dict[str, Any]:
            owner = node.owner
            feed_all = owner._feed_all
            batches: list[tuple[Any, ...]] = []

            def recorded(*events: Any) -> None:
                batches.append((*owner._pending, *events))
                feed_all(*events)

            owner._feed_all = recorded
            seen: dict[str, Any] = {}
            try:
                member = node.membership.get(other.name)
                assert member is not None and member.status == m.ALIVE
                version = member.resource_version + 1_000
                # Amid a drain (as ``_received`` marks it): nothing fed until its ``_drained``.
                node._held = node._drains
                assert node._held
                _gossip(
                    node, dataclasses.replace(member, free={"cpu": 0.25}, resource_version=version)
                )
                seen["before"] = list(batches)
                seen["pending"] = [type(e).__name__ for e in owner._pending]
                node._drained()
                seen["drained"] = _fed_updates(batches, other.name)
                # Outside a drain: fed at once, as before.
                batches.clear()
                assert not node._held
                _gossip(
                    node,
                    dataclasses.replace(member, free={"cpu": 0.5}, resource_version=version + 1),
                )
                seen["at_once"] = _fed_updates(batches, other.name)
                # A new member amid a drain (a status change): fed at once, before the drain's end.
                batches.clear()
                node._held = node._drains
                ghost = dataclasses.replace(member, name="ghost", address="127.0.0.1:9")
                _gossip(node, ghost)
                seen["status"] = _fed_updates(batches, "ghost")
                node._drained()
            finally:
                del owner._feed_all
            return seen

        seen = cluster.call(body)
    assert seen["before"] == []
    assert seen["pending"] == ["NodeUpdate"]
    ((update,),) = seen["drained"]  # one batch, at the drain's end
    assert update.free == {"cpu": 0.25}
    ((update,),) = seen["at_once"]
    assert update.free == {"cpu": 0.5}
    assert [len(b) for b in seen["status"]][:1] == [1]
