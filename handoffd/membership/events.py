"""Membership's events (in) and instructions (out): the interface of ``swim.Membership``.

The node feeds ``Event``s to ``Membership.handle(event, now)`` and executes the ``Instruction``s it
returns; ``swim`` re-exports all of them, so callers name them ``swim.Tick``, ``swim.Send``, ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from handoffd.protocol.messages import (
    Ack,
    Gossip,
    IndirectAck,
    MemberState,
    Ping,
    PingReq,
    PushPull,
)
from handoffd.protocol.messages_lifeguard import Nack

# ----------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: run due timers (the node calls this at ``next_deadline()`` or periodically).
    ``late``: how long after it was due the caller's timer fired (its loop stalled that long)."""

    late: float = 0.0


@dataclass(frozen=True, slots=True)
class Received:
    """A membership message arrived; ``sender`` is the envelope's node name."""

    sender: str
    sender_address: str | None
    msg: Ping | Ack | PingReq | IndirectAck | PushPull | Gossip | Nack


@dataclass(frozen=True, slots=True)
class Discovered:
    """mDNS or a seed named an address: join it with a push-pull."""

    address: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Undiscovered:
    """mDNS goodbye: a hint to probe ``name`` soon, never DEAD by itself."""

    name: str


@dataclass(frozen=True, slots=True)
class LocalResources:
    """Our free resources changed."""

    free: dict[str, float]


@dataclass(frozen=True, slots=True)
class Leave:
    """Graceful departure: mark self LEFT and tell everyone directly."""


@dataclass(frozen=True, slots=True)
class HeardFrom:
    """A message other than membership's came from ``name`` (and was refused: it is not a live
    member here). If we hold it DEAD, tell it, so it refutes now rather than at the next
    push-pull (a healed partition: its reports and takeover messages get through sooner)."""

    name: str


Event = Union[Tick, Received, Discovered, Undiscovered, LocalResources, Leave, HeardFrom]

# ----------------------------------------------------------------------------- instructions


# Not frozen (unlike the events): a frozen dataclass's __init__ sets each field through
# object.__setattr__, and every message the cluster sends is one Send (issue 20: 10 million in
# bench_scale.py --long, ~0.5 us each more than a plain slots class); every view change is one
# MemberChanged in every view that makes it. Nobody mutates one, and none was hashable (the
# MemberState in a change holds dicts).
@dataclass(slots=True)
class Send:
    """Fire and forget ``msg`` to ``address``."""

    address: str
    msg: Any


@dataclass(slots=True)
class MemberChanged:
    """``name`` moved from status ``old`` (None: newly joined) to ``new``."""

    name: str
    old: int | None
    new: int
    member: MemberState


@dataclass(slots=True)
class ResourcesChanged:
    """Our view of a peer's capacity/free resources changed (not emitted on join or for self)."""

    name: str
    member: MemberState


Instruction = Union[Send, MemberChanged, ResourcesChanged]


class MembershipError(RuntimeError):
    """An illegal state move: a bug, reported with the member's recent history."""
