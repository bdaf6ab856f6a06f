"""Lifeguard's nack (membership/probing.py, protocol/messages_lifeguard.py): the relay of an
indirect probe that gets no Ack from the target says so, and a prober whose failed probe was
nacked does not count the failure against its own health; unit steps and the simulator."""

from __future__ import annotations

import random

from handoffd.config import MembershipConfig
from handoffd.membership.probing import NACK_SHARE
from handoffd.membership.sim import Simulation
from handoffd.membership.swim import Discovered, Instruction, Membership, Received, Send, Tick
from handoffd.protocol.messages import (
    ALIVE,
    DEAD,
    SUSPECT,
    Ack,
    IndirectAck,
    MemberState,
    Ping,
    PingReq,
    PushPull,
)
from handoffd.protocol.messages_lifeguard import Nack

CFG = MembershipConfig.for_tests()


def _nack_node(name: str) -> Membership:
    return Membership(
        name=name,
        address=f"{name}:1",
        cluster="c",
        capacity={"cpu": 4.0},
        config=CFG,
        rng=random.Random(3),
        now=0.0,
    )


def _nack_state(name: str) -> MemberState:
    return MemberState(name, f"{name}:1", "c", 0, ALIVE, {"cpu": 4.0}, {"cpu": 4.0}, 0)


def _nack_peers(*names: str, me: str) -> Membership:
    m = _nack_node(me)
    m.handle(Discovered(f"{names[0]}:1", names[0]), 0.0)
    _nack_feed(m, names[0], PushPull(tuple(_nack_state(n) for n in names), False), 0.0)
    return m


def _nack_feed(m: Membership, sender: str, msg: object, now: float) -> list[Instruction]:
    out = m.handle(Received(sender, f"{sender}:1", msg), now)  # type: ignore[arg-type]
    m.validate()
    return out


def _sent(out: list[Instruction], kind: type) -> list[Send]:
    return [i for i in out if isinstance(i, Send) and isinstance(i.msg, kind)]


def test_a_relay_nacks_once_when_the_target_is_silent_and_still_passes_a_late_ack() -> None:
    c = _nack_peers("a", "b", me="c")
    (ping,) = _sent(_nack_feed(c, "a", PingReq(41, "b", "b:1", (_nack_state("a"),)), 1.0), Ping)
    nack_at = 1.0 + CFG.indirect_timeout * NACK_SHARE
    assert c.next_deadline() <= nack_at  # the relay's timer is part of the node's deadline
    assert _sent(c.handle(Tick(), nack_at - 0.001), Nack) == []
    (nack,) = _sent(c.handle(Tick(), nack_at), Nack)
    assert nack.address == "a:1" and nack.msg.probe_id == 41 and nack.msg.target == "b"
    assert nack.msg.updates[0].name == "c"  # the relay's own state first, like every message
    assert _sent(c.handle(Tick(), nack_at + 0.001), Nack) == []  # once
    # The target answers after all, before the relay forgets: the prober still hears it.
    (ind,) = _sent(
        _nack_feed(c, "b", Ack(ping.msg.probe_id, (_nack_state("b"),)), nack_at), IndirectAck
    )
    assert ind.address == "a:1" and ind.msg.probe_id == 41


def _failed_probe(nacks: list[tuple[str, int, str]]) -> Membership:
    """``a`` probes a silent peer through relays that answer with ``nacks`` (sender, probe id
    offset, target: a wrong probe id or target must not count)."""
    a = _nack_peers("b", "c", "d", me="a")
    pings: list[Send] = []
    now = 0.0
    while not pings:
        now = a.next_deadline()
        pings = _sent(a.handle(Tick(), now), Ping)
    (ping,) = pings
    target = ping.address.split(":")[0]
    now += CFG.probe_timeout
    reqs = _sent(a.handle(Tick(), now), PingReq)
    assert reqs and all(r.msg.target == target for r in reqs)
    for sender, offset, about in nacks:
        who = target if sender == "target" else [r.address[:1] for r in reqs][0]
        subject = target if about == "target" else about
        _nack_feed(a, who, Nack(ping.msg.probe_id + offset, subject, (_nack_state(who),)), now)
    while a.get(target).status == ALIVE:  # type: ignore[union-attr]
        now = a.next_deadline()
        a.handle(Tick(), now)
    assert a.get(target).status == SUSPECT  # type: ignore[union-attr]
    return a


def test_a_nacked_failed_probe_leaves_the_probers_health_alone() -> None:
    assert _failed_probe([]).health == 1  # no relay answered: maybe our own fault
    nacked = _failed_probe([("relay", 0, "target")])
    assert nacked.health == 0 and nacked.health_counters.nacked_failures == 1
    # A nack for another probe, about another member, or from the target itself proves nothing.
    for bogus in (("relay", 1, "target"), ("relay", 0, "x"), ("target", 0, "target")):
        assert _failed_probe([bogus]).health == 1, bogus


def test_probers_of_a_dead_node_keep_their_health_a_cut_off_prober_does_not() -> None:
    sim = Simulation(MembershipConfig.lan(), seed=4)
    names = [f"n{i}" for i in range(10)]
    sim.add_node(names[0])
    for name in names[1:]:
        sim.add_node(name, join=[names[0]])
    sim.run_until(sim.converged, timeout=10)
    sim.run_for(2.0)
    sim.crash("n9")
    sim.run_until(lambda: sim.all_see("n9", DEAD), timeout=20)
    live = [sim.nodes[n].membership for n in names[:9]]
    failed = sum(m.counters.probes_failed for m in live)
    assert failed >= 2  # several survivors probed the dead node
    # Every failed probe of the dead node was nacked by the relays: nobody's health moved.
    assert sum(m.health_counters.nacked_failures for m in live) == failed
    assert all(m.health == 0 for m in live)
    # A prober cut off from everyone gets no nack: its failures are counted against itself.
    alone = sim.nodes["n1"].membership
    nacked, failed = alone.health_counters.nacked_failures, alone.counters.probes_failed
    sim.partition(["n1"], names[:1] + names[2:9])
    sim.run_for(3.0)
    assert alone.counters.probes_failed >= failed + 2
    assert alone.health >= 2 and alone.health_counters.nacked_failures == nacked
