"""Minority fencing over timelines (daemon/fencing.py, ``Quorum``): the far side of a partition
found unreachable one member at a time, slowly, must still fence us; members failing one after
another, each gone for good before the next, must not. Pure: membership views in, fenced out."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from handoffd.daemon.fencing import Quorum
from handoffd.protocol.messages import ALIVE, DEAD, SUSPECT, MemberState

EVICT = 5.0
STEP = 0.25  # how often the daemon recomputes the quorum at least (it does every 0.5 s)
NAMES = "abcdefghi"


def view(status: dict[str, int]) -> list[MemberState]:
    return [
        MemberState(name, f"{name}:1", "c", 0, st_, {"cpu": 1.0}, {"cpu": 1.0}, 0)
        for name, st_ in status.items()
    ]


def timeline(
    n: int, lost: dict[str, tuple[float, float]], until: float, step: float = STEP
) -> Iterator[tuple[float, dict[str, int]]]:
    """Views of ``n`` members every ``step`` seconds up to ``until``: member -> (when it turns
    SUSPECT, when DEAD) for those lost (never back); the others stay ALIVE."""
    now = 0.0
    while now <= until:
        status = {}
        for name in NAMES[:n]:
            suspect, dead = lost.get(name, (float("inf"), float("inf")))
            status[name] = DEAD if now >= dead else SUSPECT if now >= suspect else ALIVE
        yield now, status
        now = round(now + step, 6)


def run(q: Quorum, n: int, lost: dict[str, tuple[float, float]], until: float) -> list[bool]:
    """Drive ``q`` (``a``) along the timeline; the fenced flag after each view."""
    fenced = []
    for now, status in timeline(n, lost, until):
        q.update(view(status), now)
        fenced.append(q.fenced)
    return fenced


def test_a_partition_found_one_member_at_a_time_still_fences_the_minority() -> None:
    """7 members, cut 3 | 4: the 4 far ones turn SUSPECT 3 s apart (each DEAD 1 s later), less
    than evict_after (5 s) apart but 9 s from first to last. Before: the first two had been DEAD
    for evict_after by the time the third was unreachable, left the base (7 -> 5), and the
    minority saw 3 of 5, then 3 of 4...: never fenced, acting on the majority's nodes as dead.
    Now the loss episode (first loss to none unreachable) is judged against its base of 7."""
    q = Quorum("a", EVICT)
    lost = {name: (3.0 * i, 3.0 * i + 1.0) for i, name in enumerate("defg", start=1)}
    fenced = run(q, 7, lost, 40.0)
    assert not any(fenced[: int(12.0 / STEP)])  # 3 of 7 unreachable: a majority still
    assert all(fenced[int(12.0 / STEP) :])  # the fourth: 3 of 7 reachable, from then on
    assert q.base == set(NAMES[:7]) and q.reachable == 3 and q.times_fenced == 1


def test_members_failing_one_after_another_leave_the_base_one_episode_each() -> None:
    """The same four lost 7 s apart (each DEAD 1 s after it turned SUSPECT): each has been DEAD
    for evict_after before the next is lost, so each leaves the base alone and the survivors
    (3 of what is left, then 3 of 3) are never at risk."""
    q = Quorum("a", EVICT)
    lost = {name: (7.0 * i, 7.0 * i + 1.0) for i, name in enumerate("defg", start=1)}
    for now, status in timeline(7, lost, 40.0):
        q.update(view(status), now)
        assert not q.at_risk and not q.fenced, (now, q.base)
    assert q.base == {"a", "b", "c"}


def test_an_episode_leaves_the_base_together_once_all_its_members_are_evictable() -> None:
    """e lost at 1, d at 4: e alone has been DEAD for evict_after at 6, but d (lost within the
    same episode) not yet: both leave the base together at 9."""
    q = Quorum("a", EVICT)
    lost = {"e": (1.0, 1.5), "d": (4.0, 4.5)}
    for now, status in timeline(5, lost, 8.75):
        q.update(view(status), now)
        assert len(q.base) == 5, now
    q.update(view({"a": ALIVE, "b": ALIVE, "c": ALIVE, "d": DEAD, "e": DEAD}), 9.0)
    assert q.base == {"a", "b", "c"} and not q.fenced


def test_a_refuted_suspicion_holds_an_episode_only_while_it_lasts() -> None:
    """e DEAD since 1 is evictable at 6, but d is SUSPECT from 5.5 (it may be the next far member
    lost): e waits; d refutes at 6.5 (a flap, not a loss), the episode is e alone again, and e
    leaves the base at once."""
    q = Quorum("a", EVICT)
    q.update(view(dict.fromkeys("abcde", ALIVE)), 0.0)
    q.update(view({"a": ALIVE, "b": ALIVE, "c": ALIVE, "d": ALIVE, "e": DEAD}), 1.0)
    q.update(view({"a": ALIVE, "b": ALIVE, "c": ALIVE, "d": SUSPECT, "e": DEAD}), 5.5)
    q.update(view({"a": ALIVE, "b": ALIVE, "c": ALIVE, "d": SUSPECT, "e": DEAD}), 6.25)
    assert len(q.base) == 5
    q.update(view({"a": ALIVE, "b": ALIVE, "c": ALIVE, "d": ALIVE, "e": DEAD}), 6.5)
    assert q.base == {"a", "b", "c", "d"} and not q.at_risk


def test_crashes_found_one_at_a_time_fence_until_their_hosts_refuse() -> None:
    """The same staggered losses as crashes (kill -9, hosts up): fenced at the fourth, then every
    unreachable member of the episode (the first ones included: still in the base) is asked
    about, refuses, and leaves the base at once: the survivors go on long before fence_max."""
    q = Quorum("a", EVICT, fence_max=60.0)
    lost = {name: (3.0 * i, 3.0 * i + 1.0) for i, name in enumerate("defg", start=1)}
    assert not any(run(q, 7, lost, 11.75))
    status = {name: ALIVE for name in "abc"} | {name: DEAD for name in "defg"}
    assert q.update(view(status), 12.0) and q.fenced
    assert q.unreachable() == ["d", "e", "f", "g"]
    assert q.update(view(status), 13.0, gone={"d", "e", "f", "g"})
    assert not q.fenced and q.base == {"a", "b", "c"} and q.refusal() is None


def test_a_moment_at_risk_restarts_the_clock_of_who_is_down() -> None:
    """No eviction is judged across a moment at risk: e (DEAD since 1) is timed again from the
    end of the moment at 3 (d and c SUSPECT for less than confirm_after, then refuted), and leaves
    the base at 8, not 6. Before, it never left the base (its loss predated the last moment at
    risk for ever), nor, since it kept its episode open, would anyone lost after it."""
    q = Quorum("a", EVICT, confirm_after=0.5)
    q.update(view(dict.fromkeys("abcde", ALIVE)), 0.0)
    q.update(view({"a": ALIVE, "b": ALIVE, "c": ALIVE, "d": ALIVE, "e": DEAD}), 1.0)
    q.update(view({"a": ALIVE, "b": ALIVE, "c": SUSPECT, "d": SUSPECT, "e": DEAD}), 2.8)
    assert q.at_risk and not q.fenced
    calm = view({"a": ALIVE, "b": ALIVE, "c": ALIVE, "d": ALIVE, "e": DEAD})
    q.update(calm, 3.0)
    assert not q.at_risk and len(q.base) == 5
    q.update(calm, 7.9)
    assert len(q.base) == 5
    q.update(calm, 8.0)
    assert q.base == {"a", "b", "c", "d"}


@st.composite
def staggered_partitions(draw: st.DrawFn) -> tuple[int, dict[str, tuple[float, float]], float]:
    """A base of n (3..9) and a set S of at least half of it (never ``a``) lost for good, each
    SUSPECT less than evict_after after the one before (in steps of 0.05 s), DEAD 0-4 s later
    or never (its verdict held)."""
    n = draw(st.integers(3, 9))
    others = list(NAMES[1:n])
    k = draw(st.integers((n + 1) // 2, n - 1))
    lost_names = draw(st.permutations(others))[:k]
    # Rounded like every later time and the timeline's clock: an unrounded 3 * 0.05 is
    # 0.15000000000000002, after a second member lost "0 steps later" at round(...) = 0.15.
    lost, at = {}, round(draw(st.integers(1, 40)) * 0.05, 6)
    for i, name in enumerate(lost_names):
        if i:
            at = round(at + draw(st.integers(0, int(EVICT / 0.05) - 1)) * 0.05, 6)
        dead = draw(st.one_of(st.none(), st.integers(0, 80)))
        lost[name] = (at, float("inf") if dead is None else round(at + dead * 0.05, 6))
    return n, lost, at


@settings(max_examples=200, deadline=None)
@given(staggered_partitions(), st.sampled_from([0.05, 0.25, 0.5]))
def test_property_a_partition_however_staggered_fences_the_minority(
    case: tuple[int, dict[str, tuple[float, float]], float], step: float
) -> None:
    """Property: in a base B of 3 or more, if a set S with 2 * |B - S| <= |B| becomes unreachable
    for good, each member of S less than evict_after after the one before (the others staying
    reachable), then (a) no member leaves the base, (b) from the first view after the last of S
    is unreachable we are fenced and stay so (fence_max infinite), and (c) we are fenced in no
    view in which a majority of B is still reachable. Without the episode rule (a) and (b) fail,
    e.g. 7 members, 4 lost 3 s apart (the first test here)."""
    n, lost, last = case
    q = Quorum("a", EVICT)
    for now, status in timeline(n, lost, last + 2 * EVICT, step):
        q.update(view(status), now)
        reachable = sum(1 for st_ in status.values() if st_ == ALIVE)
        assert q.base == set(NAMES[:n]), (now, q.base)
        if now >= last:
            assert q.fenced, (now, status)
        elif 2 * reachable > n:
            assert not q.fenced, (now, status)


@st.composite
def sequential_failures(draw: st.DrawFn) -> tuple[int, dict[str, tuple[float, float]], float]:
    """A base of n (3..9); any number of members but ``a`` lost one after another, each DEAD
    0-4 s after it turned SUSPECT, the next lost at least a step after the one before had been
    DEAD and lost for evict_after (so a view sees it evictable first)."""
    n = draw(st.integers(3, 9))
    order = draw(st.permutations(list(NAMES[1:n])))[: draw(st.integers(1, n - 1))]
    lost, free = {}, draw(st.integers(1, 40)) * 0.05
    for name in order:
        at = round(free + draw(st.integers(0, 200)) * 0.05, 6)
        dead = round(at + draw(st.integers(0, 80)) * 0.05, 6)
        lost[name] = (at, dead)
        free = round(max(at + EVICT, dead) + 0.5 + 0.05, 6)  # 0.5: the coarsest step
    return n, lost, free


@settings(max_examples=200, deadline=None)
@given(sequential_failures(), st.sampled_from([0.05, 0.25, 0.5]))
def test_property_failures_one_after_another_never_put_the_survivors_at_risk(
    case: tuple[int, dict[str, tuple[float, float]], float], step: float
) -> None:
    """Converse property: members lost one after another, each DEAD for evict_after before the
    next is unreachable, leave the base in turn; the survivors (down to ``a`` alone) are never
    at risk nor fenced, and at the end the base is exactly the survivors."""
    n, lost, end = case
    q = Quorum("a", EVICT)
    for now, status in timeline(n, lost, end, step):
        q.update(view(status), now)
        assert not q.at_risk and not q.fenced, (now, q.base, status)
    assert q.base == set(NAMES[:n]) - set(lost)
