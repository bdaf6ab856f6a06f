# cython: annotation_typing=False
"""A deterministic discrete-event simulator for Membership state machines.

Routes ``Send`` instructions between N ``Membership`` instances on a virtual clock, with seeded
latency jitter, random loss, partitions and crashes. Each node is ticked exactly at its
``next_deadline()``, as a daemon would with a timer. No sockets, no threads, no wall clock: the
same seed gives the same run, so a failing seed is a reproducible bug report. Used by the tests,
``bench/bench_membership.py``, ``bench/bench_scale.py`` and ``handoffd.testing``.

Cost (issue 20): messages are handed over as the objects they are (frozen dataclasses, never
mutated), not encoded; ``measure_bytes=k`` encodes every k-th message through the real codec and
``bytes_estimate`` scales the sizes so sampled up by type. ``run_until(..., check_every=dt)`` tests
its condition at most every ``dt`` virtual seconds (a whole-cluster condition costs O(n^2)) and
still reports the exact time it became true: conditions read the nodes' views, which change only
when a node learns something (``Membership.view_changes``), so the answer is the last such moment.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Callable, Iterable
from typing import Any

from handoffd.config import MembershipConfig
from handoffd.membership.swim import (
    Discovered,
    Event,
    Instruction,
    LocalResources,
    MemberChanged,
    Membership,
    Received,
    ResourcesChanged,
    Send,
    Tick,
)
from handoffd.protocol import codec
from handoffd.protocol.messages import ALIVE, PushPull

_MIN_STEP = 1e-6  # a tick is never scheduled at the current instant twice in a row
SEED_RETRY = 0.5  # virtual seconds between join attempts to a seed not yet known
# Heap entry kinds (ints: compared once per event).
_MSG, _TICK, _SEEDS = 0, 1, 2
_NEVER = float("inf")
_BUCKET = 0.001  # virtual seconds of one Calendar bucket
_TICK_EVENT = Tick()  # (events are frozen: one instance serves every tick)
_NV_MAGICCONST = 4 * math.exp(-0.5) / math.sqrt(2.0)  # random.NV_MAGICCONST


class LogNormalDelay:
    """A message latency of ``base + rng.lognormvariate(mu, sigma)``: the very floats from the same
    draws of ``rng`` (``random``'s Kinderman-Monahan normalvariate, step by step), as a C method in
    the compiled build. The Python-level draw, two frames and a loop per message, was 3-5 % of a
    1,000-node simulation (issue 20). Pass one as ``Simulation(delay=...)``."""

    def __init__(self, base: float, mu: float, sigma: float) -> None:
        self.base = base
        self.mu = mu
        self.sigma = sigma

    def __call__(self, rng: random.Random) -> float:
        return self.draw(rng)

    def draw(self, rng: random.Random) -> float:
        draw = rng.random
        while True:
            u1 = draw()
            u2 = 1.0 - draw()
            z = _NV_MAGICCONST * (u1 - 0.5) / u2
            zz = z * z / 4.0
            if zz <= -math.log(u2):
                break
        return self.base + math.exp(self.mu + z * self.sigma)


class Calendar:
    """The simulator's pending events, ``(at, seq, kind, payload)`` tuples, popped in
    ``(at, seq)`` order exactly as a heap of them would be (a calendar queue, Brown 1988): each
    lands in the bucket of its ``width`` of virtual time, appended; a bucket is sorted once when
    it becomes the earliest, and the few events pushed into it afterwards (a fast message) are
    inserted in order. The bucket keys (ints) are the only heap. A heap of the tuples themselves
    cost ~20 tuple comparisons and their cache misses per event (8 % of a 1,000-node run, issue
    20); a bucket of a millisecond holds ~17 events at 1,000 nodes."""

    def __init__(self, width: float) -> None:
        self.width = width
        self._buckets: dict[int, list[tuple[float, int, int, Any]]] = {}
        self._keys: list[int] = []  # a heap of the keys in _buckets
        self._current: list[tuple[float, int, int, Any]] = []  # the earliest bucket, sorted
        self._pos = 0  # its next entry
        self._key = -1  # its key: a push at or before it goes into it

    def __len__(self) -> int:
        return len(self._current) - self._pos + sum([len(b) for b in self._buckets.values()])

    def push(self, entry: tuple[float, int, int, Any]) -> None:
        at = entry[0]
        key = int(at / self.width)  # (floor: virtual time is never negative)
        if key <= self._key:
            bisect.insort(self._current, entry, self._pos)
            return
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [entry]
            heapq.heappush(self._keys, key)
        else:
            bucket.append(entry)

    def first(self) -> float:
        """When the earliest entry is due (``_NEVER``: none)."""
        if self._pos < len(self._current):
            return self._current[self._pos][0]  # type: ignore[no-any-return]
        if not self._keys:
            return _NEVER
        self._key = heapq.heappop(self._keys)
        bucket = self._buckets.pop(self._key)
        bucket.sort()
        self._current = bucket
        self._pos = 0
        return bucket[0][0]  # type: ignore[no-any-return]

    def pop(self) -> tuple[float, int, int, Any]:
        """The earliest entry (``first`` called before, and not ``_NEVER``)."""
        entry = self._current[self._pos]
        self._pos += 1
        return entry


class SimTimeout(AssertionError):
    """A run_until condition did not hold within its virtual deadline."""


class SimNode:
    """One simulated node (a C class in the compiled build: sim.pxd)."""

    def __init__(self, name: str, address: str, membership: Membership) -> None:
        self.name = name
        self.address = address
        self.membership = membership
        self.crashed = False
        self.tick_generation = 0  # queued ticks of older generations are stale
        self.tick_at = _NEVER
        self.seeds: list[str] = []  # addresses retried like SeedDiscovery does


class SimStats:
    """Message and event counts of a run (a C class in the compiled build: sim.pxd)."""

    def __init__(self) -> None:
        self.sent = 0
        self.delivered = 0
        self.lost = 0  # random loss
        self.blocked = 0  # partition or crashed endpoint
        self.events = 0
        self.by_type: dict[str, int] = {}
        self.largest: dict[str, int] = {}  # type -> most member states in one

    def __repr__(self) -> str:
        return (
            f"SimStats(sent={self.sent}, delivered={self.delivered}, lost={self.lost},"
            f" blocked={self.blocked}, events={self.events}, by_type={self.by_type},"
            f" largest={self.largest})"
        )


class Simulation:
    """N membership state machines, one virtual clock, a lossy configurable network."""

    def __init__(
        self,
        config: MembershipConfig,
        *,
        seed: int = 0,
        cluster: str = "sim",
        latency: float = 0.0003,
        jitter: float = 0.0004,
        loss: float = 0.0,
        validate: bool = False,
        delay: Callable[[random.Random], float] | None = None,
        measure_bytes: int = 0,
    ) -> None:
        """``delay(rng)``: one message's latency (default ``latency`` + uniform ``jitter``)."""
        self.config = config
        self.cluster = cluster
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        self.validate = validate
        self.now = 0.0
        self.rng = random.Random(seed)
        self.nodes: dict[str, SimNode] = {}
        self.stats = SimStats()
        #: (virtual time, node, MemberChanged | ResourcesChanged) in order
        self.changes: list[tuple[float, str, Instruction]] = []
        self._by_address: dict[str, str] = {}
        self._blocked: set[tuple[str, str]] = set()  # (from, to) pairs that cannot talk
        self._events = Calendar(_BUCKET)
        self._seq = 0
        self.delay = delay
        self.measure_bytes = measure_bytes
        self.sampled: dict[str, tuple[int, int]] = {}  # type -> (messages encoded, their bytes)
        self.largest_bytes: dict[str, int] = {}  # type -> the largest message encoded
        self.last_change = (
            0.0  # when a view (or the set of live nodes, or the network) last changed
        )
        self._witness: tuple[str, str] | None = None  # converged(): the pair that failed last
        self._type_names: dict[type, str] = {}  # message type -> its name (stats.by_type's key)

    # ---------------------------------------------------------------------------- topology

    def add_node(
        self,
        name: str,
        capacity: dict[str, float] | None = None,
        *,
        join: Iterable[str] = (),
        incarnation: int = 0,
    ) -> Membership:
        """Start a node now and join it via ``join`` (names of running nodes) like --seed does."""
        address = f"{name}.sim:7788"
        membership = Membership(
            name=name,
            address=address,
            cluster=self.cluster,
            capacity=dict(capacity or {"cpu": 4.0}),
            config=self.config,
            rng=random.Random(self.rng.getrandbits(64)),
            now=self.now,
            incarnation=incarnation,
        )
        self.nodes[name] = node = SimNode(name, address, membership)
        self._by_address[address] = name
        node.seeds = [self.nodes[seed].address for seed in join]
        self._retry_seeds(node)
        self._reschedule(node)
        return membership

    def crash(self, name: str) -> None:
        """Stop the node dead: no ticks, nothing delivered to or from it."""
        self.nodes[name].crashed = True
        self.last_change = self.now

    def restart(self, name: str, *, join: Iterable[str] = ()) -> Membership:
        """A fresh process under the same name and address (incarnation 0, state forgotten)."""
        old = self.nodes[name].membership
        return self.add_node(name, dict(old.me.capacity), join=join)

    def partition(self, *groups: Iterable[str]) -> None:
        """Nodes in different groups cannot talk (in either direction) until heal()."""
        sets = [set(g) for g in groups]
        for i, a_group in enumerate(sets):
            for b_group in sets[i + 1 :]:
                for a in a_group:
                    for b in b_group:
                        self._blocked.add((a, b))
                        self._blocked.add((b, a))
        self.last_change = self.now

    def heal(self) -> None:
        self._blocked.clear()
        self.last_change = self.now

    # ------------------------------------------------------------------------------ driving

    def inject(self, name: str, event: Event) -> None:
        """Deliver a local event (LocalResources, Leave, Discovered...) to ``name`` now."""
        self._handle(self.nodes[name], event)

    def local_resources(self, name: str, free: dict[str, float]) -> None:
        self.inject(name, LocalResources(dict(free)))

    def run_for(self, duration: float, *, max_events: int = 10_000_000) -> None:
        self._run(self.now + duration, None, max_events)

    def run_until(
        self,
        condition: Callable[[], bool],
        timeout: float,
        *,
        max_events: int = 10_000_000,
        check_every: float = 0.0,
    ) -> float:
        """Advance until ``condition()`` holds; returns the virtual time it took (exact even with
        ``check_every``: see the module doc; the clock itself may be up to ``check_every`` on)."""
        start = self.now
        if self._run(start + timeout, condition, max_events, check_every):
            return max(0.0, (self.last_change if check_every else self.now) - start)
        raise SimTimeout(f"condition not met within {timeout} virtual seconds (t={self.now:.3f})")

    def _run(
        self,
        until: float,
        condition: Callable[[], bool] | None,
        max_events: int,
        check_every: float = 0.0,
    ) -> bool:
        if condition is None:
            check_every = float("inf")  # never: run to ``until``
        elif condition():
            self.last_change = self.now
            return True
        next_check = self.now + check_every
        # The loop is the simulator's own cost per event: locals, int kinds, no per-event method
        # lookups (issue 20: 1,000 nodes handle ~16,000 events per virtual second).
        events = self._events
        nodes = self.nodes
        blocked = self._blocked
        stats = self.stats
        for _ in range(max_events):
            due = events.first()
            if due > until or due == _NEVER:
                self.now = until
                return condition is not None and condition()
            at, _, kind, payload = events.pop()
            if at > self.now:
                self.now = at
            if kind == _MSG:
                sender, dst, msg = payload
                receiver = nodes.get(dst)
                if (
                    receiver is None
                    or receiver.crashed
                    or (blocked and (sender.name, dst) in blocked)
                ):
                    stats.blocked += 1
                    continue
                stats.delivered += 1
                self._deliver(receiver, sender.name, sender.address, msg)
            elif kind == _TICK:
                name, generation = payload
                node = nodes[name]
                if node.crashed or generation != node.tick_generation:
                    continue
                node.tick_at = _NEVER
                if type(node.membership) is Membership:  # (called in C, as in _handled)
                    plain = node.membership
                    due = plain.next_deadline()
                else:
                    due = node.membership.next_deadline()
                if due > self.now:
                    self._schedule(node, due)  # woken for work done meanwhile (an acked probe)
                else:
                    self._handle(node, _TICK_EVENT)
            else:  # _SEEDS
                node = nodes[payload]
                if not node.crashed:
                    self._retry_seeds(node)
            if check_every:
                if self.now < next_check:
                    continue
                next_check = self.now + check_every
            if condition is not None and condition():
                return True
        raise SimTimeout(f"more than {max_events} events before t={until}")

    def _retry_seeds(self, node: SimNode) -> None:
        """Join via each seed until it is known, like discovery.seeds.SeedDiscovery."""
        pending = [a for a in node.seeds if not node.membership.known_address(a)]
        for address in pending:
            self._handle(node, Discovered(address, self._by_address.get(address)))
        if pending:
            self._push(self.now + SEED_RETRY, _SEEDS, node.name)

    def _handle(self, node: SimNode, event: Event) -> None:
        if node.crashed:
            return
        membership = node.membership
        if type(membership) is Membership:  # (its handle called in C: a tick's path)
            plain: Membership = membership
            changes = plain._queue.added
            self._handled(node, plain.handle(event, self.now), changes)
        else:
            changes = membership.view_changes
            self._handled(node, membership.handle(event, self.now), changes)

    def _deliver(self, node: SimNode, src: str, address: str, msg: Any) -> None:
        """``_handle(node, Received(src, address, msg))`` for a live node; a plain
        ``Membership`` takes the message without the event object (``Membership.receive``)."""
        membership = node.membership
        if type(membership) is Membership:
            plain: Membership = membership
            changes = plain._queue.added
            self._handled(node, plain.receive(src, address, msg, self.now), changes)
        else:  # (a test's wrapper)
            changes = membership.view_changes
            self._handled(node, membership.handle(Received(src, address, msg), self.now), changes)

    def _handled(self, node: SimNode, out: list[Instruction], changes: int) -> None:
        """What the node returned for one event: sends routed, changes recorded, its next tick."""
        self.stats.events += 1
        membership = node.membership
        for instruction in out:
            if type(instruction) is Send:
                self._send(node, instruction)
            elif type(instruction) is MemberChanged or type(instruction) is ResourcesChanged:
                self.changes.append((self.now, node.name, instruction))
        if self.validate:
            membership.validate()
        if type(membership) is Membership:  # (its fields and next_deadline called in C)
            plain: Membership = membership
            if plain._queue.added != changes:
                self.last_change = self.now
            self._schedule(node, plain.next_deadline())
        else:
            if membership.view_changes != changes:
                self.last_change = self.now
            self._reschedule(node)

    def _send(self, node: SimNode, send: Send) -> None:
        stats = self.stats
        stats.sent += 1
        msg = send.msg
        cls = type(msg)
        kind = self._type_names.get(cls)
        if kind is None:  # (a type's __name__ is a lookup in its type's dict: once per type)
            kind = self._type_names[cls] = cls.__name__
        by_type = stats.by_type
        by_type[kind] = by_type.get(kind, 0) + 1
        states = len(msg.members if cls is PushPull else msg.updates)
        if states > stats.largest.get(kind, 0):
            stats.largest[kind] = states
        dst = self._by_address.get(send.address)
        if dst is None or (self._blocked and (node.name, dst) in self._blocked):
            stats.blocked += 1
            return
        if self.measure_bytes and stats.sent % self.measure_bytes == 0:
            size = 0
            for frame in codec.encode(msg, sender=node.name):  # (no generator: sim.pxd's cpdef)
                size += len(frame)
            count, total = self.sampled.get(kind, (0, 0))
            self.sampled[kind] = (count + 1, total + size)
            if size > self.largest_bytes.get(kind, 0):
                self.largest_bytes[kind] = size
        rng = self.rng
        if self.loss and rng.random() < self.loss:
            stats.lost += 1
            return
        if type(self.delay) is LogNormalDelay:
            lognormal: LogNormalDelay = self.delay
            delay = lognormal.draw(rng)
        elif self.delay is not None:
            delay = self.delay(rng)
        else:  # (random.uniform(0, jitter), without its call: the same float)
            delay = self.latency + (0 + (self.jitter - 0) * rng.random())
        self._seq += 1
        # (the sending SimNode: its name and address without a lookup at delivery)
        self._events.push((self.now + delay, self._seq, _MSG, (node, dst, msg)))

    def _reschedule(self, node: SimNode) -> None:
        self._schedule(node, node.membership.next_deadline())

    def _schedule(self, node: SimNode, due: float) -> None:
        at = max(due, self.now + _MIN_STEP)
        if at < node.tick_at:
            node.tick_generation += 1
            node.tick_at = at
            self._push(at, _TICK, (node.name, node.tick_generation))

    def _push(self, at: float, kind: int, payload: Any) -> None:
        self._seq += 1
        self._events.push((at, self._seq, kind, payload))

    # ----------------------------------------------------------------------------- queries

    def live(self) -> list[str]:
        return [n for n, node in self.nodes.items() if not node.crashed]

    def status(self, observer: str, subject: str) -> int | None:
        state = self.nodes[observer].membership.get(subject)
        return state.status if state else None

    def bytes_estimate(self) -> int:
        """Bytes all sent messages would have taken on the wire (sampled sizes by type, scaled)."""
        total = 0.0
        for kind, sent in self.stats.by_type.items():
            count, size = self.sampled.get(kind, (0, 0))
            if count:
                total += sent * size / count
        return int(total)

    def converged(self, names: Iterable[str] | None = None) -> bool:
        """Every live node sees every node in ``names`` ALIVE with that node's own resources."""
        subjects = list(names) if names is not None else self.live()
        truth = {n: self.nodes[n].membership.me for n in subjects}
        observers = self.live()
        witness = self._witness  # start where the last check failed: most checks stop there
        if witness is not None and witness[0] in observers:
            i = observers.index(witness[0])
            observers = observers[i:] + observers[:i]
        for observer in observers:
            view = self.nodes[observer].membership
            for name, own in truth.items():
                seen = view.get(name)
                if seen is own:
                    continue
                if (
                    seen is None
                    or seen.status != ALIVE
                    or seen.incarnation != own.incarnation
                    or seen.resource_version != own.resource_version
                    or seen.free != own.free
                    or seen.capacity != own.capacity
                ):
                    self._witness = (observer, name)
                    return False
        return True

    def all_see(self, subject: str, status: int) -> bool:
        """Every live node other than ``subject`` holds ``subject`` in ``status``."""
        return all(self.status(o, subject) == status for o in self.live() if o != subject)
