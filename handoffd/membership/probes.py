"""Where a member is pinged, and what a newer state of a member moves (issue 19).

A member with a probe responder (``MemberState.probe_port``, transport/responder.py) answers Pings
on that port, off its event loop, so a busy member does not miss probe deadlines.
"""

from __future__ import annotations

from dataclasses import replace

from handoffd.protocol.messages import MemberState


def ping_address(state: MemberState) -> str:
    """Its probe responder's port on its host when it has one, else its address."""
    if state.probe_port <= 0:
        return state.address
    return f"{state.address.rpartition(':')[0]}:{state.probe_port}"


def moved(current: MemberState, newer: MemberState) -> MemberState:
    """``current`` with the status part of a newer state: incarnation, status, where it listens."""
    return replace(
        current,
        incarnation=newer.incarnation,
        status=newer.status,
        address=newer.address,
        probe_port=newer.probe_port,
    )
