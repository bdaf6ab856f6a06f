"""Where a member is pinged, and what a newer state of a member moves (issue 19).

A member with a probe responder (``MemberState.probe_port``, transport/responder.py) answers Pings
on that port, off its event loop, so a busy member does not miss probe deadlines.
"""

from __future__ import annotations

from dataclasses import replace

from handoffd.protocol.messages import DEAD, LEFT, MemberState


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
        accuser=newer.accuser,
    )


def reply_address(
    known: MemberState | None, own: MemberState | None, fallback: str | None
) -> str | None:
    """Where an answer to a sender goes: the address we know it by. But a member we hold DEAD or
    LEFT that speaks from another address (restarted elsewhere under the same name) is answered
    there: at the old address nobody listens, and its rejoin would never complete."""
    if known is None:
        return fallback
    if known.status in (DEAD, LEFT) and own is not None and own.address != known.address:
        return own.address
    return known.address
