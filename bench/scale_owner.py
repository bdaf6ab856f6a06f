"""Scheduling at scale, simulated (bench_scale.py's second table): the real pure owner scheduler
(``handoffd.scheduler.owner.OwnerScheduler``) places tasks of virtual duration over N simulated
executing nodes on a virtual clock.

Each node keeps the executor's admission rule (``daemon.executor_state``): a dispatched task starts
if its cost fits the node's free resources, else waits in the node's local queue if the queued
demand stays within ``QUEUE_FACTOR`` x capacity, else is refused. A node answers every dispatch at
once (``DispatchAnswered`` with its free resources, as ``DispatchReplied`` carries them) and reports
completions in batches (one flush per ``FLUSH`` virtual seconds). Besides the owner's own work, every
node runs background work the owner never hears about except through the gossiped free view
(other owners' tasks, local jobs): the owner sees each node's free resources through membership,
i.e. as they were ``gossip_delay`` ago (the free-resource spread measured by the membership part),
at most once per gossip interval. Refusals are what that staleness costs.

``membership=True`` replaces that fixed delay by the real membership: every node and the owner run
``swim.Membership`` in ``membership.sim.Simulation`` on the same virtual clock (lan() settings,
latency 0.3-0.7 ms, the cluster joined through one seed first); each gossip interval the nodes whose
free changed tell their membership (``LocalResources``), and what the owner's membership learns
(``ResourcesChanged``) reaches the owner as ``NodeUpdate``. The view is then exactly as fresh as
gossip makes it, with all nodes' changes competing for the bounded gossip budget.

Only CPU time inside ``handle_batch`` is charged to the owner (process time), divided by the
number of placement decisions (tasks dispatched): that is the per-decision cost, to be compared
across N.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from handoffd.config import MembershipConfig
from handoffd.membership.sim import Simulation
from handoffd.membership.swim import ResourcesChanged
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.spec import RunOptions, TaskSpec

CPU = "cpu"
QUEUE_FACTOR = 64.0  # daemon.executor_state's default
FLUSH = 0.002  # a node flushes its reports once per loop iteration: ~2 ms apart under load
LATENCY = 0.0005  # one way, owner <-> node
GOSSIP_INTERVAL = 0.1


@dataclass
class Node:
    name: str
    capacity: float
    free: float
    version: int = 0
    queued: deque[tuple[str, str, int, float]] = field(default_factory=deque)  # owner's tasks
    queued_demand: float = 0.0
    reports: list[Any] = field(default_factory=list)
    flush_pending: bool = False
    gossip_dirty: bool = False

    def update(self) -> ev.NodeUpdate:
        return ev.NodeUpdate(
            self.name, self.name, True, {CPU: self.capacity}, {CPU: self.free}, self.version
        )


class ScaleSim:
    def __init__(
        self,
        nodes: int,
        *,
        cpus: float = 4.0,
        seed: int = 1,
        gossip_delay: float = 0.3,
        background: float = 0.25,
        mean_duration: float = 1.0,
        window: int = 1,
        membership: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        # window 1: every dispatch is placed on free resources as the owner sees them, so a task
        # that cannot start on arrival is what a stale view costs (a refusal without local queues)
        self.owner = OwnerScheduler("owner", now=0.0, window=window)
        self.nodes = {f"n{i}": Node(f"n{i}", cpus, cpus) for i in range(nodes)}
        self.gossip_delay = gossip_delay
        self.background = background  # share of capacity busy with work the owner never placed
        self.mean_duration = mean_duration
        self.now = 0.0
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = 0
        self.inbox: list[Any] = []  # events for the owner, delivered as one batch per instant
        self.cpu = 0.0  # process seconds inside the owner
        self.intake_cpu = 0.0  # of which entering a big run's ready tasks, slice by slice
        self.calls = 0
        self.dispatched = 0
        self.accepted = 0
        self.refused = 0
        self.queued_on_arrival = 0  # accepted but not startable: the view said free, it was not
        self.finished: set[str] = set()
        self.durations: dict[str, float] = {}
        self.gossip: Simulation | None = None
        if membership:
            self.gossip = Simulation(MembershipConfig.lan(), seed=seed)
            self.gossip.add_node("owner", {})
            for node in self.nodes.values():
                self.gossip.add_node(node.name, {CPU: node.capacity}, join=["owner"])
            self.gossip.run_until(self.gossip.converged, timeout=120, check_every=0.05)
            self.gossip_start = self.gossip.now  # the membership clock runs this far ahead
            self._seen_changes = len(self.gossip.changes)
            # node -> membership resource_version -> the node's own version it stood for
            self._versions: dict[str, dict[int, int]] = {n: {} for n in self.nodes}
            self.view_ages: list[float] = []  # how old each free value was when the owner got it
            self._changed_at: dict[tuple[str, int], float] = {}

    def push(self, at: float, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, kind, payload))

    # -- the owner ---------------------------------------------------------------------------

    def feed(self, events: list[Any], *, intake: bool = False) -> None:
        start = time.process_time()
        out = self.owner.handle_batch(events, self.now)
        spent = time.process_time() - start
        self.cpu += spent
        if intake:
            self.intake_cpu += spent
        self.calls += 1
        for instr in out:
            if isinstance(instr, ev.Dispatch):
                self.dispatched += len(instr.items)
                self.push(self.now + LATENCY, "dispatch", instr)
            elif isinstance(instr, ev.RunFinished):
                self.finished.add(instr.run_id)
            elif isinstance(instr, ev.StartTimer):
                # The daemon feeds TimerFired back; the scheduler enters a big run's ready tasks
                # in slices on such timers (scheduler/intake.py), so without them it stops placing.
                self.push(self.now + instr.delay, "timer", instr.key)

    def on_timer(self, key: Any) -> None:
        self.feed([ev.TimerFired(key)], intake=isinstance(key, tuple) and key[:1] == ("intake",))

    def to_owner(self, at: float, events: list[Any]) -> None:
        self.push(at, "owner", events)

    # -- the nodes ---------------------------------------------------------------------------

    def _changed(self, node: Node) -> None:
        node.version += 1
        node.gossip_dirty = True

    def _start(self, node: Node, run_id: str, task_id: str, attempt: int, cost: float) -> None:
        node.free -= cost
        self._changed(node)
        duration = self.durations[task_id]
        self.push(self.now + duration, "done", (node.name, run_id, task_id, attempt, cost))

    def on_dispatch(self, d: ev.Dispatch) -> None:
        node = self.nodes[d.node]
        accepted: list[tuple[str, int]] = []
        refused: list[tuple[str, int, str]] = []
        for item in d.items:
            cost = item.cost.get(CPU, 0.0)
            if cost <= node.free + 1e-9:
                self._start(node, d.run_id, item.task_id, item.attempt, cost)
            elif node.queued_demand + cost <= QUEUE_FACTOR * node.capacity + 1e-9:
                self.queued_on_arrival += 1
                node.queued.append((d.run_id, item.task_id, item.attempt, cost))
                node.queued_demand += cost
            else:
                refused.append((item.task_id, item.attempt, "no room: queue full"))
                continue
            accepted.append((item.task_id, item.attempt))
        self.accepted += len(accepted)
        self.refused += len(refused)
        answer = ev.DispatchAnswered(node.name, d.run_id, tuple(accepted), tuple(refused))
        self.to_owner(self.now + LATENCY, [node.update(), answer])

    def on_done(self, payload: tuple[str, str, str, int, float]) -> None:
        name, run_id, task_id, attempt, cost = payload
        node = self.nodes[name]
        node.free += cost
        self._changed(node)
        if run_id:
            node.reports.append(ev.TaskSucceeded(run_id, task_id, attempt, name, 9, b"\x01"))
            if not node.flush_pending:
                node.flush_pending = True
                self.push(self.now + FLUSH, "flush", name)
        self._pump(node)

    def _pump(self, node: Node) -> None:
        while node.queued and node.queued[0][3] <= node.free + 1e-9:
            run_id, task_id, attempt, cost = node.queued.popleft()
            node.queued_demand -= cost
            self._start(node, run_id, task_id, attempt, cost)

    def on_flush(self, name: str) -> None:
        node = self.nodes[name]
        node.flush_pending = False
        reports, node.reports = node.reports, []
        self.to_owner(self.now + LATENCY, [node.update(), *reports])

    def on_background(self, name: str) -> None:
        """Work of someone else's: takes a core for a while if one is free (else tries later)."""
        node = self.nodes[name]
        if node.free >= 1.0 - 1e-9:
            node.free -= 1.0
            self._changed(node)
            self.push(
                self.now + self.rng.expovariate(1 / self.mean_duration),
                "done",
                (name, "", "", 0, 1.0),
            )
        gap = self.mean_duration / max(self.background * node.capacity, 1e-9)
        self.push(self.now + self.rng.expovariate(1 / gap), "background", name)

    def on_gossip(self, _: Any) -> None:
        """What membership would tell the owner: dirty nodes' free, ``gossip_delay`` late (or as
        the membership simulation delivers it)."""
        if self.gossip is not None:
            self._gossip_for_real()
            return
        updates = [n.update() for n in self.nodes.values() if n.gossip_dirty]
        for n in self.nodes.values():
            n.gossip_dirty = False
        if updates:
            self.to_owner(self.now + self.gossip_delay, updates)
        if len(self.finished) == 0:
            self.push(self.now + GOSSIP_INTERVAL, "gossip", None)

    def _gossip_for_real(self) -> None:
        sim = self.gossip
        assert sim is not None
        for n in self.nodes.values():
            if n.gossip_dirty:
                n.gossip_dirty = False
                sim.local_resources(n.name, {CPU: n.free})
                version = sim.nodes[n.name].membership.me.resource_version
                self._versions[n.name][version] = n.version
                self._changed_at[(n.name, n.version)] = self.now
        sim.run_for(self.gossip_start + self.now - sim.now)
        updates = []
        for _, observer, change in sim.changes[self._seen_changes :]:
            if observer != "owner" or not isinstance(change, ResourcesChanged):
                continue
            m = change.member
            version = self._versions[m.name].pop(m.resource_version, None)
            if version is None:
                continue  # (a version superseded before it reached the owner)
            for old in [v for v in self._versions[m.name] if v < m.resource_version]:
                del self._versions[m.name][old]  # never delivered: skipped by a newer one
            self.view_ages.append(self.now - self._changed_at.pop((m.name, version), self.now))
            updates.append(
                ev.NodeUpdate(m.name, m.name, True, dict(m.capacity), dict(m.free), version)
            )
        sim.changes.clear()  # (every observer's changes are recorded: n^2 entries otherwise)
        self._seen_changes = 0
        if updates:
            self.to_owner(self.now, updates)
        if len(self.finished) == 0:
            self.push(self.now + GOSSIP_INTERVAL, "gossip", None)

    # -- driving -----------------------------------------------------------------------------

    def run(self, tasks: int) -> dict[str, float]:
        specs = [TaskSpec(f"t{i}", (), {CPU: 1.0}, b"p") for i in range(tasks)]
        self.durations = {s.id: self.rng.expovariate(1 / self.mean_duration) for s in specs}
        self.feed([n.update() for n in self.nodes.values()])
        if self.background:
            for name in self.nodes:
                self.push(self.rng.uniform(0, 1), "background", name)
        self.push(GOSSIP_INTERVAL, "gossip", None)
        wall = time.perf_counter()
        self.cpu = 0.0
        self.feed([ev.RunSubmitted("run", specs, RunOptions())])
        submit_cpu = self.cpu
        handlers: dict[str, Callable[[Any], None]] = {
            "dispatch": self.on_dispatch,
            "done": self.on_done,
            "flush": self.on_flush,
            "background": self.on_background,
            "gossip": self.on_gossip,
            "timer": self.on_timer,
        }
        # Background work and gossip keep the event heap non-empty forever: a run the owner stops
        # placing would spin on virtual time instead of ending, so bound it by the work there is.
        bound = 60.0 + 20.0 * sum(self.durations.values()) / sum(
            n.capacity for n in self.nodes.values()
        )
        while "run" not in self.finished:
            if not self._heap:
                raise RuntimeError("the simulation stalled with the run unfinished")
            if self.now > bound:
                status = self.owner.run_status("run")
                raise RuntimeError(
                    f"the owner stopped placing: {self.now:.0f} virtual s passed with the run"
                    f" unfinished ({status.counts if status else 'no run'})"
                )
            at, _, kind, payload = heapq.heappop(self._heap)
            self.now = at
            if kind == "owner":
                batch = list(payload)
                # Everything that reached the owner at this instant is one batch (one loop turn).
                while self._heap and self._heap[0][0] <= at and self._heap[0][2] == "owner":
                    batch.extend(heapq.heappop(self._heap)[3])
                self.feed(batch)
            else:
                handlers[kind](payload)
        total_cpu = sum(n.capacity for n in self.nodes.values())
        ideal = sum(self.durations.values()) / total_cpu  # every core the owner's
        return {
            "tasks": tasks,
            "makespan": self.now,
            "ideal": ideal,
            # submit: the submission's batch and the intake slices after it (as before slicing)
            "submit_us": (submit_cpu + self.intake_cpu) / tasks * 1e6,
            "decision_us": (self.cpu - submit_cpu - self.intake_cpu)
            / max(self.dispatched, 1)
            * 1e6,
            "decisions_per_s": self.dispatched / max(self.cpu - submit_cpu - self.intake_cpu, 1e-9),
            "refused_pct": 100.0 * self.refused / max(self.accepted + self.refused, 1),
            "stale_pct": 100.0 * self.queued_on_arrival / max(self.accepted + self.refused, 1),
            "calls": self.calls,
            "view_age": (
                sum(self.view_ages) / len(self.view_ages)
                if self.gossip is not None and self.view_ages
                else self.gossip_delay
            ),
            "wall": time.perf_counter() - wall,
        }
