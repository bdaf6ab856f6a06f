"""Membership state machine, one event at a time: injected clock, seeded rng, no sockets."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from handoffd.config import MembershipConfig
from handoffd.membership.lifeguard import suspicion_bounds
from handoffd.membership.swim import (
    MAX_NEW_PER_MESSAGE,
    MAX_RELAYS,
    Discovered,
    Instruction,
    Leave,
    LocalResources,
    MemberChanged,
    Membership,
    Received,
    ResourcesChanged,
    Send,
    Tick,
    supersedes,
)
from handoffd.protocol.messages import (
    ALIVE,
    DEAD,
    LEFT,
    SUSPECT,
    Ack,
    Gossip,
    IndirectAck,
    MemberState,
    Ping,
    PingReq,
    PushPull,
)

CFG = MembershipConfig.for_tests()


def node(name: str, cluster: str = "c", seed: int = 0) -> Membership:
    return Membership(
        name=name,
        address=f"{name}:1",
        cluster=cluster,
        capacity={"cpu": 4.0},
        config=CFG,
        rng=random.Random(seed),
        now=0.0,
    )


def state(
    name: str, inc: int = 0, status: int = ALIVE, rv: int = 0, cluster: str = "c", free: float = 4.0
) -> MemberState:
    return MemberState(name, f"{name}:1", cluster, inc, status, {"cpu": 4.0}, {"cpu": free}, rv)


def feed(m: Membership, sender: str, msg: object, now: float = 0.0) -> list[Instruction]:
    out = m.handle(Received(sender, f"{sender}:1", msg), now)  # type: ignore[arg-type]
    m.validate()
    return out


def sends(out: list[Instruction], kind: type | None = None) -> list[Send]:
    return [i for i in out if isinstance(i, Send) and (kind is None or isinstance(i.msg, kind))]


def changes(out: list[Instruction]) -> list[tuple[str, int | None, int]]:
    return [(i.name, i.old, i.new) for i in out if isinstance(i, MemberChanged)]


def with_peers(*names: str, me: str = "a") -> Membership:
    """``me`` joined through ``names[0]``, which answered our push-pull with all of ``names``."""
    m = node(me)
    m.handle(Discovered(f"{names[0]}:1", names[0]), 0.0)
    feed(m, names[0], PushPull(tuple(state(n) for n in names), False))
    return m


def tick_until(m: Membership, now: float, end: float) -> tuple[list[Instruction], float]:
    """Tick at every deadline up to ``end``; returns all instructions and the final time."""
    out: list[Instruction] = []
    while True:
        now = max(now, m.next_deadline())
        if now > end:
            return out, end
        out += m.handle(Tick(), now)
        m.validate()


def test_join_by_discovery_and_unknown_ping_is_answered_and_learned() -> None:
    a = node("a")
    out = a.handle(Discovered("b:1", "b"), 0.0)
    (send,) = sends(out, PushPull)
    assert send.address == "b:1" and send.msg.reply_wanted and send.msg.members[0].name == "a"
    out = feed(a, "x", Ping(7, (state("x"),)))
    (ack,) = sends(out, Ack)
    assert ack.address == "x:1" and ack.msg.probe_id == 7 and ack.msg.updates[0] == a.me
    assert changes(out) == [("x", None, ALIVE)]


def test_unanswered_probe_goes_indirect_then_suspect_then_dead() -> None:
    a = with_peers("b", "c", "d")
    out, now = tick_until(a, 0.0, 0.2)
    pings = sends(out, Ping)
    assert pings, "a probes someone"
    target = pings[0].address.split(":")[0]
    reqs = [s for s in sends(out, PingReq) if s.msg.target == target]
    assert len(reqs) == min(CFG.indirect_probes, 2)  # the other two peers relay
    assert (target, ALIVE, SUSPECT) in changes(out)
    assert sends(out, Gossip), "the suspect is told so it can refute"
    # A lone accuser (nobody confirms) waits the longest suspicion timeout (Lifeguard).
    out, now = tick_until(a, now, now + suspicion_bounds(CFG, 4)[1] + 0.01)
    assert (target, SUSPECT, DEAD) in changes(out)
    moved = {new: t for t, name, _, new, _, _ in a.history if name == target}
    assert moved[DEAD] - moved[SUSPECT] == pytest.approx(suspicion_bounds(CFG, 4)[1], abs=0.01)
    assert a.health > 0  # our own missed probes stretch our timeouts (Lifeguard)


def test_direct_ack_and_indirect_ack_keep_the_peer_alive() -> None:
    for indirect in (False, True):
        a = with_peers("b", "c")
        pings: list[Send] = []
        while not pings:
            now = a.next_deadline()
            pings = sends(a.handle(Tick(), now), Ping)
        (ping,) = pings
        target, started = ping.address.split(":")[0], now
        if indirect:
            now += CFG.probe_timeout
            reqs = sends(a.handle(Tick(), now), PingReq)
            assert reqs
            feed(a, reqs[0].address.split(":")[0], IndirectAck(ping.msg.probe_id, target, ()), now)
        else:
            feed(a, target, Ack(ping.msg.probe_id, (state(target),)), now)
        # Past the probe's final deadline (later probes, unanswered here, would fail on their own).
        out, _ = tick_until(a, now, started + CFG.probe_timeout + CFG.indirect_timeout + 0.001)
        assert changes(out) == [] and a.health == 0


def test_relay_forwards_the_targets_ack_as_indirect_ack() -> None:
    c = with_peers("a", "b", me="c")
    (ping,) = sends(feed(c, "a", PingReq(41, "b", "b:1", (state("a"),))), Ping)
    assert ping.address == "b:1"
    out = feed(c, "b", Ack(ping.msg.probe_id, (state("b"),)))
    (ind,) = sends(out, IndirectAck)
    assert ind.address == "a:1" and ind.msg.probe_id == 41 and ind.msg.target == "b"


def test_suspicion_about_self_is_refuted_with_higher_incarnation() -> None:
    a = with_peers("b")
    for status in (SUSPECT, DEAD, LEFT):
        inc = a.me.incarnation
        out = feed(a, "b", Gossip((state("b"), replace(a.me, status=status))))
        assert a.me.status == ALIVE and a.me.incarnation == inc + 1
        (reply,) = sends(out, Gossip)  # told its sender at once
        assert reply.address == "b:1" and reply.msg.updates[0] == a.me
    stale = feed(a, "b", Gossip((replace(a.me, incarnation=0, status=DEAD),)))
    assert sends(stale) == [] and a.me.incarnation == 3


def test_self_is_never_declared_dead_even_alone_for_long() -> None:
    a = node("a")
    out, _ = tick_until(a, 0.0, 30.0)
    assert changes(out) == [] and a.me.status == ALIVE


@pytest.mark.parametrize(
    ("new", "old", "wins"),
    [
        ((1, ALIVE), (0, DEAD), True),  # higher incarnation beats anything: rejoin
        ((1, ALIVE), (0, LEFT), True),
        ((0, ALIVE), (0, SUSPECT), False),
        ((0, SUSPECT), (0, ALIVE), True),
        ((0, DEAD), (0, SUSPECT), True),
        ((0, LEFT), (0, DEAD), True),  # LEFT is the member's own word
        ((0, DEAD), (0, LEFT), False),  # LEFT is final for its incarnation
        ((0, ALIVE), (0, LEFT), False),
        ((0, DEAD), (1, ALIVE), False),  # stale obituary
        ((2, SUSPECT), (1, DEAD), True),
        ((0, ALIVE), (0, ALIVE), False),
    ],
)
def test_precedence_table(new: tuple[int, int], old: tuple[int, int], wins: bool) -> None:
    assert supersedes(state("b", *new), state("b", *old)) is wins
    m = with_peers("b", "c")
    feed(m, "c", Gossip((state("c"), state("b", *old))))
    before = m.get("b")
    feed(m, "c", Gossip((state("b", *new),)))
    after = m.get("b")
    assert before is not None and after is not None
    assert (after.incarnation, after.status) == (
        new if wins else (before.incarnation, before.status)
    )


def test_dead_member_rejoins_with_higher_incarnation() -> None:
    m = with_peers("b", "c")
    assert changes(feed(m, "c", Gossip((state("b", 0, DEAD),)))) == [("b", ALIVE, DEAD)]
    assert changes(feed(m, "b", Ping(1, (state("b", 0, ALIVE),)))) == []  # same incarnation
    assert changes(feed(m, "b", Ping(2, (state("b", 1, ALIVE),)))) == [("b", DEAD, ALIVE)]


def test_left_then_rejoin_and_leave_tells_everyone() -> None:
    a = with_peers("b", "c")
    out = a.handle(Leave(), 1.0)
    a.validate()
    assert a.me.status == LEFT and ("a", ALIVE, LEFT) in changes(out)
    assert sorted(s.address for s in sends(out, Gossip)) == ["b:1", "c:1"]
    assert not sends(tick_until(a, 1.0, 3.0)[0], Ping)  # a departed node stops probing
    b = with_peers("a", "c", me="b")
    feed(b, "a", Gossip((replace(a.me),)))
    assert b.get("a").status == LEFT  # type: ignore[union-attr]
    feed(b, "c", Gossip((state("a", a.me.incarnation, ALIVE),)))
    assert b.get("a").status == LEFT  # type: ignore[union-attr]
    feed(b, "a", Gossip((state("a", a.me.incarnation + 1, ALIVE),)))
    assert b.get("a").status == ALIVE  # type: ignore[union-attr]


def test_resource_version_wins_for_resources_independently_of_status() -> None:
    m = with_peers("b", "c")
    out = feed(m, "c", Gossip((state("b", 0, SUSPECT, rv=1, free=3.0),)))
    assert m.get("b").status == SUSPECT and m.get("b").free == {"cpu": 3.0}  # type: ignore[union-attr]
    assert [i.name for i in out if isinstance(i, ResourcesChanged)] == ["b"]
    # A stale resource view riding a newer status keeps our newer resources.
    feed(m, "c", Gossip((state("b", 0, DEAD, rv=0, free=4.0),)))
    assert m.get("b").status == DEAD and m.get("b").free == {"cpu": 3.0}  # type: ignore[union-attr]
    # A newer resource view riding an older status updates resources only.
    out = feed(m, "c", Gossip((state("b", 0, ALIVE, rv=5, free=1.0),)))
    assert m.get("b").status == DEAD and m.get("b").free == {"cpu": 1.0}  # type: ignore[union-attr]
    assert changes(out) == []


def test_local_resources_bump_version_and_are_gossiped() -> None:
    a = with_peers("b", "c", "d")
    a.handle(LocalResources({"cpu": 1.0}), 0.0)
    assert a.me.resource_version == 1 and a.me.free == {"cpu": 1.0}
    out = a.handle(Tick(), a.next_deadline())
    gossip = sends(out, Gossip)
    assert len(gossip) == CFG.gossip_fanout
    assert all(g.msg.updates[0].free == {"cpu": 1.0} for g in gossip)


def test_restarted_node_jumps_above_its_previous_life() -> None:
    a = node("a")
    feed(a, "b", PushPull((state("b"), state("a", inc=5, status=DEAD, rv=40)), False))
    assert a.me.incarnation == 6 and a.me.status == ALIVE and a.me.resource_version == 41


def test_other_clusters_are_ignored_and_never_gossiped() -> None:
    m = with_peers("b")
    out = feed(m, "x", Ping(3, (state("x", cluster="other"),)))
    assert out == [] and m.get("x") is None
    feed(m, "b", Gossip((state("b"), state("y", cluster="other"))))
    assert m.get("y") is None
    feed(m, "b", PushPull((state("b"),), True))
    everything = [
        u
        for i in tick_until(m, 0.0, 3.0)[0]
        if isinstance(i, Send)
        for u in getattr(i.msg, "updates", getattr(i.msg, "members", ()))
    ]
    assert everything and all(u.cluster == "c" for u in everything)


def test_unknown_obituary_is_not_learned_and_dead_are_reaped() -> None:
    m = with_peers("b", "c")
    feed(m, "b", Gossip((state("z", 0, DEAD),)))
    assert m.get("z") is None
    feed(m, "c", Gossip((state("b", 0, DEAD),)))
    tick_until(m, 0.0, CFG.dead_reap_after + 1)
    assert m.get("b") is None


def test_ping_to_a_node_we_think_dead_carries_its_obituary() -> None:
    m = with_peers("b", "c")
    feed(m, "c", Gossip((state("b", 0, DEAD),)))
    (ack,) = sends(feed(m, "b", Ping(9, (state("b"),))), Ack)
    assert state("b", 0, DEAD) in ack.msg.updates  # so b refutes at once


# -- what a sender may assert (issue 11; swim's module doc) ---------------------------------------


def test_a_stranger_is_heard_about_itself_and_us_only() -> None:
    a = with_peers("b", "c")
    fakes = tuple(state(f"fake{i}") for i in range(5000))
    out = feed(a, "x", Gossip((state("x"), state("b", 0, DEAD), replace(a.me, status=SUSPECT))))
    assert changes(out) == [("x", None, ALIVE)]  # its own state: a join
    assert a.get("b").status == ALIVE  # type: ignore[union-attr]  # not its to declare
    assert a.me.incarnation == 1  # an assertion about us is refuted
    feed(a, "y", PushPull((state("y"), *fakes), True))  # a join request carrying 5,000 others
    assert a.get("y") is not None and not any(a.get(f.name) for f in fakes[:50])
    assert len(a.members()) == 5 and a.counters.extra["stranger_assertions_ignored"] == 5001
    # The same 5,000 from a member are gossip like any other, at most MAX_NEW_PER_MESSAGE new
    # members per message (the sockets they cost are bounded by the transport's LRU).
    feed(a, "b", PushPull((state("b"), *fakes), False))
    assert len(a.members()) == 5 + MAX_NEW_PER_MESSAGE
    assert a.counters.extra["new_members_capped"] == 5000 - MAX_NEW_PER_MESSAGE
    feed(a, "b", PushPull((state("b"), *fakes), False))
    assert len(a.members()) == 5 + 2 * MAX_NEW_PER_MESSAGE


def test_a_push_pull_we_asked_for_is_learned_whole_and_only_once() -> None:
    a = node("a")
    a.handle(Discovered("seed:1", None), 0.0)
    answer = PushPull((state("seed"), state("b"), state("c")), False)
    feed(a, "seed", answer)
    assert {s.name for s in a.members()} == {"a", "seed", "b", "c"}
    # An answer from an address we never asked, or a second one, is a stranger's (or a member's).
    other = node("o")
    feed(other, "seed", answer)
    assert {s.name for s in other.members()} == {"o", "seed"}
    # An answer whose sender gives another address than the one we asked is not the answer.
    late = node("l")
    late.handle(Discovered("seed:1", None), 0.0)
    moved = replace(state("seed"), address="elsewhere:1")
    feed(late, "seed", PushPull((moved, state("b")), False))
    assert {s.name for s in late.members()} == {"l", "seed"}
    # And the asking expires.
    slow = node("s")
    slow.handle(Discovered("seed:1", None), 0.0)
    tick_until(slow, 0.0, 2 * CFG.push_pull_interval + 0.01)
    feed(slow, "seed", answer, 2 * CFG.push_pull_interval + 0.01)
    assert {s.name for s in slow.members()} == {"s", "seed"}


def test_a_live_member_moves_only_on_its_own_word_and_with_a_new_incarnation() -> None:
    a = with_peers("b", "c")
    moved = replace(state("b", 1), address="evil:1")
    feed(a, "c", Gossip((state("c"), moved)))  # a third party redirects b: refused
    assert a.get("b").address == "b:1"  # type: ignore[union-attr]
    feed(a, "b", Gossip((replace(state("b", 0), address="evil:1"),)))  # same incarnation: refused
    assert a.get("b").address == "b:1"  # type: ignore[union-attr]
    assert a.counters.extra["address_conflict"] == 2
    feed(a, "b", Gossip((replace(state("b", 1), address="new:1"),)))  # restarted on a new port
    assert a.get("b").address == "new:1"  # type: ignore[union-attr]
    # A DEAD member may come back anywhere, whoever brings the news (a restart elsewhere).
    feed(a, "b", Gossip((state("c", 0, DEAD),)))
    feed(a, "b", Gossip((replace(state("c", 1), address="c2:1"),)))
    assert a.get("c").address == "c2:1" and a.get("c").status == ALIVE  # type: ignore[union-attr]


def test_ping_req_only_for_members_and_to_the_address_we_know() -> None:
    c = with_peers("a", "b", me="c")
    (ping,) = sends(feed(c, "a", PingReq(41, "b", "evil:1", (state("a"),))), Ping)
    assert ping.address == "b:1"  # not where the request said
    assert sends(feed(c, "x", PingReq(42, "b", "b:1", (state("x"),))), Ping) == []  # a stranger
    assert sends(feed(c, "a", PingReq(43, "nobody", "evil:1", (state("a"),))), Ping) == []
    assert c.counters.extra["ping_req_refused"] == 2
    # At most MAX_RELAYS at a time, whoever asks: PingReqs must not become a ping flood.
    many = with_peers("a", *(f"p{i}" for i in range(100)), me="c")
    pings = [
        p
        for i in range(100)
        for p in sends(feed(many, "a", PingReq(i, f"p{i}", f"p{i}:1", ())), Ping)
    ]
    assert len(pings) == MAX_RELAYS


def test_counters_that_would_overflow_the_wire_are_refused() -> None:
    from handoffd.membership.swim import MAX_COUNTER
    from handoffd.protocol import codec

    a = with_peers("b")
    huge = (1 << 64) - 1
    feed(a, "b", Gossip((replace(a.me, incarnation=huge, status=DEAD),)))
    feed(a, "b", Gossip((state("b", rv=huge), state("b", inc=MAX_COUNTER + 1))))
    assert a.me.incarnation == 0 and a.get("b").incarnation == 0  # type: ignore[union-attr]
    assert a.counters.extra["implausible_counter"] == 3
    codec.encode(Gossip((a.me,)), sender="a")  # still encodable


def test_a_state_with_a_status_that_is_none_of_ours_is_refused() -> None:
    # The codec takes any int as a status; a stranger's own state with status 7 raised IndexError
    # in the merge (and a peer's page could carry one about anybody).
    a = with_peers("b")
    feed(a, "x", Gossip((state("x", status=7),)))
    feed(a, "b", Gossip((state("b", inc=3, status=-1), replace(a.me, status=9))))
    assert a.get("x") is None and a.get("b").incarnation == 0  # type: ignore[union-attr]
    assert a.me.incarnation == 0 and a.counters.extra["implausible_counter"] == 3


def test_a_member_we_hold_dead_that_talks_to_us_is_told_so_once_per_probe_interval() -> None:
    from handoffd.membership.swim import HeardFrom

    a = with_peers("b", "c")
    assert a.handle(HeardFrom("b"), 0.0) == []  # alive: nothing to say
    feed(a, "c", Gossip((state("b", 0, DEAD),)))
    (told,) = sends(a.handle(HeardFrom("b"), 1.0), Gossip)
    assert told.address == "b:1" and state("b", 0, DEAD) in told.msg.updates  # so b refutes
    assert a.handle(HeardFrom("b"), 1.0 + CFG.probe_interval / 2) == []
    assert sends(a.handle(HeardFrom("b"), 1.0 + CFG.probe_interval), Gossip)
    assert a.handle(HeardFrom("nobody"), 2.0) == []  # never to an address we do not know


def test_a_push_pull_that_teaches_members_brings_the_next_one_forward() -> None:
    """A join storm's tail is closed by anti-entropy, not by gossip 16 states at a time: an
    answer that taught us members makes the next push-pull come after push_pull_storm_share of
    the interval, and so do the next two that teach nothing (then the interval again); resource
    news alone teaches nothing."""
    a = with_peers("b", "c")  # the join's answer taught b and c
    share = CFG.push_pull_interval * CFG.push_pull_storm_share
    now = 0.0
    quiet = PushPull((state("b"), state("c", free=3.0, rv=1)), False)  # resource news only
    for expected_soon in (True, True, False):
        now = a._next_push_pull_at
        (ask,) = sends(a.handle(Tick(), now), PushPull)
        assert ask.msg.reply_wanted
        feed(a, "b", quiet, now)
        soon = now + share
        if expected_soon:
            assert a._next_push_pull_at == pytest.approx(soon)
        else:
            assert a._next_push_pull_at == pytest.approx(now + CFG.push_pull_interval)
    # An answer that teaches members starts the soon syncs again.
    feed(a, "b", PushPull((state("b"), state("d"), state("e")), False), now)
    assert a._next_push_pull_at == pytest.approx(now + share)
    assert a.next_deadline() <= now + share


# -- a healed partition and a join storm (issue 20, gossip20) -------------------------------------


def test_a_push_pull_pages_dead_verdict_on_a_live_member_is_held_then_suspected() -> None:
    """After a heal each side's pages say DEAD of the other side's members: taking that declared
    every member DEAD on its own side. A page's DEAD on a member we hold live is held; still
    standing a push-pull interval later (a death whose rumor missed us), it is our suspicion."""
    a = with_peers("b", "c", "d")
    out = feed(a, "b", PushPull((state("b"), state("c", 0, DEAD)), False), 1.0)
    assert changes(out) == [] and a.get("c").status == ALIVE  # type: ignore[union-attr]
    assert a.counters.extra["page_verdicts_held"] == 1
    (told,) = sends(out, Gossip)  # passed on to c, which refutes if it lives
    assert told.address == "c:1" and state("c", 0, DEAD) in told.msg.updates
    later = 1.0 + CFG.push_pull_interval / 2
    feed(a, "d", PushPull((state("d"), state("c", 0, DEAD)), False), later)
    assert a.get("c").status == ALIVE  # type: ignore[union-attr]
    late = 1.0 + CFG.push_pull_interval
    out = feed(a, "d", PushPull((state("d"), state("c", 0, DEAD)), False), late)
    assert changes(out) == [("c", ALIVE, SUSPECT)]  # our own timer decides now
    # Gossip (a rumor, not a settled view) still declares DEAD at once, as SWIM does.
    out = feed(a, "b", Gossip((state("d", 0, DEAD),)), late)
    assert changes(out) == [("d", ALIVE, DEAD)]
    # A refutation clears a held verdict: a later page starts the wait again.
    a2 = with_peers("b", "c")
    feed(a2, "b", PushPull((state("b"), state("c", 0, DEAD)), False), 1.0)
    feed(a2, "c", Gossip((state("c", 1),)), 1.5)
    feed(a2, "b", PushPull((state("b"), state("c", 1, DEAD)), False), 1.0 + CFG.push_pull_interval)
    assert a2.get("c").status == ALIVE  # type: ignore[union-attr]


def test_a_suspected_or_dead_member_that_gossips_to_us_is_told_so() -> None:
    """The other side of a healed partition talks to us without knowing we hold it DEAD (or a
    suspicion of it missed it): it is told (once per probe interval), so it refutes."""
    a = with_peers("b", "c", "d")
    feed(a, "c", Gossip((state("b", 0, DEAD), state("d", 0, SUSPECT))))
    (told,) = sends(feed(a, "b", Gossip((state("b"),)), 1.0), Gossip)
    assert told.address == "b:1" and state("b", 0, DEAD) in told.msg.updates
    assert sends(feed(a, "b", Gossip((state("b"),)), 1.0 + CFG.probe_interval / 2)) == []
    (told,) = sends(feed(a, "d", Gossip((state("d"),)), 1.0), Gossip)
    assert told.address == "d:1" and told.msg.updates[1].status == SUSPECT
    assert sends(feed(a, "c", Gossip((state("c"),)), 1.0)) == []  # alive: nothing to say
    # Its refutation ends it.
    feed(a, "d", Gossip((state("d", 1),)), 2.0)
    assert sends(feed(a, "d", Gossip((state("d", 1),)), 3.0)) == []


def test_members_learned_in_bulk_get_fewer_sends_but_other_news_keeps_its_budget() -> None:
    """A join storm: each node learns n members, and rumoring each with the whole retransmit
    budget took time linear in n. Members just learned share records.DRAIN_ROUNDS rounds' sends."""
    from handoffd.membership import records

    many = [state(f"p{i}") for i in range(400)]
    a = node("a")
    a.handle(Discovered("p0:1", "p0"), 0.0)
    for i in range(0, 400, 50):
        feed(a, "p0", PushPull(tuple(many[i : i + 50]), False))
    limit = a._retransmit_limit()
    bulk = records.bulk_limit(limit, 400, len(a.members()), CFG)
    budget = CFG.gossip_fanout * CFG.max_piggyback * records.DRAIN_ROUNDS
    assert bulk == max(records.MIN_SENDS, budget // 400) < limit
    # A refutation among them keeps the whole limit.
    feed(a, "p1", Gossip((state("p1", 1),)))
    sent: dict[str, int] = {}
    for _ in range(1000):
        for s in a._piggyback("p2")[1:]:
            sent[s.name] = sent.get(s.name, 0) + 1
        if not a.news_pending:
            break
    assert sent["p1"] == limit
    # The rest: each at least _MIN_SENDS times, far from the whole limit in all.
    joins = [v for k, v in sent.items() if k != "p1"]
    assert len(joins) == 399 and min(joins) >= records.MIN_SENDS
    assert sum(joins) < 399 * limit / 2, (sum(joins), 399 * limit)


def test_a_healed_partitions_members_keep_the_whole_retransmit_limit() -> None:
    """Members re-learned after a heal (a tenth of the view) are not a storm: thinned to a few
    sends, some views missed them and waited for push-pull pages (72 s at 1,000 nodes); a storm,
    most of the view just learned, is still thinned."""
    from handoffd.membership import records

    limit = 12
    assert records.bulk_limit(limit, 100, 1000, CFG) == limit
    assert records.bulk_limit(limit, 250, 1000, CFG) == limit
    storm = records.bulk_limit(limit, 900, 1000, CFG)
    assert records.MIN_SENDS <= storm < limit
