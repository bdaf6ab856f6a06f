"""Discovery only bootstraps membership: mDNS (on loopback; on the LAN only for a keyed cluster),
static seeds anywhere.

Both sources emit the same two events to one callback: ``PeerSeen(name, address)`` (join it;
``name`` is None for a seed) and ``PeerGone(name)`` (an mDNS goodbye: a hint, never a death).
Liveness is SWIM's job (zeroconf never notices a crash: DESIGN 5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True, slots=True)
class PeerSeen:
    """A peer of our cluster listens at ``address`` ("host:port")."""

    name: str | None
    address: str


@dataclass(frozen=True, slots=True)
class PeerGone:
    """``name`` announced a clean departure (mDNS goodbye)."""

    name: str


DiscoveryEvent = Union[PeerSeen, PeerGone]
OnDiscovery = Callable[[DiscoveryEvent], None]

__all__ = ["DiscoveryEvent", "OnDiscovery", "PeerGone", "PeerSeen"]
