"""Minority fencing's quorum (daemon/fencing.py): pure, membership views in, fenced or not out."""

from __future__ import annotations

from handoffd.daemon.fencing import Quorum
from handoffd.protocol.messages import ALIVE, DEAD, LEFT, SUSPECT, MemberState

EVICT = 10.0


def view(**status: int) -> list[MemberState]:
    return [
        MemberState(name, f"{name}:1", "c", 0, st, {"cpu": 1.0}, {"cpu": 1.0}, 0)
        for name, st in status.items()
    ]


def five() -> Quorum:
    q = Quorum("a", EVICT)
    q.update(view(a=ALIVE, b=ALIVE, c=ALIVE, d=ALIVE, e=ALIVE), 0.0)
    assert q.base == {"a", "b", "c", "d", "e"} and not q.fenced
    return q


def test_the_minority_side_of_a_partition_is_fenced_and_resumes_after_the_heal() -> None:
    q = five()
    assert not q.update(view(a=ALIVE, b=ALIVE, c=SUSPECT, d=ALIVE, e=ALIVE), 1.0)
    assert q.update(view(a=ALIVE, b=ALIVE, c=SUSPECT, d=SUSPECT, e=SUSPECT), 1.5)
    assert q.fenced and q.reachable == 2
    assert q.refusal() == (
        "this node is in a minority partition (2 of 5 reachable); retry on another node"
    )
    # However long the partition lasts, the far side never leaves the base while we are fenced.
    assert not q.update(view(a=ALIVE, b=ALIVE, c=DEAD, d=DEAD, e=DEAD), 100.0)
    assert q.fenced and len(q.base) == 5
    assert q.update(view(a=ALIVE, b=ALIVE, c=ALIVE, d=ALIVE, e=ALIVE), 101.0)
    assert not q.fenced and q.refusal() is None and q.times_fenced == 1


def test_the_majority_side_keeps_going_and_drops_the_far_side_after_a_while() -> None:
    q = five()
    q.update(view(a=ALIVE, b=ALIVE, c=ALIVE, d=SUSPECT, e=SUSPECT), 1.0)
    assert not q.fenced and q.reachable == 3
    q.update(view(a=ALIVE, b=ALIVE, c=ALIVE, d=DEAD, e=DEAD), 2.0)
    assert len(q.base) == 5  # not yet: a partition's far side looks the same at first
    q.update(view(a=ALIVE, b=ALIVE, c=ALIVE, d=DEAD, e=DEAD), 1.0 + EVICT)
    assert q.base == {"a", "b", "c"}
    # Now one more failure leaves 2 of 3: still a majority of what is left.
    q.update(view(a=ALIVE, b=ALIVE, c=DEAD), 20.0)
    assert not q.fenced and q.reachable == 2


def test_members_failing_one_after_another_never_fence_the_survivors() -> None:
    q = five()
    alive = {"a", "b", "c", "d", "e"}
    now = 0.0
    for victim in ("e", "d", "c"):
        alive.discard(victim)
        now += 1.0
        statuses = {n: (ALIVE if n in alive else DEAD) for n in "abcde" if n in q.base}
        q.update(view(**statuses), now)
        now += EVICT
        q.update(view(**statuses), now)
        assert not q.fenced, (victim, q.base)
    assert q.base == {"a", "b"}


def test_a_graceful_leave_shrinks_the_base_at_once_and_small_clusters_are_never_fenced() -> None:
    q = five()
    q.update(view(a=ALIVE, b=ALIVE, c=LEFT, d=LEFT, e=ALIVE), 1.0)
    assert q.base == {"a", "b", "e"} and not q.fenced
    pair = Quorum("a", EVICT)
    pair.update(view(a=ALIVE, b=ALIVE), 0.0)
    pair.update(view(a=ALIVE, b=DEAD), 1.0)
    assert not pair.fenced  # half of two: the survivor of a crash must keep working


def test_a_member_still_dead_after_the_heal_leaves_the_base_later() -> None:
    q = five()
    q.update(view(a=ALIVE, b=ALIVE, c=DEAD, d=DEAD, e=DEAD), 1.0)
    assert q.fenced
    q.update(view(a=ALIVE, b=ALIVE, c=ALIVE, d=ALIVE, e=DEAD), 50.0)
    assert not q.fenced and "e" in q.base
    q.update(view(a=ALIVE, b=ALIVE, c=ALIVE, d=ALIVE, e=DEAD), 50.0 + EVICT)
    assert "e" not in q.base


def test_a_moment_at_risk_is_not_a_fence() -> None:
    """A starved loop can see a few peers SUSPECT at once; they refute within a probe round.
    Fenced only when at most half stays reachable for confirm_after; at risk meanwhile (the
    daemon already holds DEAD verdicts back then)."""
    q = Quorum("a", EVICT, confirm_after=0.3)
    q.update(view(a=ALIVE, b=ALIVE, c=ALIVE), 0.0)
    assert not q.update(view(a=ALIVE, b=SUSPECT, c=SUSPECT), 1.0)
    assert q.at_risk and not q.fenced
    assert not q.update(view(a=ALIVE, b=ALIVE, c=ALIVE), 1.2)
    assert not q.at_risk and not q.fenced and q.times_fenced == 0
    q.update(view(a=ALIVE, b=SUSPECT, c=SUSPECT), 2.0)
    assert q.update(view(a=ALIVE, b=SUSPECT, c=DEAD), 2.4)
    assert q.fenced and q.times_fenced == 1


def test_a_fence_ends_after_fence_max_without_the_unreachable() -> None:
    """More than half failed at once (the owner and a standby killed together): after fence_max
    nobody came back, so the survivors go on without them (and a longer partition ends as before
    fencing: documented)."""
    q = Quorum("a", EVICT, fence_max=15.0)
    q.update(view(a=ALIVE, b=ALIVE, c=ALIVE, d=ALIVE), 0.0)
    assert q.update(view(a=ALIVE, b=ALIVE, c=SUSPECT, d=SUSPECT), 1.0) and q.fenced
    assert not q.update(view(a=ALIVE, b=ALIVE, c=SUSPECT, d=SUSPECT), 10.0)
    assert q.update(view(a=ALIVE, b=ALIVE, c=SUSPECT, d=SUSPECT), 16.0)
    assert not q.fenced and q.base == {"a", "b"} and q.refusal() is None


def test_members_confirmed_gone_leave_the_base_and_end_the_fence_at_once() -> None:
    """Three of five crashed together: fenced; once their addresses refuse connections (their
    hosts up, nothing listening: a crash, never a partition) they leave the base like a LEFT
    member, and the survivors go on long before fence_max."""
    q = Quorum("a", EVICT, fence_max=60.0)
    q.update(view(a=ALIVE, b=ALIVE, c=ALIVE, d=ALIVE, e=ALIVE), 0.0)
    down = view(a=ALIVE, b=ALIVE, c=SUSPECT, d=SUSPECT, e=DEAD)
    assert q.update(down, 1.0) and q.fenced
    assert q.unreachable() == ["c", "d", "e"]
    assert not q.update(down, 2.0, gone={"c"})
    assert q.fenced and q.base == {"a", "b", "d", "e"}  # 2 of 4: still at most half
    assert q.update(down, 2.5, gone={"c", "d", "e"})
    assert not q.fenced and q.base == {"a", "b"} and q.refusal() is None
    # Back again (restarted): they rejoin the base when seen ALIVE.
    q.update(view(a=ALIVE, b=ALIVE, c=ALIVE, d=ALIVE, e=ALIVE), 3.0)
    assert q.base == {"a", "b", "c", "d", "e"}


def test_a_partition_gives_no_evidence_and_stays_fenced_up_to_fence_max() -> None:
    """The far side of a partition never refuses (it times out): the fence holds past the old
    15 s cap, up to fence_max; an ALIVE member named gone (a stale answer) stays in the base."""
    q = Quorum("a", EVICT, fence_max=60.0)
    q.update(view(a=ALIVE, b=ALIVE, c=ALIVE, d=ALIVE, e=ALIVE), 0.0)
    assert q.update(view(a=ALIVE, b=ALIVE, c=SUSPECT, d=SUSPECT, e=SUSPECT), 1.0)
    assert not q.update(view(a=ALIVE, b=ALIVE, c=SUSPECT, d=SUSPECT, e=SUSPECT), 30.0, gone={"b"})
    assert q.fenced and q.base == {"a", "b", "c", "d", "e"}
    assert q.update(view(a=ALIVE, b=ALIVE, c=SUSPECT, d=SUSPECT, e=SUSPECT), 61.0)
    assert not q.fenced and q.base == {"a", "b"}


def test_verdicts_stay_held_for_a_while_after_the_heal() -> None:
    """The heal ends the fence as soon as one far member answers (3 of 5), while the other two
    are still SUSPECT here: a DEAD verdict on them then made the healed owner re-run the tasks
    they had run for the far side's takeover (tests/cluster/test_fencing_cluster.py, ~3 in 10
    under load). Verdicts stay held for settle_after after the heal, then are judged."""
    q = Quorum("a", EVICT, fence_max=60.0, settle_after=5.0)
    q.update(view(a=ALIVE, b=ALIVE, c=ALIVE, d=ALIVE, e=ALIVE), 0.0)
    assert not q.holding(0.5)
    assert q.update(view(a=ALIVE, b=ALIVE, c=SUSPECT, d=SUSPECT, e=SUSPECT), 1.0)
    assert q.fenced and q.holding(1.0)
    assert q.update(view(a=ALIVE, b=ALIVE, c=ALIVE, d=SUSPECT, e=SUSPECT), 20.0)
    assert not q.fenced and q.refusal() is None  # runs are taken again at once
    assert q.holding(20.0) and q.holding(24.9)
    assert not q.update(view(a=ALIVE, b=ALIVE, c=ALIVE, d=ALIVE, e=ALIVE), 22.0)
    assert q.holding(24.9) and not q.holding(25.0)


def test_no_settling_when_the_fence_ends_without_anyone_back() -> None:
    """Members gone (their addresses refuse) or fence_max over: nobody came back to send us
    takeovers, so their verdicts are not held any longer."""
    q = Quorum("a", EVICT, fence_max=60.0, settle_after=5.0)
    q.update(view(a=ALIVE, b=ALIVE, c=ALIVE, d=ALIVE, e=ALIVE), 0.0)
    down = view(a=ALIVE, b=ALIVE, c=SUSPECT, d=SUSPECT, e=DEAD)
    assert q.update(down, 1.0) and q.fenced
    assert q.update(down, 2.0, gone={"c", "d", "e"}) and not q.fenced
    assert not q.holding(2.0)
    q = Quorum("a", EVICT, fence_max=15.0, settle_after=5.0)
    q.update(view(a=ALIVE, b=ALIVE, c=ALIVE, d=ALIVE), 0.0)
    assert q.update(view(a=ALIVE, b=ALIVE, c=SUSPECT, d=SUSPECT), 1.0) and q.fenced
    assert q.update(view(a=ALIVE, b=ALIVE, c=SUSPECT, d=SUSPECT), 16.0) and not q.fenced
    assert not q.holding(16.0)
