"""The owner's shell turning what it hears of nodes into the scheduler's ``NodeUpdate`` events.

A base class of ``OwnerIO`` (``daemon.owner``), split from it at its size limit: membership's
word on peers (``member_updates``), our own ledger (``own_resources``), and the free resources
an executing node's answer or report carries (``_reported``).
"""

from __future__ import annotations

from typing import Any

from handoffd.daemon.ports import MembersPort, Resources
from handoffd.protocol import messages as m
from handoffd.scheduler import events as ev


class NodeViews:
    """``OwnerIO``'s node updates (what it holds that this reads is declared here)."""

    port: MembersPort
    _resources: Resources
    _own_version: int
    _own_capacity: dict[str, float]

    def _feed(self, event: Any) -> None:
        raise NotImplementedError

    def _feed_all(self, *events: Any) -> None:
        raise NotImplementedError

    def _feed_reported(self, events: list[Any]) -> None:
        raise NotImplementedError

    def member_update(self, member: m.MemberState) -> None:
        self.member_updates([member])

    def member_updates(self, members: list[m.MemberState], batched: bool = False) -> None:
        """What membership says of these members (in order), as one scheduler batch: the only
        source of nodes in the scheduler's view besides ourselves. ``batched``: only their free
        resources changed (no member's status), heard amid a transport's drain: with
        ``batch_reports`` they join the drain's batch (``_feed_reported``), fed at its end."""
        events = [
            ev.NodeUpdate(
                member.name,
                member.address,
                member.status == m.ALIVE or member.status == m.SUSPECT,
                dict(member.capacity),
                dict(member.free),
                member.resource_version,
            )
            for member in members
            if member.name != self.port.name  # our own free resources come from the ledger
        ]
        if not events:
            return
        if batched:
            self._feed_reported(events)
        else:
            self._feed_all(*events)

    def member_restarted(self, name: str) -> None:
        """``name`` said it is a new process: settle what we had out on its old one."""
        self._feed(ev.PeerRestarted(name))

    def own_resources(self, free: dict[str, float], version: int) -> None:
        """Our ledger changed (``free`` at ``version``, zeros while draining): our own node in the scheduler's
        view follows it. Membership's word on ourselves is skipped (``member_updates``) and a
        report reaches only its task's owner, so a change made by another owner's task -- its
        task ending here and freeing the cpu -- used to never reach us: our view of ourselves
        stayed full and our READY tasks waited forever on an idle node (the multi-owner wedge)."""
        r = self._resources
        if version <= self._own_version and r.capacity == self._own_capacity:
            return  # a reply or report of ours carried this version: the scheduler would ignore it
        self._own_version, self._own_capacity = version, dict(r.capacity)
        update = ev.NodeUpdate(
            self.port.name, self.port.address, True, dict(r.capacity), free, version
        )
        self._feed(update)

    def knows_own(self, version: int) -> bool:
        """Our scheduler already has our ledger at ``version`` (a reply or report of ours carried
        it): ``own_resources`` would skip it."""
        return version <= self._own_version and self._resources.capacity == self._own_capacity

    def _reported(self, node: str, msg: Any) -> list[Any]:
        """The free resources a node's reply or report carries, as a scheduler event; none unless
        the node is ourselves or a live member: the scheduler's view holds members only, and a
        report must never add a node to it (issue 11: a forged report made a phantom node)."""
        port = self.port
        if node == port.name:  # ourselves (every report of our own executor): no look-ups
            capacity = self._resources.capacity
            version = msg.resource_version
            if version > self._own_version:
                self._own_version, self._own_capacity = version, dict(capacity)
            return [
                ev.NodeUpdate(node, port.address, True, dict(capacity), dict(msg.free), version)
            ]
        member = port.member(node)
        if member is None or member.status not in (m.ALIVE, m.SUSPECT):
            return []
        return [
            ev.NodeUpdate(
                node,
                port.address_of(node) or "",
                True,
                dict(member.capacity),
                dict(msg.free),
                msg.resource_version,
            )
        ]
