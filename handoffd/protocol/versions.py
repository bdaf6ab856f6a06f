"""Protocol version ranges: who can talk to whom, and what each side says when they cannot.

Every message carries its sender's range ``[lo, hi]`` (``codec``); member states carry it too, so
a node never admits a member it could not talk to, even one it only hears of through gossip. Two
ranges are compatible when they overlap. Nothing here does I/O except the one log line per
refused sender (``Refusals``).
"""

from __future__ import annotations

import logging

from handoffd.config import PROTOCOL_MAX, PROTOCOL_MIN
from handoffd.errors import HandoffError

log = logging.getLogger("handoffd.protocol")

#: this build's range
RANGE = (PROTOCOL_MIN, PROTOCOL_MAX)
# First message types of the client <-> daemon block and of the next block (messages.py): a
# refused message in between came from a client, anything else from a peer.
_CLIENT_TYPES = range(20, 40)
# Senders a daemon remembers having logged: clients get a fresh name per Client, so a daemon that
# refuses old clients for months must not keep every name.
_REMEMBERED = 4096


class IncompatibleVersion(HandoffError):
    """The daemon speaks a protocol range that does not overlap this client's."""


def compatible(lo: int, hi: int, ours: tuple[int, int] = RANGE) -> bool:
    return lo <= hi and lo <= ours[1] and hi >= ours[0]


def describe(lo: int, hi: int) -> str:
    """``3-4``, or ``2`` for a range of one version."""
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _upgrade(lo: int, ours: tuple[int, int], other: str, here: str) -> str:
    """Which side must upgrade: the one whose range lies entirely below the other's."""
    return f"upgrade handoffd on {here}" if lo > ours[1] else f"upgrade handoffd on {other}"


def client_error(
    address: str, lo: int, hi: int, ours: tuple[int, int] = RANGE
) -> IncompatibleVersion:
    """What a client raises at once when the daemon at ``address`` speaks ``lo``-``hi``."""
    return IncompatibleVersion(
        f"the daemon at {address} speaks protocol {describe(lo, hi)}, this client "
        f"{describe(*ours)}: {_upgrade(lo, ours, 'the daemon', 'the client')}"
    )


def refusal_text(
    kind: str, sender: str, lo: int, hi: int, ours: tuple[int, int] = RANGE, told: bool = False
) -> str:
    """The daemon's log line for a ``kind`` (client or peer) it cannot talk to."""
    what = (
        "refusing its requests"
        if kind == "client"
        else "not admitted to membership"
        if not told
        else "it refused us; not admitted to membership"
    )
    other = "the client" if kind == "client" else "the other node"
    return (
        f"{kind} {sender} speaks protocol {describe(lo, hi)}, this daemon {describe(*ours)}: "
        f"{what} ({_upgrade(lo, ours, other, 'this node')})"
    )


def sender_kind(type_id: int) -> str:
    return "client" if type_id in _CLIENT_TYPES else "peer"


class Refusals:
    """One log line per sender a daemon cannot talk to (then debug), bounded."""

    def __init__(self, ours: tuple[int, int] = RANGE) -> None:
        self.ours = ours
        self._logged: dict[str, None] = {}
        self.count = 0

    def note(self, kind: str, sender: str, lo: int, hi: int, told: bool) -> None:
        self.count += 1
        key = f"{kind}:{sender}"
        if key in self._logged:
            log.debug("%s", refusal_text(kind, sender, lo, hi, self.ours, told))
            return
        if len(self._logged) >= _REMEMBERED:
            self._logged.pop(next(iter(self._logged)))
        self._logged[key] = None
        log.warning("%s", refusal_text(kind, sender, lo, hi, self.ours, told))


__all__ = [
    "IncompatibleVersion",
    "RANGE",
    "Refusals",
    "client_error",
    "compatible",
    "describe",
    "refusal_text",
    "sender_kind",
]
