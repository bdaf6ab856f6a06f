"""Lifeguard (Dadgar, Phillips, Currey 2018): how sure a node may be before it fails a peer.

Two pure parts that ``swim.Membership`` and ``probing.Prober`` consult:

- ``LocalHealth``: this node's own health score (Lifeguard's local health multiplier, LHM). It rises
  when our probes get no answer, when we hear we are suspected, and when our own loop ran late (a
  Tick that came a stall after it was due: the answers were probably waiting unread); it falls
  with each answered probe. Our probe interval and timeouts are stretched by ``1 + score``, so a
  starved node probes less and waits longer instead of accusing healthy peers.
- ``Suspicion``: the timeout of one SUSPECT member. It starts at ``high`` and shrinks towards
  ``low`` as independent accusers (other members whose own probes failed) confirm it: a real
  failure is confirmed by everyone who probes the dead member, a false one (loss, one slow
  accuser) by nobody, so the refutation has all of ``high`` to reach every view. ``high`` grows
  with log10 of the cluster size, as a refutation needs more gossip rounds to reach every view;
  ``low`` does not (issue 20: detection of a real death, which every prober of the dead member
  confirms, stays flat in n; memberlist scales both, and its detection grows with log n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from handoffd.config import MembershipConfig

MAX_HEALTH = 8  # the score's cap: our timeouts stretch at most 9x


@dataclass(slots=True)
class HealthCounters:
    """What this node's own failure detector did (``handoffctl nodes``, /metrics)."""

    suspicions_raised: int = 0  # members we suspected after our own probe failed
    suspicions_wrong: int = 0  # ... that refuted it afterwards (they were alive)
    confirmations: int = 0  # independent accusers heard for suspicions we hold
    suspected: int = 0  # times we heard we were suspected or declared DEAD (we refuted)
    late_ticks: int = 0  # our loop ran a stall late: no verdict on what fell due meanwhile
    nacked_failures: int = 0  # failed probes a relay's Nack showed were not our fault


@dataclass(slots=True)
class LocalHealth:
    score: int = 0
    counters: HealthCounters = field(default_factory=HealthCounters)

    @property
    def scale(self) -> int:
        """What our probe interval and timeouts are multiplied by."""
        return 1 + self.score

    def _add(self, delta: int) -> None:
        self.score = max(0, min(MAX_HEALTH, self.score + delta))

    def probe_answered(self) -> None:
        self._add(-1)

    def probe_failed(self, nacks: int = 0) -> None:
        """Our probe got no Ack, direct or through relays. A relay's Nack (it could not reach the
        target either, and its answer reached us in time) shows the fault is the target's: our
        score stays. Without one, the fault may be ours (our loop or our network is slow). This
        is Lifeguard's rule with any one nack enough: memberlist adds one per missing nack, which
        at 10 % loss grows the score of a healthy prober for a real death."""
        if nacks:
            self.counters.nacked_failures += 1
        else:
            self._add(1)

    def suspected(self) -> None:
        self.counters.suspected += 1
        self._add(1)

    def late(self) -> None:
        self.counters.late_ticks += 1
        self._add(1)


def stall_threshold(config: MembershipConfig) -> float:
    """A Tick this late means our loop stalled long enough for an answer to miss its deadline."""
    return config.probe_timeout / 2


FLAT_UP_TO = 200  # members up to which the confirmed suspicion timeout does not grow


def suspicion_bounds(config: MembershipConfig, members: int) -> tuple[float, float]:
    """(low, high) suspicion timeouts for a cluster of ``members`` (ourselves included): ``low``
    once ``expected_confirmations`` independent accusers confirmed it, ``high`` while nobody did."""
    n = max(1, members)
    # Flat up to FLAT_UP_TO members; past it the refutation of a false suspicion needs more gossip
    # hops than the confirmed timeout gives it (bench_scale at 1,000 nodes and 10 % loss: 576 false
    # DEAD views flat, 18 with this growth, 2 with the full log10 n of the high bound).
    low = config.suspicion_timeout * max(1.0, 1.0 + math.log10(n / FLAT_UP_TO))
    scaled = config.suspicion_timeout * max(1.0, math.log10(n))
    return low, max(low, scaled * config.suspicion_max_mult)


def expected_confirmations(config: MembershipConfig, members: int) -> int:
    """Accusers beyond the first that bring the timeout down to ``low``: at most as many as there
    are other probers (the suspect and the first accuser are not). In a cluster of 3 that is the
    third member: a node cut off alone then waits ``high``, long enough to know it is a
    minority (daemon/fencing.py) before any verdict of its own, while a real death, which both
    survivors see, takes ``low``. From 100 members on, one more set of them per decade: ``low``
    is flat in n, so a false suspicion that independent accusers confirmed by chance (loss: ~40 a
    second at 1,000 members and 10 % loss) must not reach it before its refutation crossed the
    cluster's ~log n gossip hops (2 at 1,000 members: 60 false DEAD in 30 s at 10 % loss), while a
    real death gets its accusers within a probe period from the members that probe it at once
    (``Prober._probe_soon``)."""
    decades = max(1, math.ceil(math.log10(max(1, members))) - 1)
    return max(0, min(config.suspicion_confirmations * decades, members - 2))


@dataclass(slots=True)
class Suspicion:
    started: float
    low: float
    high: float
    expected: int
    accusers: set[str]

    @classmethod
    def begin(cls, config: MembershipConfig, members: int, now: float, accuser: str) -> Suspicion:
        low, high = suspicion_bounds(config, members)
        return cls(now, low, high, expected_confirmations(config, members), {accuser})

    def deadline(self) -> float:
        confirmations = len(self.accusers) - 1
        if self.expected <= 0 or confirmations >= self.expected:
            return self.started + self.low
        # Falls with the log of the confirmations: the first ones say the most (Lifeguard).
        share = math.log(confirmations + 1) / math.log(self.expected + 1)
        return self.started + max(self.low, self.high - (self.high - self.low) * share)

    def confirm(self, accuser: str) -> bool:
        """True if ``accuser`` is a new independent accuser (the deadline may have moved)."""
        if accuser in self.accusers or len(self.accusers) > self.expected:
            return False
        self.accusers.add(accuser)
        return True
