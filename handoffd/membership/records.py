# cython: annotation_typing=False
"""The bookkeeping ``swim.Membership`` keeps per member and per probe, and the structures that keep
its per-event cost independent of the cluster size (issue 20): a node handles a few dozen events a
second whatever n is, so no event may walk every member.

- ``gossip.GossipQueue`` (its own module): names whose newest state is still to be piggybacked,
  threaded through their ``Member`` records.
- ``IndexedSet``: the live (or DEAD) peers as a list with an index, for O(1) add/remove and
  O(k) random samples (gossip fanout, indirect probe relays, push-pull partner).
- ``Timers``: suspicion deadlines and reap times in a heap (stale entries dropped lazily), so a
  Tick and ``next_deadline`` look at the earliest one only.

Pure: no clock, no I/O; randomness comes from the caller's ``random.Random``.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from handoffd.config import MembershipConfig
from handoffd.membership.lifeguard import Suspicion
from handoffd.membership.probes import moved
from handoffd.protocol.messages import ALIVE, DEAD, LEFT, SUSPECT, MemberState

# What a member's state with a newer resource_version replaces.
RESOURCE_FIELDS = ("capacity", "free", "resource_version", "sources", "gpus")
# Status precedence at equal incarnation: LEFT > DEAD > SUSPECT > ALIVE (LEFT is final for its
# incarnation: it is the member's own word, DEAD is only others' opinion).
_RANK = {ALIVE: 0, SUSPECT: 1, DEAD: 2, LEFT: 3}
# The transition table: status moves legal without an incarnation change. Any move is legal with a
# higher incarnation (refutation, rejoin); a lower incarnation is never accepted.
_SAME_INCARNATION_MOVES = frozenset(
    {(ALIVE, SUSPECT), (ALIVE, DEAD), (ALIVE, LEFT), (SUSPECT, DEAD), (SUSPECT, LEFT), (DEAD, LEFT)}
)


def supersedes(new: MemberState, old: MemberState) -> bool:
    """True if ``new``'s (incarnation, status) beats ``old``'s."""
    if new.incarnation != old.incarnation:
        return new.incarnation > old.incarnation
    return _RANK[new.status] > _RANK[old.status]


class Member:
    """One member's record (a C class in the compiled build: records.pxd)."""

    __slots__ = (
        "state",
        "suspicion",
        "qcount",
        "qbulk",
        "qnext",
        "qprev",
        "qname",
        "changed_at",
        "suspect_deadline",
        "reaped",
    )

    def __init__(
        self,
        state: MemberState,
        changed_at: float,  # when the status last changed: DEAD/LEFT are reaped dead_reap_after later
        suspect_deadline: float | None = None,  # set iff SUSPECT: DEAD then unless refuted
        suspicion: Suspicion | None = None,  # set iff SUSPECT: its accusers, its bounds
    ) -> None:
        self.state = state
        self.changed_at = changed_at
        self.suspect_deadline = suspect_deadline
        self.suspicion = suspicion
        self.reaped = False  # dropped from the view (``records.page``'s walk skips it)
        # Its place in a gossip queue (gossip.GossipQueue's buckets are threaded through these):
        # the sends so far (-1: not queued), bulk news or not, its bucket's neighbours, its name.
        self.qcount = -1
        self.qbulk = False
        self.qnext: Member | None = None
        self.qprev: Member | None = None
        self.qname = ""

    def __repr__(self) -> str:
        return (
            f"Member(state={self.state!r}, changed_at={self.changed_at!r},"
            f" suspect_deadline={self.suspect_deadline!r}, suspicion={self.suspicion!r})"
        )


class ProbeInFlight:
    """Our one probe in flight (a C class in the compiled build: records.pxd)."""

    __slots__ = (
        "probe_id",
        "target",
        "direct_deadline",
        "final_deadline",
        "indirect_sent",
        "nacks",
    )

    def __init__(
        self, probe_id: int, target: str, direct_deadline: float, final_deadline: float
    ) -> None:
        self.probe_id = probe_id
        self.target = target
        self.direct_deadline = direct_deadline  # PingReq to relays after this
        self.final_deadline = final_deadline  # SUSPECT after this
        self.indirect_sent = False
        self.nacks = 0  # relays that said the target did not answer them (Lifeguard)

    def __repr__(self) -> str:
        return (
            f"ProbeInFlight(probe_id={self.probe_id!r}, target={self.target!r},"
            f" direct_deadline={self.direct_deadline!r}, final_deadline={self.final_deadline!r},"
            f" indirect_sent={self.indirect_sent!r}, nacks={self.nacks!r})"
        )


class Relay:
    """A PingReq we serve (a C class in the compiled build: records.pxd)."""

    __slots__ = (
        "origin_address",
        "origin_name",
        "origin_probe_id",
        "target",
        "deadline",
        "nack_at",
        "nacked",
    )

    def __init__(
        self,
        origin_address: str,
        origin_name: str,
        origin_probe_id: int,
        target: str,
        deadline: float,  # forgotten after this (an Ack until then is still passed on)
        nack_at: float,  # no Ack from the target by then: tell the prober (Nack)
    ) -> None:
        self.origin_address = origin_address
        self.origin_name = origin_name
        self.origin_probe_id = origin_probe_id
        self.target = target
        self.deadline = deadline
        self.nack_at = nack_at
        self.nacked = False

    def __repr__(self) -> str:
        return (
            f"Relay(origin_address={self.origin_address!r}, origin_name={self.origin_name!r},"
            f" origin_probe_id={self.origin_probe_id!r}, target={self.target!r},"
            f" deadline={self.deadline!r}, nack_at={self.nack_at!r}, nacked={self.nacked!r})"
        )


class Counters:
    """What this node's membership did (``handoffctl nodes``, /metrics); a C class in the compiled
    build (records.pxd): ``Membership._counted`` adds to ``messages_sent`` after every event, a
    Python attribute read and write each until then (issue 20)."""

    __slots__ = (
        "dropped_other_cluster",
        "dropped_incompatible",
        "refutations",
        "probes",
        "probes_failed",
        "messages_sent",
        "extra",
    )

    def __init__(self) -> None:
        self.dropped_other_cluster = 0
        self.dropped_incompatible = 0  # gossip about members of a protocol range we cannot speak
        self.refutations = 0
        self.probes = 0
        self.probes_failed = 0
        self.messages_sent = 0
        self.extra: dict[str, int] = {}

    def __repr__(self) -> str:
        return (
            f"Counters(dropped_other_cluster={self.dropped_other_cluster!r},"
            f" dropped_incompatible={self.dropped_incompatible!r},"
            f" refutations={self.refutations!r}, probes={self.probes!r},"
            f" probes_failed={self.probes_failed!r}, messages_sent={self.messages_sent!r},"
            f" extra={self.extra!r})"
        )


# Gossip rounds a queue of members just learned should take to drain, and the fewest sends of one
# (a round's fanout) while it is long (bulk_limit).
DRAIN_ROUNDS = 10
MIN_SENDS = 3
# Bulk news is thinned only while it is a storm: more than this share of the view just learned.
STORM_SHARE = 0.25


def bulk_limit(limit: int, queued: int, members: int, config: MembershipConfig) -> int:
    """Sends of a member just learned (bulk news, ``GossipQueue.add``) while ``queued`` are: the
    retransmit ``limit``, unless sending each that often would take more than ``DRAIN_ROUNDS``
    gossip rounds (a join storm: each node learns all n members, the seed first-hand from every
    joiner). Then each gets its share of those rounds' sends, at least ``MIN_SENDS``, and more
    again as the queue shrinks. Without it a storm's backlog drained in time linear in n (n joins x
    4 log10 n sends at a fixed rate per node: 23 s at 1,000); push-pull's storm syncs carry the
    members in O(log n) rounds anyway. Other news (suspicions, refutations, deaths, resources)
    keeps the whole limit: a heal's refutations thinned so took 3x longer to reach every view.
    Nor is it thinned when fewer than ``STORM_SHARE`` of our ``members`` are queued: a healed
    partition's members, re-learned after the reap, thinned so missed a few views, which then
    learned them from push-pull pages (64 of n states each) after 60 s and more at 1,000 nodes."""
    budget = config.gossip_fanout * config.max_piggyback * DRAIN_ROUNDS
    if queued * limit <= budget or queued <= members * STORM_SHARE:
        return limit
    return max(MIN_SENDS, budget // queued)  # (0: limit)


def same(a: MemberState, b: MemberState) -> bool:
    """``b`` tells nothing ``a`` does not: same incarnation, status, resources and address."""
    return a is b or (
        a.resource_version == b.resource_version
        and a.incarnation == b.incarnation
        and a.status == b.status
        and a.address == b.address
        and a.cluster == b.cluster
        and a.protocol_min == b.protocol_min
        and a.protocol_max == b.protocol_max
    )


def merged(
    cur: MemberState, u: MemberState, state_newer: bool, resources_newer: bool
) -> MemberState:
    """``cur`` with ``u``'s status part (``probes.moved``) if ``state_newer`` and its resources
    (``RESOURCE_FIELDS``) if ``resources_newer``; ``u`` itself when that is equal to it."""
    if merged_is(cur, u, state_newer, resources_newer):
        return u  # (most merges: no copy, and the views share the state object)
    new = moved(cur, u) if state_newer else cur
    if resources_newer:
        new = replace(new, **{f: getattr(u, f) for f in RESOURCE_FIELDS})
    return new


def accused(state: MemberState, accuser: str) -> MemberState:
    """``replace(state, accuser=accuser)``, built positionally: ``dataclasses.replace`` walks the
    fields in Python at twice the cost, and a confirmed suspicion passes the new accuser on in
    every view that holds it (``Membership._confirm``: 2 % of a 300-node simulation, issue 20).
    tests/unit/test_membership_speedups.py holds the field list to ``MemberState``'s."""
    return MemberState(
        state.name,
        state.address,
        state.cluster,
        state.incarnation,
        state.status,
        state.capacity,
        state.free,
        state.resource_version,
        state.protocol_min,
        state.protocol_max,
        state.sources,
        state.gpus,
        state.probe_port,
        accuser,
    )


def merged_is(cur: MemberState, u: MemberState, state_newer: bool, resources_newer: bool) -> bool:
    """``u`` equals what merging it into ``cur`` gives (``probes.moved`` for the status part when
    ``state_newer``, ``u``'s resource fields when ``resources_newer``): the merge may then keep
    ``u`` itself. A state change (a heal's refutations, a partition's DEAD) copied the state
    field by field with ``dataclasses.replace``, ~5 us each, a million times at 1,000 nodes."""
    if (
        cur.cluster != u.cluster
        or cur.protocol_min != u.protocol_min
        or cur.protocol_max != u.protocol_max
    ):
        return False
    if not state_newer and (
        cur.incarnation != u.incarnation
        or cur.status != u.status
        or cur.address != u.address
        or cur.probe_port != u.probe_port
        or cur.accuser != u.accuser
    ):
        return False
    if not resources_newer and (
        cur.resource_version != u.resource_version
        or (cur.capacity is not u.capacity and cur.capacity != u.capacity)
        or (cur.free is not u.free and cur.free != u.free)
        or (cur.sources is not u.sources and cur.sources != u.sources)
        or cur.gpus != u.gpus
    ):
        return False
    return True


def below(rng: random.Random, n: int) -> int:
    """``rng``'s ``_randbelow(n)`` (n > 0) for a plain ``random.Random``: the same draws of
    ``getrandbits``, the same answer, without the Python-level frames of ``random.py``
    (``sample``, ``choice`` and ``randint`` over the view were 4 % of a 300-node simulation,
    issue 20; tests/unit/test_membership_draws.py holds them equal to ``random``'s). Any other
    generator is asked (``randrange(n)`` is its ``_randbelow(n)``)."""
    if type(rng) is not random.Random:
        return rng.randrange(n)
    bits = 0
    m = n
    while m:
        m >>= 1
        bits += 1
    getrandbits = rng.getrandbits
    r = getrandbits(bits)
    while r >= n:
        r = getrandbits(bits)
    return r


def sample(rng: random.Random, items: list[str], k: int) -> list[str]:
    """``rng.sample(items, k)``: for a plain ``random.Random`` the same picks from the same draws,
    step by step (``random.Random.sample`` of CPython 3.11); any other generator is asked."""
    n = len(items)
    if type(rng) is not random.Random or not 0 <= k <= n:
        return rng.sample(items, k)  # (a test's generator; or its ValueError)
    chosen: list[str] = []
    setsize = 21  # (random.sample's choice between its two methods, kept exactly)
    if k > 5:
        setsize += 4 ** math.ceil(math.log(k * 3, 4))
    if n <= setsize:
        pool = list(items)
        for i in range(k):
            j = below(rng, n - i)
            chosen.append(pool[j])
            pool[j] = pool[n - i - 1]
    else:
        selected: set[int] = set()
        for _ in range(k):
            j = below(rng, n)
            while j in selected:
                j = below(rng, n)
            selected.add(j)
            chosen.append(items[j])
    return chosen


def choice(rng: random.Random, items: list[str]) -> str:
    """``rng.choice(items)`` (non-empty) with ``below``'s draws for a plain ``random.Random``."""
    if type(rng) is not random.Random:
        return rng.choice(items)
    return items[below(rng, len(items))]


class IndexedSet:
    """A set of names with O(1) add/discard and O(k) random samples."""

    def __init__(self) -> None:
        self._items: list[str] = []
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def add(self, name: str) -> None:
        if name not in self._index:
            self._index[name] = len(self._items)
            self._items.append(name)

    def discard(self, name: str) -> None:
        i = self._index.pop(name, None)
        if i is None:
            return
        last = self._items.pop()
        if last != name:
            self._items[i] = last
            self._index[last] = i

    def sample(self, rng: random.Random, k: int, exclude: str | None = None) -> list[str]:
        """``k`` distinct random names (fewer if there are not that many), never ``exclude``."""
        extra = 1 if exclude is not None and exclude in self._index else 0
        picked = sample(rng, self._items, min(k + extra, len(self._items)))
        return [n for n in picked if n != exclude][:k]

    def choice(self, rng: random.Random) -> str | None:
        return choice(rng, self._items) if self._items else None


class Timers:
    """(time, name) deadlines; an entry whose name's current deadline differs is stale."""

    def __init__(self, due: Callable[[str], float | None]) -> None:
        self._heap: list[tuple[float, str]] = []
        self._due = due  # a name's current deadline (None: none)
        # The top entry was checked against ``due`` and no deadline changed since: next_deadline
        # asks for the earliest after every event, and checking it each time (a view lookup) was
        # ~9 % of a 1,000-node simulation. Whoever changes a deadline calls add() or changed().
        self._fresh = False

    def add(self, at: float, name: str) -> None:
        heapq.heappush(self._heap, (at, name))
        self._fresh = False

    def changed(self) -> None:
        """A member's deadline changed (or went) without an ``add``: recheck the top."""
        self._fresh = False

    def _drop_stale(self) -> None:
        if self._fresh:
            return
        heap = self._heap
        while heap and self._due(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        self._fresh = True

    def earliest(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> Iterable[str]:
        """Names whose current deadline is at or before ``now`` (each once)."""
        due: list[str] = []
        heap = self._heap
        while True:
            self._drop_stale()
            if not heap or heap[0][0] > now:
                return due
            name = heapq.heappop(heap)[1]
            self._fresh = False
            if name not in due:  # the same deadline pushed twice
                due.append(name)


class PeerIndex:
    """The peers by status and their timers, kept in step with ``members`` by ``moved``."""

    def __init__(self, me: str, members: dict[str, Member], reap_after: float) -> None:
        self._me = me
        self._members = members
        self._reap_after = reap_after
        self.live = IndexedSet()  # ALIVE and SUSPECT peers
        self.dead = IndexedSet()  # DEAD peers
        self.timers = Timers(self.due)  # suspicion deadlines and reaps

    def due(self, name: str, m: Member | None = None) -> float | None:
        """When ``name``'s member has a timer due: its suspicion deadline or its reap (``m``: its
        record, if the caller holds it)."""
        if m is None:
            m = self._members.get(name)
        if m is None or name == self._me:
            return None
        if m.suspect_deadline is not None:
            return m.suspect_deadline
        if m.state.status in (DEAD, LEFT):
            return m.changed_at + self._reap_after
        return None

    def moved(self, new: MemberState, record: Member | None = None) -> None:
        """``new``'s member changed status (or was added): re-file it (``record``: its record, so
        no lookup by name: ``Membership._set`` holds it)."""
        if new.name == self._me:
            return
        for group, statuses in ((self.live, (ALIVE, SUSPECT)), (self.dead, (DEAD,))):
            if new.status in statuses:
                group.add(new.name)
            else:
                group.discard(new.name)
        due = self.due(new.name, record)
        if due is not None:
            self.timers.add(due, new.name)
        else:
            self.timers.changed()

    def forget(self, name: str) -> None:
        self.live.discard(name)
        self.dead.discard(name)
        self.timers.changed()

    def validate(self) -> None:
        for group, statuses in ((self.live, (ALIVE, SUSPECT)), (self.dead, (DEAD,))):
            want = {n for n, m in self._members.items() if m.state.status in statuses}
            assert set(group) == want - {self._me}, "peer index out of step with the view"


def pages(me: MemberState, members: dict[str, Member], size: int) -> list[tuple[MemberState, ...]]:
    """The whole view in push-pull pages of at most ``size`` states, each led by ``me``."""
    others = [m.state for name, m in members.items() if name != me.name]
    step = max(1, size - 1)
    return [(me, *others[i : i + step]) for i in range(0, len(others), step)] or [(me,)]


def page(
    me: MemberState,
    must_refute: MemberState | None,
    members: dict[str, Member],
    order: list[Member],
    size: int,
) -> tuple[MemberState, ...]:
    """A push-pull's share of the view: ``me``, the receiver's state if it must refute, then the
    next members of a walk over the whole view (``order``, refilled when used up), ``size`` at most.
    Successive pages cover every member (anti-entropy) at a cost that does not grow with n.
    ``order`` holds the records, not their names: a lookup per name in a view of 1,000 was a
    cache miss each, 3 % of a 1,000-node simulation; a record reaped meanwhile says so."""
    if len(members) <= size:
        return tuple([m.state for m in members.values()])  # (no generator: records.pxd's cpdef)
    chosen = [me]
    seen = {me.name}
    if must_refute is not None:
        chosen.append(must_refute)
        seen.add(must_refute.name)
    for _ in range(len(members)):
        if len(chosen) >= size:
            break
        if not order:
            order.extend(members.values())
        walked = order.pop()
        name = walked.state.name
        # (reaped since: the member's new record if it was learned again, else none)
        record = members.get(name) if walked.reaped else walked
        if record is not None and name not in seen:
            chosen.append(record.state)
            seen.add(name)
    return tuple(chosen)
