"""Wire messages of the membership work (swim19): type ids 210-219 only.

``DescribeHealth`` asks a daemon for its own view of its health (``handoffctl nodes``): its
Lifeguard local health score, the suspicions it raised and how many were wrong, how often it was
suspected itself, how often its loop ran late, and whether it is fenced as a minority partition
(``daemon/fencing.py``). Same ``message`` decorator and rules as the other feature modules
(append-only types, trailing optional fields only).
"""

from __future__ import annotations

from handoffd.protocol.registry import message


@message(210)
class DescribeHealth:
    request_id: int


@message(211)
class HealthDescribed:
    request_id: int
    health: int  # Lifeguard local health score: 0 healthy .. max_health (timeouts x 1 + health)
    max_health: int
    suspicions_raised: int  # members it suspected after its own probe failed
    suspicions_wrong: int  # ... that were alive (they refuted)
    confirmations: int  # independent accusers it heard for suspicions it held
    suspected: int  # times it heard it was suspected or declared DEAD (it refuted each)
    late_ticks: int  # times its event loop ran a stall late
    fenced: str  # why it takes no runs (a minority partition), "" if it does
    reachable: int  # members of its quorum base it reaches (itself included)
    base: int  # the last known alive membership it counts a quorum of
