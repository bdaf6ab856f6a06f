"""Peers that said they are leaving (``NodeLeaving``, issue 19): the owner's view gets no room
on them from that moment, so nothing new is placed there, while what runs there keeps running.

Pure: ``mask`` rewrites what membership says of a leaving member (no capacity, nothing free)
before the owner hears it; a member that comes back with a higher incarnation (restarted) or
is gone (DEAD, LEFT) is forgotten here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from handoffd.protocol import messages as m


class LeavingPeers:
    def __init__(self) -> None:
        self._leaving: dict[str, int] = {}  # name -> its incarnation when it said so

    def __contains__(self, name: object) -> bool:
        return name in self._leaving

    def said(self, member: m.MemberState) -> m.MemberState:
        """``member`` said it is leaving: its state as the owner must see it from now on."""
        self._leaving[member.name] = member.incarnation
        return self.mask(member)

    def mask(self, member: m.MemberState) -> m.MemberState:
        said_at = self._leaving.get(member.name)
        if said_at is None:
            return member
        if member.status in (m.DEAD, m.LEFT) or member.incarnation > said_at:
            del self._leaving[member.name]  # gone, or a new life of it: nothing to hide
            return member
        return replace(member, capacity={}, free={})

    def masked(self, members: list[m.MemberState]) -> list[m.MemberState]:
        if not self._leaving:
            return members
        return [self.mask(s) for s in members]


def leave_notice(name: str, executor: Any, grace_s: float) -> str:
    """The log line of a graceful leave: what goes back now, what may still finish."""
    queued = sum(1 for t in executor.state.task_records().values() if not t.running)
    running = executor.running_count()
    return (
        f"node {name} leaving: {queued} queued tasks handed back, {running} running get up to "
        f"{grace_s:.1f} s"
    )
