"""The room index (``scheduler/room_index.py``) places exactly like the full pass it replaces.

Two owner schedulers get the same random event stream: one places through the index (the default),
the other with ``ClusterView.indexed`` False (every pass builds every live node's room: the O(n)
path before issue 20). Every instruction either emits must be equal, step by step. The clusters are
heterogeneous (cpu, memory, gpu on some nodes), other owners' work comes and goes through node
reports, nodes die and come back empty, dispatches are refused, tasks are pinned, collocated,
weightless or prioritized, and the policies and the window vary. ``validate()`` after every step
also checks each cached room against a fresh computation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from handoffd.resources import add, fits, subtract
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.spec import RunOptions, TaskSpec

Key = tuple[str, str, int]


@dataclass
class TwinNode:
    capacity: dict[str, float]
    other: dict[str, float] = field(default_factory=dict)  # other owners' work
    ours: dict[Key, dict[str, float]] = field(default_factory=dict)  # running
    queued: list[tuple[Key, dict[str, float]]] = field(default_factory=list)
    version: int = 0
    alive: bool = True

    def free(self) -> dict[str, float]:
        used = dict(self.other)
        for cost in self.ours.values():
            used = add(used, cost)
        return subtract(self.capacity, used)


class TwinDriver:
    """Random nodes and runs around two schedulers that must agree on every instruction."""

    def __init__(self, seed: int, window: int, queue_seconds: float | None) -> None:
        self.rng = rng = random.Random(seed)
        kw = {"window": window, "queue_seconds": queue_seconds}
        self.indexed = OwnerScheduler("owner", now=0.0, **kw)  # type: ignore[arg-type]
        self.full = OwnerScheduler("owner", now=0.0, **kw)  # type: ignore[arg-type]
        self.full._view.indexed = False
        self.window = window
        self.t = 0.0
        self.nodes: dict[str, TwinNode] = {}
        for i in range(rng.randint(3, 24)):
            cap = {"cpu": float(rng.choice((1, 2, 4, 8, 16))), "memory": rng.choice((1e3, 4e3))}
            if rng.random() < 0.3:
                cap["gpu"] = float(rng.randint(1, 4))
            self.nodes[f"n{i}"] = TwinNode(cap)
        self.inbox: list[ev.Event] = [self.update(n) for n in self.nodes]
        self.dispatches: list[ev.Dispatch] = []
        self.timers: dict[object, float] = {}  # key -> when it fires (restarting replaces)
        self.runs = 0
        self.decisions = 0

    def update(self, name: str) -> ev.NodeUpdate:
        node = self.nodes[name]
        node.version += 1
        return ev.NodeUpdate(name, name, node.alive, node.capacity, node.free(), node.version)

    def feed(self) -> None:
        events, self.inbox = self.inbox, []
        self.t += self.rng.choice((0.001, 0.01, 0.3))
        out = self.indexed.handle_batch(events, self.t)
        reference = self.full.handle_batch(events, self.t)
        # (repr: an instruction may carry an exception, which compares by identity)
        assert list(map(repr, out)) == list(map(repr, reference)), f"t={self.t}: placed otherwise"
        self.indexed.validate()
        self.take(out)

    def take(self, out: list[ev.Instruction]) -> None:
        """A batch's instructions: dispatches kept for answers, timers set, due ones fired."""
        for instr in out:
            if isinstance(instr, ev.Dispatch):
                self.dispatches.append(instr)
                self.decisions += len(instr.items)
            elif isinstance(instr, ev.StartTimer):
                self.timers[instr.key] = self.t + instr.delay
        due = sorted((at, repr(k), k) for k, at in self.timers.items() if at <= self.t)
        for _, _, key in due:  # (answer timeouts: dispatches given up on)
            del self.timers[key]
            self.inbox.append(ev.TimerFired(key))  # type: ignore[arg-type]

    def cost(self) -> dict[str, float]:
        rng = self.rng
        shape = rng.random()
        if shape < 0.05:
            return {}  # weightless: the index falls back to every live node
        if shape < 0.15:
            return {"gpu": 1.0}  # shares no kind with the cpu tasks
        cost = {"cpu": float(rng.choice((0.5, 1, 2, 3)))}
        if shape < 0.5:
            cost["memory"] = float(rng.choice((100, 900, 2500)))
        return cost

    def submit(self) -> None:
        rng = self.rng
        self.runs += 1
        specs: list[TaskSpec] = []
        names = list(self.nodes)
        for i in range(rng.randint(1, 40)):
            deps = tuple(s.id for s in rng.sample(specs, min(len(specs), rng.randint(0, 2))))
            pin = rng.choice(names) if rng.random() < 0.05 else None
            collocate = specs[-1].id if specs and pin is None and rng.random() < 0.05 else None
            specs.append(
                TaskSpec(
                    f"t{i}",
                    deps,
                    self.cost(),
                    b"p",
                    node=pin,
                    collocate_with=collocate,
                    priority=rng.choice((0, 0, 1, 5)),
                )
            )
        policy = rng.choice(("binpack", "spread", "first_fit"))
        self.inbox.append(ev.RunSubmitted(f"r{self.runs}", specs, RunOptions(policy=policy)))

    def answer(self, d: ev.Dispatch) -> None:
        node = self.nodes[d.node]
        if not node.alive:
            return  # lost with the node
        accepted: list[tuple[str, int]] = []
        refused: list[tuple[str, int, str]] = []
        for item in d.items:
            key = (d.run_id, item.task_id, item.attempt)
            if fits(item.cost, node.free()) and not node.queued:
                node.ours[key] = item.cost
                accepted.append((item.task_id, item.attempt))
            elif self.window > 1 and fits(item.cost, node.capacity):
                node.queued.append((key, item.cost))
                accepted.append((item.task_id, item.attempt))
            else:
                refused.append((item.task_id, item.attempt, "no room"))
        answer = ev.DispatchAnswered(d.node, d.run_id, accepted, refused)
        # Usually with the node's fresh report; sometimes alone (the report comes by gossip).
        self.inbox += [self.update(d.node), answer] if self.rng.random() < 0.6 else [answer]

    def finish(self, name: str) -> None:
        node = self.nodes[name]
        key = self.rng.choice(list(node.ours))
        del node.ours[key]
        while node.queued and fits(node.queued[0][1], node.free()):
            started, cost = node.queued.pop(0)
            node.ours[started] = cost
        run_id, task_id, attempt = key
        self.inbox += [self.update(name), ev.TaskSucceeded(run_id, task_id, attempt, name, 8)]

    def step(self) -> None:
        rng = self.rng
        roll = rng.random()
        busy = [n for n, node in self.nodes.items() if node.alive and node.ours]
        if roll < 0.08 or not (self.dispatches or busy):
            self.submit()
        elif roll < 0.45 and self.dispatches:
            d = self.dispatches.pop(rng.randrange(len(self.dispatches)))
            if rng.random() < 0.9:
                self.answer(d)  # (else lost: the owner's answer timeout gives up on it)
        elif roll < 0.8 and busy:
            self.finish(rng.choice(busy))
        elif roll < 0.9:  # other owners' work comes or goes, told by gossip
            name = rng.choice(list(self.nodes))
            node = self.nodes[name]
            if node.alive:
                node.other = {"cpu": float(rng.randint(0, int(node.capacity["cpu"])))}
                self.inbox.append(self.update(name))
        else:  # a node dies, or comes back empty
            name = rng.choice(list(self.nodes))
            node = self.nodes[name]
            node.alive = not node.alive
            node.ours.clear()
            node.queued.clear()
            self.inbox.append(self.update(name))
        self.feed()


@pytest.mark.parametrize("window,queue_seconds", [(1, None), (4, None), (32, 0.005)])
@pytest.mark.parametrize("seed", range(6))
def test_room_index_places_like_the_full_pass(seed: int, window: int, queue_seconds: float) -> None:
    driver = TwinDriver(seed, window, queue_seconds)
    driver.feed()
    for _ in range(250):
        driver.step()
    assert driver.decisions > 20, "too few placements to compare"


def test_room_index_skips_full_nodes() -> None:
    """A pass looks only at nodes with room: after filling most nodes, the rooms it copies are
    those of the nodes that still have some (the point of the index)."""
    owner = OwnerScheduler("owner", now=0.0, window=1)
    updates = [
        ev.NodeUpdate(f"n{i}", f"n{i}", True, {"cpu": 4.0}, {"cpu": 4.0 if i < 3 else 0.0}, 1)
        for i in range(50)
    ]
    owner.handle_batch(updates, 0.0)
    view = owner._view
    view._rooms.refresh(view)
    assert list(view._rooms.with_room()) == ["n0", "n1", "n2"]
    specs = [TaskSpec(f"t{i}", (), {"cpu": 1.0}, b"p") for i in range(20)]
    out = owner.handle_batch([ev.RunSubmitted("r", specs, RunOptions())], 0.1)
    placed = [d.node for d in out if isinstance(d, ev.Dispatch) for _ in d.items]
    assert sorted(placed) == ["n0"] * 4 + ["n1"] * 4 + ["n2"] * 4
    view._rooms.refresh(view)
    assert list(view._rooms.with_room()) == []
    # n40 reports room: the index has it at once, and the queued tasks go there.
    out = owner.handle_batch(
        [ev.NodeUpdate("n40", "n40", True, {"cpu": 4.0}, {"cpu": 2.0}, 2)], 0.2
    )
    assert [(d.node, len(d.items)) for d in out if isinstance(d, ev.Dispatch)] == [("n40", 2)]


def _placed_by(indexed: bool) -> dict[str, str]:
    owner = OwnerScheduler("owner", now=0.0, window=1)
    owner._view.indexed = indexed
    caps = {"a": {"cpu": 16.0}, "b": {"cpu": 4.0, "gpu": 4.0}, "c": {"cpu": 2.0, "gpu": 4.0}}
    free = {"a": {}, "b": {"cpu": 4.0, "gpu": 1.0}, "c": {"cpu": 1.0, "gpu": 3.0}}
    owner.handle_batch([ev.NodeUpdate(n, n, True, caps[n], free[n], 1) for n in caps], 0.0)
    specs = [TaskSpec("g", (), {"gpu": 1.0}, b"p"), TaskSpec("c", (), {"cpu": 1.0}, b"p")]
    out = owner.handle_batch([ev.RunSubmitted("r", specs, RunOptions())], 0.1)
    return {i.task_id: d.node for d in out if isinstance(d, ev.Dispatch) for i in d.items}


def test_room_index_keeps_full_nodes_when_demands_share_no_kind() -> None:
    """A batch whose demands share no kind is scored over every live node, full ones included:
    the largest capacity of each kind scales binpack's score (here node a's 16 cpus make b, with
    less gpu free, the better fit for the gpu task; without a, c would be)."""
    assert _placed_by(True) == _placed_by(False) == {"g": "b", "c": "b"}


def _window_pick(indexed: bool) -> list[tuple[str, int]]:
    owner = OwnerScheduler("owner", now=0.0, window=2, queue_seconds=None)
    owner._view.indexed = indexed
    caps = {"a": {"cpu": 16.0}, "b": {"cpu": 2.0, "gpu": 4.0}, "c": {"cpu": 4.0, "gpu": 2.0}}
    owner.handle_batch([ev.NodeUpdate(n, n, True, caps[n], {}, 1) for n in caps], 0.0)  # all busy
    pinned = [TaskSpec(f"p{i}", (), {"cpu": 1.0}, b"p", node="a") for i in range(32)]
    owner.handle_batch([ev.RunSubmitted("fill", pinned, RunOptions())], 0.1)  # a's window full
    gpu = [TaskSpec("g", (), {"gpu": 1.0}, b"p")]
    out = owner.handle_batch([ev.RunSubmitted("r", gpu, RunOptions())], 0.2)
    return [(d.node, len(d.items)) for d in out if isinstance(d, ev.Dispatch)]


def test_room_index_window_top_up_scores_against_every_live_node() -> None:
    """A window top-up looks only at windows that can take part, but binpack's score is scaled by
    the largest window of each kind over every live node: node a (16 cpus, window full) makes c's
    cpu room count for little, so the gpu task goes to c (b would win without a)."""
    assert _window_pick(True) == _window_pick(False) == [("c", 1)]


@pytest.mark.parametrize("seed", range(20))
def test_ordered_members_keep_the_nodes_order(seed: int) -> None:
    """``_Ordered`` (a set and its cached order, a C class compiled): after any run of puts, its
    order is its members in ``nodes`` order, cached or rebuilt, one member or many."""
    from handoffd.scheduler.room_index import _Ordered

    rng = random.Random(seed)
    names = [f"n{i}" for i in range(rng.randint(1, 6))]
    position = {name: i for i, name in enumerate(names)}
    members = _Ordered()
    expected: set[str] = set()
    for _ in range(40):
        name, inside = rng.choice(names), rng.random() < 0.5
        members.put(name, inside)
        (expected.add if inside else expected.discard)(name)
        assert members.members == expected
        if rng.random() < 0.7:
            assert members.ordered(position) == sorted(expected, key=position.__getitem__)
