"""The simulator's speed-ups keep its behaviour: ``gossip.GossipQueue`` (its hottest structure at
1,000 nodes) against the plain version it replaced, on random operation sequences, and a seeded
simulation with loss, a latency distribution, a crash, a partition and a restart run twice to the
same trace (the harness's own determinism).
"""

from __future__ import annotations

import hashlib
import logging
import random
import sys
from collections.abc import Iterator
from dataclasses import fields, replace

import pytest

from handoffd.config import PROTOCOL_MAX, MembershipConfig
from handoffd.membership import records
from handoffd.membership.gossip import GossipQueue
from handoffd.membership.records import Timers
from handoffd.membership.sim import LogNormalDelay, Simulation
from handoffd.membership.swim import Membership, Received
from handoffd.protocol.messages import ALIVE, SUSPECT, Gossip, MemberState


class ReferenceGossipQueue:
    """gossip.GossipQueue as it was before issue 20's speed-up (dict per bucket, name by name)."""

    def __init__(self) -> None:
        self._count: dict[str, int] = {}
        self.added = 0  # states queued since the start: one per change of the view
        # transmissions -> names (insertion ordered: the oldest news of a count goes first)
        self._buckets: dict[int, dict[str, None]] = {}

    def __len__(self) -> int:
        return len(self._count)

    def __bool__(self) -> bool:
        return bool(self._count)

    def __contains__(self, name: object) -> bool:
        return name in self._count

    def __iter__(self) -> Iterator[str]:
        return iter(self._count)

    def add(self, name: str) -> None:
        """``name``'s newest state restarts its retransmit budget."""
        self.discard(name)
        self.added += 1
        self._count[name] = 0
        self._buckets.setdefault(0, {})[name] = None

    def discard(self, name: str) -> None:
        count = self._count.pop(name, None)
        if count is not None:
            bucket = self._buckets[count]
            del bucket[name]
            if not bucket:
                del self._buckets[count]

    def heard(self, name: str, limit: int) -> None:
        """A peer told us ``name``'s state we already hold: the news is spreading without us, so
        it counts against ``name``'s budget like a send (rumor mongering with feedback, Demers
        et al. 1987). After a mass join this retires the backlog once most peers know it."""
        count = self._count.get(name)
        if count is None:
            return
        bucket = self._buckets[count]
        del bucket[name]
        if not bucket:
            del self._buckets[count]
        if count + 1 >= limit:
            del self._count[name]
        else:
            self._count[name] = count + 1
            self._buckets.setdefault(count + 1, {})[name] = None

    def take(self, room: int, limit: int, seen: set[str]) -> list[str]:
        """Up to ``room`` names not in ``seen``, fewest transmissions first; every name passed over
        on the way (already in ``seen``: it rides in the message anyway) counts as sent too. A name
        sent ``limit`` times leaves the queue."""
        chosen: list[str] = []
        touched: list[tuple[str, int]] = []
        for count in sorted(self._buckets):
            for name in self._buckets[count]:
                if name not in seen:
                    if len(chosen) >= room:
                        break
                    chosen.append(name)
                    seen.add(name)
                touched.append((name, count))
            else:
                continue
            break
        buckets = self._buckets
        for name, count in touched:  # moved after the walk: a name is counted once per message
            bucket = buckets[count]
            del bucket[name]
            if not bucket:
                del buckets[count]
            if count + 1 >= limit:
                del self._count[name]
            else:
                self._count[name] = count + 1
                buckets.setdefault(count + 1, {})[name] = None
        return chosen


@pytest.mark.parametrize("seed", range(20))
def test_gossip_queue_matches_the_plain_version(seed: int) -> None:
    rng = random.Random(seed)
    fast, plain = GossipQueue(), ReferenceGossipQueue()
    names = [f"n{i}" for i in range(rng.choice((5, 40, 300)))]
    for _ in range(3000):
        roll = rng.random()
        limit = rng.choice((2, 4, 12, 40))
        if roll < 0.3:
            name = rng.choice(names)
            fast.add(name)
            plain.add(name)
        elif roll < 0.55:
            name = rng.choice(names)
            fast.heard(name, limit)
            plain.heard(name, limit)
        elif roll < 0.6:
            name = rng.choice(names)
            fast.discard(name)
            plain.discard(name)
        else:
            room = rng.choice((0, 1, 3, 15, 100))
            seen = set(rng.sample(names, rng.randint(0, min(len(names), 20))))
            seen_plain = set(seen)
            assert fast.take(room, limit, seen) == plain.take(room, limit, seen_plain)
            assert seen == seen_plain
        assert fast.counts() == plain._count
        assert fast.buckets() == {c: list(b) for c, b in plain._buckets.items()}
        assert fast.added == plain.added


@pytest.mark.parametrize("seed", range(10))
def test_gossip_queue_hands_back_the_records_of_the_names_it_takes(seed: int) -> None:
    # The queue keeps each name's record beside it (issue 20: the piggyback looked each chosen name
    # up in the view): through adds, heard() moves and takes, ``held`` gets exactly the records of
    # the names taken, in order, and the names stay those of the plain version. heard_record()
    # (the merge holds the record: gossip.py) moves exactly as heard() by name, and a record a
    # newer add replaced is no longer queued.
    rng = random.Random(seed)
    fast, plain = GossipQueue(), ReferenceGossipQueue()
    names = [f"n{i}" for i in range(rng.choice((5, 40, 300)))]
    record: dict[str, records.Member] = {}
    stale: list[records.Member] = []
    for _ in range(3000):
        roll = rng.random()
        limit = rng.choice((2, 4, 12, 40))
        name = rng.choice(names)
        if roll < 0.3:
            state = MemberState(name, f"{name}:1", "c", rng.randrange(9), ALIVE, {}, {}, 0)
            if name in record:
                stale.append(record[name])
            record[name] = records.Member(state, 0.0)  # (a relearned member: a new record)
            fast.add(name, False, record[name])
            plain.add(name)
        elif roll < 0.55:
            if name in record and rng.random() < 0.5:  # (the merge's call: the record in hand)
                fast.heard_record(record[name], limit)
            else:
                fast.heard(name, limit)
            plain.heard(name, limit)
        elif roll < 0.57 and stale:  # a record a newer add replaced: not queued any more
            fast.heard_record(rng.choice(stale), limit)
        elif roll < 0.6:
            fast.discard(name)
            plain.discard(name)
        else:
            room = rng.choice((0, 1, 3, 15, 100))
            seen = set(rng.sample(names, rng.randint(0, min(len(names), 20))))
            seen_plain = set(seen)
            held: list[records.Member] = []
            chosen = fast.take(room, limit, seen, 0, held)
            assert chosen == plain.take(room, limit, seen_plain)
            assert [id(r) for r in held] == [id(record[n]) for n in chosen]
        assert fast.counts() == plain._count
        assert fast.buckets() == {c: list(b) for c, b in plain._buckets.items()}


@pytest.mark.parametrize("seed", range(10))
def test_gossip_queue_keeps_each_name_with_its_record_through_bulk_retires(seed: int) -> None:
    # take() moves whole buckets by their items and partial ones name by name, and retires bulk
    # names early: through all of it each queued name stays filed under its count with the record
    # it was added with, and a name taken hands back that record.
    rng = random.Random(seed)
    queue = GossipQueue()
    names = [f"n{i}" for i in range(rng.choice((5, 40, 300)))]
    record: dict[str, records.Member] = {}
    for _ in range(3000):
        roll = rng.random()
        limit = rng.choice((2, 4, 12, 40))
        name = rng.choice(names)
        if roll < 0.35:
            state = MemberState(name, f"{name}:1", "c", rng.randrange(9), ALIVE, {}, {}, 0)
            record[name] = records.Member(state, 0.0)
            queue.add(name, rng.random() < 0.5, record[name])
        elif roll < 0.5:
            queue.heard(name, limit, rng.choice((0, 1)))
        else:
            room = rng.choice((0, 1, 3, 15, 100))
            seen = set(rng.sample(names, rng.randint(0, min(len(names), 20))))
            held: list[records.Member] = []
            chosen = queue.take(room, limit, seen, rng.choice((0, 1, 2, 3)), held)
            assert [id(r) for r in held] == [id(record[n]) for n in chosen]
        filed = {n: c for c, names in queue.buckets().items() for n in names}
        assert filed == queue.counts()
        assert all(r is record[n] for n, r in queue._queued.items())
        assert all(r.qname == n and r.qcount == filed[n] for n, r in queue._queued.items())
        for count, names in queue.buckets().items():  # (each bucket linked both ways)
            back, r = [], queue._tails[count]
            while r is not None:
                back.append(r.qname)
                r = r.qprev
            assert back == names[::-1]
        assert queue.bulk == sum(1 for r in queue._queued.values() if r.qbulk)
        assert all(r.qcount == -1 for n, r in record.items() if n not in queue)


def _trace(seed: int) -> str:
    def latency(rng: random.Random) -> float:
        return 0.0003 + rng.lognormvariate(-8.0, 0.8)

    sim = Simulation(MembershipConfig.lan(), seed=seed, loss=0.03, delay=latency, measure_bytes=7)
    sim.add_node("n0")
    for i in range(1, 40):
        sim.add_node(f"n{i}", join=["n0"])
    sim.run_until(sim.converged, timeout=60, check_every=0.02)
    sim.crash("n5")
    sim.run_for(2.0)
    sim.partition([f"n{i}" for i in range(34, 40)], [f"n{i}" for i in range(34)])
    sim.run_for(2.0)
    sim.heal()
    sim.restart("n5", join=["n0"])
    sim.run_until(sim.converged, timeout=60, check_every=0.05)
    h = hashlib.sha256()
    for at, name, change in sim.changes:
        h.update(repr((at, name, change)).encode())
    h.update(repr((sim.stats, sorted(sim.sampled.items()), sim.now)).encode())
    return h.hexdigest()


def test_a_seeded_simulation_replays_the_same_trace() -> None:
    assert _trace(3) == _trace(3)
    assert _trace(3) != _trace(4)  # (the digest does see the run)


def test_timers_check_their_top_entry_once_until_a_deadline_changes() -> None:
    """``next_deadline`` asks for the earliest timer after every event: the top entry is checked
    against the view once, and again only after add(), changed() or a pop."""
    deadlines = {"b": 1.0, "c": 2.0}
    asked: list[str] = []

    def due(name: str) -> float | None:
        asked.append(name)
        return deadlines.get(name)

    timers = Timers(due)
    timers.add(1.0, "b")
    timers.add(2.0, "c")
    for _ in range(100):
        assert timers.earliest() == 1.0
    assert len(asked) == 1
    del deadlines["b"]  # b's suspicion refuted: its entry is stale
    timers.changed()
    assert timers.earliest() == 2.0
    assert timers.pop_due(5.0) == ["c"]
    deadlines.clear()
    assert timers.earliest() is None


def test_a_merged_state_equal_to_the_news_is_the_news_itself() -> None:
    """A refutation (or a DEAD, or new resources) that the merge would copy field for field into
    an equal state is kept as it came: the views share it, no copy is made."""
    m = Membership(
        name="a",
        address="a:1",
        cluster="c",
        capacity={"cpu": 4.0},
        config=MembershipConfig.for_tests(),
        rng=random.Random(0),
        now=0.0,
    )

    def state(inc: int, rv: int, cpu: float = 4.0) -> MemberState:
        return MemberState("b", "b:1", "c", inc, ALIVE, {"cpu": cpu}, {"cpu": cpu}, rv)

    m.handle(Received("b", "b:1", Gossip((state(0, 0),))), 0.0)
    refuted = state(1, 0)
    m.handle(Received("b", "b:1", Gossip((refuted,))), 0.1)
    assert m.get("b") is refuted
    newer = replace(refuted, resource_version=1, free={"cpu": 1.0})
    m.handle(Received("b", "b:1", Gossip((newer,))), 0.2)
    assert m.get("b") is newer
    # A restarted life at resource version 0 with another capacity: its status is newer, its
    # resources are not, so the view keeps the resources it had (a copy, not the news).
    restarted = state(2, 0, cpu=8.0)
    m.handle(Received("b", "b:1", Gossip((restarted,))), 0.3)
    held = m.get("b")
    assert held is not None and held is not restarted
    assert (held.incarnation, held.capacity, held.resource_version) == (2, {"cpu": 4.0}, 1)
    assert records.merged_is(held, replace(held, incarnation=3), True, False)
    assert not records.merged_is(held, replace(held, incarnation=3), False, False)
    assert not records.merged_is(held, replace(held, gpus=("0 A100",)), True, False)


def test_accused_is_replace_with_the_accuser_for_every_field() -> None:
    """``records.accused`` builds the state positionally: a field added to ``MemberState`` (or
    reordered) must be added there too, or a confirmation would drop it."""
    state = MemberState(
        "b",
        "b:1",
        "c",
        4,
        SUSPECT,
        {"cpu": 4.0},
        {"cpu": 2.0},
        3,
        2,
        PROTOCOL_MAX + 1,  # (past this build's: not the default)
        {"cpu": "flag"},
        ("0 A100",),
        7001,
        "a",
    )
    assert all(getattr(state, f.name) != f.default for f in fields(MemberState))  # none default
    assert records.accused(state, "z") == replace(state, accuser="z")
    assert [f.name for f in fields(MemberState)][-1] == "accuser"


def test_the_c_lognormal_delay_draws_the_floats_of_lognormvariate() -> None:
    """``LogNormalDelay`` (the bench's latency, drawn in C) gives bit for bit what
    ``0.3 ms + rng.lognormvariate(-8, 0.8)`` gives, and leaves the generator in the same state:
    a seeded run with it is the run with the Python draw."""
    ours, theirs = random.Random(7), random.Random(7)
    delay = LogNormalDelay(0.0003, -8.0, 0.8)
    for _ in range(5000):
        assert delay(ours) == 0.0003 + theirs.lognormvariate(-8.0, 0.8)
    assert ours.getstate() == theirs.getstate()


def test_a_drained_gossip_queue_starts_again_with_small_tables() -> None:
    """A dict never shrinks: the tables a storm's backlog grew to stay behind in a drained queue,
    and every later lookup in them (``heard`` on every merge) touched that memory. The first
    name queued after the queue drained gets fresh tables."""
    queue = GossipQueue()
    small = sys.getsizeof({"late": 0})
    for i in range(2000):
        queue.add(f"n{i}", True)
    while queue:
        queue.take(50, 3, set())
    assert sys.getsizeof(queue._queued) > 10 * small  # the storm's table, still there
    queue.add("late")
    assert sys.getsizeof(queue._queued) == small
    assert list(queue) == ["late"] and queue.bulk == 0
    assert queue.take(5, 3, set()) == ["late"]


def test_a_push_pull_walk_holds_records_and_finds_a_member_relearned_meanwhile() -> None:
    """``records.page`` walks the view's records (no lookup by name each); a record reaped since
    the walk began stands for its member's new record, if the member was learned again."""
    me = MemberState("a", "a:1", "c", 0, ALIVE, {}, {}, 0)
    members = {
        name: records.Member(MemberState(name, f"{name}:1", "c", 0, ALIVE, {}, {}, 0), 0.0)
        for name in ("a", "b", "c", "d", "e")
    }
    order: list[records.Member] = []
    first = records.page(me, None, members, order, 3)
    assert [s.name for s in first] == ["a", "e", "d"]
    assert all(type(r) is records.Member for r in order)
    # c is reaped and learned again (a new record, a newer incarnation); b is reaped for good.
    members["c"].reaped = True
    relearned = MemberState("c", "c:2", "c", 1, ALIVE, {}, {}, 0)
    members["c"] = records.Member(relearned, 1.0)
    members["b"].reaped = True
    del members["b"]
    second = records.page(me, None, members, order, 3)
    assert second[1] is relearned
    assert [s.name for s in second] == ["a", "c", "e"]  # (b skipped, the walk begun again)


class _Wrapped:
    """A node's Membership behind a wrapper, as tests put there: the simulator then delivers
    through ``handle(Received(...))``."""

    def __init__(self, inner: Membership) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_message_delivered_without_its_event_object_is_handled_the_same() -> None:
    """The simulator hands a plain ``Membership`` its messages through ``receive`` (no
    ``Received`` built); through ``handle(Received(...))`` the same seeded run gives the same
    trace, message for message."""

    def run(wrap: bool) -> list[tuple[float, str, str, int | None]]:
        sim = Simulation(
            MembershipConfig.lan(), seed=5, loss=0.03, delay=LogNormalDelay(0.0003, -8.0, 0.8)
        )
        sim.add_node("n0")
        for i in range(1, 20):
            sim.add_node(f"n{i}", join=["n0"])
        if wrap:
            for node in sim.nodes.values():
                node.membership = _Wrapped(node.membership)
        sim.run_for(3.0)
        sim.crash("n4")
        sim.partition([f"n{i}" for i in range(15, 20)], [f"n{i}" for i in range(15)])
        sim.run_for(6.0)
        sim.heal()
        sim.run_for(6.0)
        assert sim.stats.delivered > 1000
        return [(at, o, c.name, getattr(c, "new", None)) for at, o, c in sim.changes]

    assert run(False) == run(True)


def test_another_daemon_with_our_name_is_warned_about_once_per_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = Membership(
        name="a",
        address="a:1",
        cluster="c",
        capacity={},
        config=MembershipConfig.for_tests(),
        rng=random.Random(0),
        now=0.0,
    )
    twin = MemberState("a", "a:9", "c", 0, ALIVE, {}, {}, 0)
    with caplog.at_level(logging.WARNING, logger="handoffd.membership"):
        m.handle(Received("a", "a:9", Gossip((twin,))), 0.0)
        m.handle(Received("a", "a:9", Gossip((replace(twin, incarnation=5),))), 0.1)
        m.handle(Received("a", "a:8", Gossip((replace(twin, address="a:8"),))), 0.2)
    warned = [
        r.getMessage() for r in caplog.records if "node names must be unique" in r.getMessage()
    ]
    assert len(warned) == 2 and "'a' from a:9 (we are a:1)" in warned[0] and "a:8" in warned[1]
