"""A verdict of ours is news once (fence19c): a newer resource view of a member we hold SUSPECT or
DEAD is kept, not gossiped on with our old verdict attached. After a partition healed, the fenced
minority still held DEAD the far members it had judged before it was fenced; the majority's
resource updates of those (live) members reached it, were re-gossiped with the DEAD status, and
the majority took them (DEAD outranks ALIVE at one incarnation): its owner re-placed the tasks of
a live member (tests/cluster/test_fencing_cluster.py failed about 1 run in 24 under -n 3)."""

from __future__ import annotations

import random

from handoffd.config import MembershipConfig
from handoffd.membership.swim import (
    Discovered,
    Instruction,
    Membership,
    Received,
    ResourcesChanged,
    Send,
    Tick,
)
from handoffd.protocol.messages import (
    ALIVE,
    DEAD,
    SUSPECT,
    Ack,
    Gossip,
    MemberState,
    Ping,
    PushPull,
)

CFG = MembershipConfig.for_tests()


def state(
    name: str, inc: int = 0, status: int = ALIVE, rv: int = 0, free: float = 4.0
) -> MemberState:
    return MemberState(name, f"{name}:1", "c", inc, status, {"cpu": 4.0}, {"cpu": free}, rv)


def feed(m: Membership, sender: str, msg: object, now: float) -> list[Instruction]:
    out = m.handle(Received(sender, f"{sender}:1", msg), now)  # type: ignore[arg-type]
    m.validate()
    return out


def with_peers(*names: str) -> Membership:
    m = Membership(
        name="a",
        address="a:1",
        cluster="c",
        capacity={"cpu": 4.0},
        config=CFG,
        rng=random.Random(0),
        now=0.0,
    )
    m.handle(Discovered(f"{names[0]}:1", names[0]), 0.0)
    feed(m, names[0], PushPull(tuple(state(n) for n in names), False), 0.0)
    return m


def run(m: Membership, now: float, seconds: float) -> tuple[list[Instruction], float]:
    """Every deadline of ``m`` for ``seconds``; c and d answer their probes, b (cut off) not."""
    out: list[Instruction] = []
    end = now + seconds
    while (now := max(now, m.next_deadline())) <= end:
        step = m.handle(Tick(), now)
        for ping in [i for i in step if isinstance(i, Send) and isinstance(i.msg, Ping)]:
            peer = ping.address.split(":")[0]
            if peer in ("c", "d"):
                step += feed(m, peer, Ack(ping.msg.probe_id, (state(peer),)), now)
        out += step
        m.validate()
    return out, end


def gossiped(out: list[Instruction], name: str) -> list[int]:
    """The statuses of ``name`` our messages to others carried (it is told, to refute), push-pull
    pages aside (a page is our settled view; its receiver holds such verdicts back at first:
    assertions.page_verdict)."""
    return [
        u.status
        for i in out
        if isinstance(i, Send) and not isinstance(i.msg, PushPull) and i.address != f"{name}:1"
        for u in getattr(i.msg, "updates", ())
        if u.name == name
    ]


def test_a_newer_resource_view_does_not_replay_our_dead_verdict() -> None:
    a = with_peers("b", "c", "d")
    feed(a, "c", Gossip((state("b", 0, DEAD),)), 0.1)  # judged DEAD before a heal, say
    out, now = run(a, 0.1, 2.0)  # (less than dead_reap_after: b is not forgotten)
    assert DEAD in gossiped(out, "b")  # the verdict was news once
    assert not a.news_pending, "the verdict's sends were not spent"
    # The far side heals; a member that holds b ALIVE tells us b's newer free resources.
    out = feed(a, "c", Gossip((state("c"), state("b", 0, ALIVE, rv=3, free=1.0))), now)
    b = a.get("b")
    assert b is not None and b.status == DEAD and b.free == {"cpu": 1.0}  # kept: resources
    assert [i.name for i in out if isinstance(i, ResourcesChanged)] == ["b"]
    out, now = run(a, now, 2.0)
    assert DEAD not in gossiped(out, "b"), "our old DEAD verdict rode on b's resources"


def test_a_newer_resource_view_does_not_replay_our_suspicion() -> None:
    a = with_peers("b", "c", "d")
    feed(a, "c", Gossip((state("b", 0, SUSPECT),)), 0.1)
    a.hold_verdicts(True)  # fenced: the suspicion stands (daemon/fencing.py)
    out, now = run(a, 0.1, 2.0)
    assert SUSPECT in gossiped(out, "b") and not a.news_pending
    feed(a, "c", Gossip((state("c"), state("b", 0, ALIVE, rv=3, free=1.0))), now)
    assert a.get("b").status == SUSPECT  # type: ignore[union-attr]
    out, now = run(a, now, 1.0)
    assert SUSPECT not in gossiped(out, "b")


def test_a_verdict_still_being_spread_keeps_its_sends() -> None:
    """Only a verdict already spread stays quiet: one still in the queue goes on."""
    a = with_peers("b", "c", "d")
    feed(a, "c", Gossip((state("b", 0, DEAD),)), 0.1)
    feed(a, "d", Gossip((state("d"), state("b", 0, ALIVE, rv=3, free=1.0))), 0.1)
    out, _ = run(a, 0.1, 1.0)
    assert DEAD in gossiped(out, "b")
