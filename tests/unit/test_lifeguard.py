"""Lifeguard (membership/lifeguard.py): suspicion timeouts that shrink with independent accusers,
the local health score, and a starved node (its loop runs late) that must not fail healthy peers;
on the deterministic simulator (virtual time)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from handoffd.config import MembershipConfig
from handoffd.membership.lifeguard import (
    MAX_HEALTH,
    LocalHealth,
    Suspicion,
    expected_confirmations,
    suspicion_bounds,
)
from handoffd.membership.sim import Simulation
from handoffd.membership.swim import (
    Event,
    Instruction,
    MemberChanged,
    Membership,
    Received,
    Tick,
)
from handoffd.protocol.messages import ALIVE, DEAD, SUSPECT, Gossip, Ping

LAN = MembershipConfig.lan()


def test_suspicion_high_bound_grows_with_log10_of_the_cluster_the_low_one_does_not() -> None:
    assert suspicion_bounds(LAN, 5) == (LAN.suspicion_timeout, 6 * LAN.suspicion_timeout)
    # A confirmed suspicion: detection flat in n up to FLAT_UP_TO members...
    for n in (5, 50, 200):
        assert suspicion_bounds(LAN, n)[0] == LAN.suspicion_timeout
    # ...then growing by one timeout per decade, far slower than the lone accuser's bound.
    low, high = suspicion_bounds(LAN, 2000)
    assert low == pytest.approx(2 * LAN.suspicion_timeout)
    low, high = suspicion_bounds(LAN, 1000)
    assert LAN.suspicion_timeout < low < 2 * LAN.suspicion_timeout
    assert high == pytest.approx(LAN.suspicion_max_mult * 3 * LAN.suspicion_timeout)
    assert expected_confirmations(LAN, 2) == 0  # nobody else to confirm
    assert expected_confirmations(LAN, 3) == 1  # the third member
    assert expected_confirmations(LAN, 4) == LAN.suspicion_confirmations
    assert expected_confirmations(LAN, 100) == LAN.suspicion_confirmations
    # One more set per decade from 100 on: low is flat in n, so chance confirmations of a false
    # suspicion must stay rarer as the refutation's way across the cluster grows.
    assert expected_confirmations(LAN, 101) == 2 * LAN.suspicion_confirmations
    assert expected_confirmations(LAN, 1000) == 2 * LAN.suspicion_confirmations
    assert expected_confirmations(LAN, 1001) == 3 * LAN.suspicion_confirmations


def test_suspicion_starts_high_and_falls_to_low_with_independent_accusers() -> None:
    s = Suspicion.begin(LAN, 1000, now=10.0, accuser="a")
    low, high = suspicion_bounds(LAN, 1000)
    assert s.deadline() == pytest.approx(10.0 + high)
    assert not s.confirm("a")  # the same accuser again says nothing new
    assert s.confirm("b")
    one = s.deadline()
    assert 10.0 + low < one < 10.0 + high
    assert s.expected == 4  # two per decade from 100 members on
    assert one == pytest.approx(10.0 + high - (high - low) * math.log(2) / math.log(5))
    for accuser in ("c", "d"):
        assert s.confirm(accuser)
        assert 10.0 + low < s.deadline() < one
    assert s.confirm("e")
    assert s.deadline() == pytest.approx(10.0 + low)
    assert not s.confirm("f")  # enough: accusers are not collected beyond the expected ones


def test_local_health_rises_on_trouble_falls_on_answers_and_is_capped() -> None:
    h = LocalHealth()
    for _ in range(20):
        h.probe_failed()
    assert h.score == MAX_HEALTH and h.scale == MAX_HEALTH + 1
    h.late()
    h.suspected()
    assert h.counters.late_ticks == 1 and h.counters.suspected == 1
    for _ in range(MAX_HEALTH + 3):
        h.probe_answered()
    assert h.score == 0 and h.scale == 1


class Starved:
    """A node whose loop runs only ``run`` seconds of every ``period`` from ``start`` on (CPU
    starvation): during a stall whatever is addressed to it waits, and at the stall's end the
    Tick comes first (the worst order: timers before the answers already waiting). Pings are
    answered at once, as the daemon's probe responder thread does (transport/responder.py). ``report``:
    tell the state machine how late that Tick is (the daemon does; False: as before Lifeguard's
    stall handling, which never knew)."""

    def __init__(
        self, inner: Membership, start: float, period: float, run: float, report: bool
    ) -> None:
        self.inner = inner
        self.start, self.period, self.run, self.report = start, period, run, report
        self.pending: list[Event] = []
        self.stalled_since = 0.0
        self.stop = float("inf")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _stall_end(self, t: float) -> float | None:
        if t < self.start or t >= self.stop:
            return None
        phase = (t - self.start) % self.period
        if phase < self.run or phase > self.period - 1e-9:  # (float rounding at a stall's end)
            return None
        return t + self.period - phase

    def next_deadline(self) -> float:
        at = self.inner.next_deadline()
        if self.pending:
            at = min(at, self._resume)
        end = self._stall_end(at)
        return at if end is None else end

    def handle(self, event: Event, now: float) -> list[Instruction]:
        end = self._stall_end(now)
        if end is not None and isinstance(event, Received) and isinstance(event.msg, Ping):
            return self.inner.handle(event, now)  # the probe responder thread answers Pings
        if end is not None:
            if not self.pending:
                self.stalled_since = now
            self._resume = end
            self.pending.append(event)
            return []
        out: list[Instruction] = []
        if self.pending:
            late = now - self.stalled_since if self.report else 0.0
            out += self.inner.handle(Tick(late), now)
            for waiting in self.pending:
                if not isinstance(waiting, Tick):
                    out += self.inner.handle(waiting, now)
            self.pending.clear()
        return out + self.inner.handle(event, now)


def cluster(n: int, seed: int, config: MembershipConfig = LAN) -> Simulation:
    sim = Simulation(config, seed=seed)
    sim.add_node("n0")
    for i in range(1, n):
        sim.add_node(f"n{i}", join=["n0"])
    sim.run_until(sim.converged, timeout=20)
    sim.run_for(2.0)
    return sim


def starve(sim: Simulation, name: str, *, report: bool) -> Starved:
    node = sim.nodes[name]
    wrapper = Starved(node.membership, sim.now, period=0.8, run=0.0005, report=report)
    node.membership = wrapper  # type: ignore[assignment]
    return wrapper


def false_dead(sim: Simulation, since: float, really_dead: tuple[str, ...] = ()) -> int:
    return sum(
        1
        for t, _, c in sim.changes
        if t >= since and isinstance(c, MemberChanged) and c.new == DEAD
        if c.name not in really_dead
    )


def test_a_starved_node_does_not_fail_healthy_peers() -> None:
    """A node whose loop stalls 0.8 s at a time. Before Lifeguard's parts (a fixed 0.6 s
    suspicion, late ticks not reported) its probes time out during its stalls, and its suspicions
    expire before it reads the refutations waiting for it: it declares healthy peers DEAD. Either
    part alone prevents that: told how late its ticks are, it raises no suspicion at all; with
    suspicions that wait longer while nobody confirms them, its false ones are refuted in time."""
    before = replace(LAN, suspicion_max_mult=1.0)
    found: dict[tuple[str, bool], tuple[int, int]] = {}
    for config, report in ((before, False), (before, True), (LAN, False), (LAN, True)):
        sim = cluster(8, seed=5, config=config)
        since = sim.now
        starved = starve(sim, "n3", report=report)
        sim.run_for(30.0)
        raised = starved.inner.health_counters.suspicions_raised
        found[("before" if config is before else "lifeguard", report)] = (
            false_dead(sim, since),
            raised,
        )
        if report:
            assert starved.inner.health_counters.late_ticks > 0
        starved.stop = sim.now
        sim.run_until(sim.converged, timeout=20)  # and it is in everyone's view again
    assert found[("before", False)][0] > 0, f"the scenario no longer starves enough: {found}"
    assert found[("before", True)] == (0, 0), found
    assert found[("lifeguard", False)][0] == 0 and found[("lifeguard", False)][1] > 0, found
    assert found[("lifeguard", True)] == (0, 0), found


def test_a_real_death_is_still_detected_while_a_node_is_starved() -> None:
    sim = cluster(8, seed=6)
    starve(sim, "n3", report=True)
    sim.run_for(3.0)
    since = sim.now
    sim.crash("n5")
    healthy = [n for n in sim.live() if n not in ("n3",)]
    took = sim.run_until(lambda: all(sim.status(o, "n5") == DEAD for o in healthy), 10.0)
    # probe wait + 0.3 s probe + low suspicion timeout once two others confirmed + gossip
    assert took < 2.5, took
    # The starved node learns it from the others' gossip, without a verdict of its own.
    sim.run_until(lambda: sim.status("n3", "n5") == DEAD, 5.0)
    assert false_dead(sim, since, really_dead=("n5",)) == 0


def test_a_lone_false_suspicion_waits_long_a_confirmed_one_does_not() -> None:
    """At 1,000 members a refutation needs ~7 gossip hops: an unconfirmed suspicion waits the
    high bound (6 x 3 x 0.6 s); one that two other members confirmed, the low bound."""
    sim = cluster(12, seed=8)
    a = sim.nodes["n1"].membership
    target = sim.nodes["n2"].membership.me
    now = sim.now
    # As if the cluster were 1,000 strong: the bounds are per membership size.
    a_members = len(a.members())
    low, high = suspicion_bounds(LAN, a_members)
    accused = replace(target, status=SUSPECT, accuser="n4")
    a.handle(_gossip("n4", sim, (accused,)), now)
    record = a._members["n2"]
    assert record.suspect_deadline == pytest.approx(now + high)
    for accuser in ("n5", "n6"):
        a.handle(_gossip(accuser, sim, (replace(accused, accuser=accuser),)), now)
    assert record.suspect_deadline == pytest.approx(now + low)
    assert a.health_counters.confirmations == 2
    assert a.get("n2").status == SUSPECT  # type: ignore[union-attr]
    assert target.status == ALIVE


def _gossip(sender: str, sim: Simulation, states: tuple[Any, ...]) -> Any:
    me = sim.nodes[sender].membership.me
    return Received(sender, me.address, Gossip((me, *states)))


def test_a_fenced_node_declares_nobody_dead_until_released() -> None:
    """Fenced as a minority (daemon/fencing.py), a node's own timers keep the far side SUSPECT:
    after the heal that is refuted harmlessly, where its DEAD verdicts would spread through the
    majority. The majority still declares the cut-off node DEAD; released, the held suspicions
    run their whole timeout again from then."""
    sim = cluster(5, seed=9)
    alone = sim.nodes["n4"].membership
    alone.hold_verdicts(True)
    sim.partition(["n4"], ["n0", "n1", "n2", "n3"])
    sim.run_until(lambda: sim.all_see("n4", DEAD), 10.0)
    sim.run_for(20.0)
    assert {sim.status("n4", o) for o in ("n0", "n1", "n2", "n3")} == {SUSPECT}
    released = sim.now
    alone.hold_verdicts(False)
    sim.run_until(lambda: all(sim.status("n4", o) == DEAD for o in ("n0", "n1", "n2")), 30.0)
    assert sim.now - released >= suspicion_bounds(LAN, 5)[0]
