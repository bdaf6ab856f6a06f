"""Duplicate node names (issue 19): two live daemons started with one --name used to be silently
isolated (the newer one's state lost to the older one's incarnation everywhere). A member that
hears a name it holds ALIVE, heard from within ``RECENT_S``, claimed from another address tells
both daemons (``NameClash``): the newcomer (the claim) stops with an error if it started less than
``YOUNG_S`` ago, the established one (the address the cluster knows) logs a warning. A node restarted elsewhere after a crash is not a clash: its old
incarnation is not heard from after the claim is first seen. Being heard within ``RECENT_S``
before it is not enough: a restart within half a second of a kill -9 was taken for a second daemon
and stopped (the old process had answered a probe just before it died).

Pure: ``Names`` decides; the node sends and stops.
"""

from __future__ import annotations

from typing import Any

from handoffd.protocol import messages as m

RECENT_S = 0.5  # a live member is heard from several times in this (probes, gossip, acks)
YOUNG_S = 10.0  # a daemon this young that clashes is the newcomer: it stops
CLAIM_KEPT_S = 60.0  # a claim's first sighting counts this long
TELL_EVERY_S = 5.0  # per claimed address, at most one NameClash pair this often


class Names:
    def __init__(self) -> None:
        self.heard: dict[str, float] = {}  # member name -> when a message from it last arrived
        self._told: dict[str, float] = {}  # claimed address -> when we last told
        self._claimed: dict[str, float] = {}  # claimed address -> when its claim was first seen

    def clash(
        self, msg: Any, sender: str, known: m.MemberState | None, now: float
    ) -> tuple[str, str] | None:
        """(known address, claimed address) when ``msg`` from ``sender`` claims a live member's
        name from another address; None otherwise (and then ``sender`` counts as heard)."""
        updates = msg.members if isinstance(msg, m.PushPull) else getattr(msg, "updates", ())
        own = next((u for u in updates if u.name == sender), None)
        if (
            own is None
            or known is None
            or own.address == known.address
            or known.status != m.ALIVE
            or own.status != m.ALIVE
            or own.incarnation > known.incarnation  # it moved, on its own word
        ):
            if own is not None and known is not None and own.address == known.address:
                self.heard[sender] = now
            return None
        heard = self.heard.get(sender, -1e9)
        first = self._claimed.get(own.address, -1e9)
        if now - first > CLAIM_KEPT_S:  # a claim not repeated for a minute starts afresh
            first = self._claimed[own.address] = now
            if len(self._claimed) > 1024:
                self._claimed = {a: t for a, t in self._claimed.items() if now - t < CLAIM_KEPT_S}
        # The known one must be heard from after the claim was first seen: a dead one never is.
        if now - heard > RECENT_S or heard <= first:
            return None
        if now - self._told.get(own.address, -1e9) < TELL_EVERY_S:
            return None
        self._told[own.address] = now
        if len(self._told) > 1024:
            self._told = {a: t for a, t in self._told.items() if now - t < TELL_EVERY_S}
        return known.address, own.address


def clash_text(name: str, ours: str, other: str, stop: bool) -> str:
    if stop:
        return (
            f"another daemon named {name!r} is running at {other}: node names must be unique, so "
            f"this one (at {ours}) stops. Stop the other first, or start this one with another "
            "--name"
        )
    return (
        f"a daemon at {other} was started with our name {name!r}: node names must be unique; "
        "it was told to stop (this daemon keeps running)"
    )
