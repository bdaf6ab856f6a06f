"""The owner's whole observable run state, compiled and pure Python, after every batch of a random
run that takes the rare paths too: refused dispatches, retries and failures, a node lost, a cancel,
and a takeover (the run's snapshot restored by a second scheduler of the same build, which then
finishes it).

``tests/unit/test_scheduler_twin.py`` compares the two builds' instructions; this compares, after
every ``handle_batch``, what a column-kept run must keep exact as well: every task's state, node,
attempt, retry and loss counts, copies, delay, history and attempt rows (the run's ``snapshot``,
histories included), the run's counts and state, each node's outstanding demand and the owner's
counters. It is the gate for any change of how a run keeps its tasks (records or columns): the
pure-Python build is the reference.
"""

from __future__ import annotations

import random
from typing import Any

from core_strategies import seeded, size
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheduler_harness import Cluster, dispatches, spec
from test_scheduler_twin import cluster, workloads

from handoffd.scheduler import events as ev

RUN = "r"


def observe(c: Cluster, out: list[ev.Instruction]) -> tuple[Any, ...]:
    """Everything a caller or a standby can see of the scheduler after one batch."""
    sched = c.sched
    run = sched.run_state(RUN)
    seen: tuple[Any, ...] = (
        [repr(i) for i in out],
        repr(sched.run_status(RUN)),
        dict(sched.counters),
        {n: sched.outstanding(n) for n in sorted(c.capacity)},
    )
    if run is not None:
        seen += (run.snapshot(), run.counts(), run.state, run.remaining, run.placement())
    return seen


class Driver:
    """One build's cluster driven by the drawn steps; ``trace`` is what was observed after each."""

    def __init__(self, pure: bool, nodes: dict[str, Any], window: int, budget: float | None):
        self.pure, self.nodes, self.window, self.budget = pure, nodes, window, budget
        self.c = cluster(pure, nodes, window, budget)
        self.trace: list[tuple[Any, ...]] = []
        self.waiting: list[ev.Dispatch] = []
        self.running: list[tuple[str, str, str, int]] = []
        self.timers: list[ev.StartTimer] = []

    def took(self, out: list[ev.Instruction]) -> None:
        self.trace.append(observe(self.c, out))
        self.waiting.extend(dispatches(out))
        self.timers += [i for i in out if isinstance(i, ev.StartTimer)]

    def fire_timers(self) -> bool:
        """Nothing runs: the timers started so far run out (retry backoffs, refused dispatches
        held back), the clock past the longest; False if none was waiting."""
        timers, self.timers = self.timers, []
        if not timers:
            return False
        self.c.t += max(t.delay for t in timers)
        self.took(self.c.feed(*[ev.TimerFired(t.key) for t in timers]))
        self.answer(refuse=False)
        return True

    def answer(self, refuse: bool) -> None:
        while self.waiting:
            d = self.waiting.pop(0)
            if not self.c.alive.get(d.node, False):
                continue
            answer = self.c.reply(d, refuse=refuse)
            refuse = False  # (one refused dispatch a step at most)
            for task_id, attempt in answer[1].accepted:  # type: ignore[attr-defined]
                if (d.run_id, task_id, attempt) in self.c.costs:  # (else queued on the node)
                    self.running.append((d.node, d.run_id, task_id, attempt))
            self.took(self.c.feed(*answer))
        for node in self.c.queue:
            if self.c.alive[node]:
                self.running += [(node, *key) for key in self.c.start_queued(node)]

    def take_over(self) -> None:
        """A standby's takeover: the run's snapshot restored by a new scheduler (term 1) that
        sees the same live nodes; what was out keeps running on them and reports to it."""
        data = self.c.sched.snapshot(RUN)
        old = self.c
        new = cluster(self.pure, self.nodes, self.window, self.budget)
        for node, alive in old.alive.items():
            new.used[node], new.queue[node] = old.used[node], old.queue[node]
            new.costs = old.costs
            if not alive:
                new.kill(node)
        new.feed(*[new.update(n) for n in new.capacity if new.alive[n]])
        self.c = new
        self.trace.append(("takeover",))
        self.timers = []  # (the old owner's: the new one starts its own)
        self.took(new.sched.restore_run(data, new.t, term=1))

    def step(self, pick: int, action: str, seconds: float, together: int) -> bool:
        self.answer(refuse=action == "refuse")
        if action == "kill":
            node = sorted(self.c.capacity)[pick % len(self.c.capacity)]
            if self.c.alive[node] and sum(self.c.alive.values()) > 1:
                self.running = [r for r in self.running if r[0] != node]
                self.c.queue[node] = []
                self.took(self.c.kill(node))
            return True
        if action == "cancel":
            self.took(self.c.feed(ev.CancelRequested(RUN)))
            return True
        if action == "takeover":
            if self.c.sched.run_state(RUN) is not None:  # (a run still held: it has a snapshot)
                self.take_over()
            return True
        if not self.running and not self.fire_timers():
            return False
        if not self.running:
            return True
        node, run_id, task_id, attempt = self.running.pop(pick % len(self.running))
        if action == "fail":
            self.took(self.c.error(node, run_id, task_id, attempt))
        elif together > 1:
            done = [(task_id, attempt, pick % 50, b"v", seconds)]
            for other in [r for r in self.running if r[0] == node][: together - 1]:
                self.running.remove(other)
                done.append((other[2], other[3], 7, None, -1.0))
            self.took(self.c.succeed_many(node, run_id, done))
        else:
            self.took(self.c.succeed(node, run_id, task_id, attempt, pick % 50, b"v", seconds))
        return True


def drive(d: Driver, specs: Any, options: dict[str, Any], steps: Any) -> list[tuple[Any, ...]]:
    d.took(d.c.submit(RUN, specs, **options))
    for pick, action, seconds, together in steps:
        if not d.step(pick, action, seconds, together):
            break
    return d.trace


ACTIONS = ["succeed"] * 8 + ["fail", "fail", "refuse", "kill", "kill", "cancel", "takeover"]


def event_steps(rng: random.Random) -> list[tuple[int, str, float, int]]:
    """A run of random events: (seed, action, a task's duration, how many); test_owner_moves
    draws the same."""
    return [
        (
            rng.randint(0, 1000),
            rng.choice(ACTIONS),
            rng.choice([0.0001, 0.001, 0.05]),
            rng.choice([1, 1, 2, 4]),
        )
        for _ in range(size(rng, 0, 40))
    ]


STEPS = seeded(event_steps)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    workload=workloads(),
    sizes=st.lists(st.sampled_from([1.0, 2.0, 4.0]), min_size=1, max_size=3),
    window=st.sampled_from([1, 4, 32]),
    budget=st.sampled_from([None, 0.005]),
    steps=STEPS,
)
def test_both_builds_keep_the_same_run_state_after_every_batch(
    workload: Any, sizes: list[float], window: int, budget: float | None, steps: Any
) -> None:
    specs, options = workload
    nodes = {f"n{i}": {"cpu": size, "mem": 10.0} for i, size in enumerate(sizes)}
    built = drive(Driver(False, nodes, window, budget), specs, options, steps)
    pure = drive(Driver(True, nodes, window, budget), specs, options, steps)
    assert len(built) == len(pure)
    for i, (b, p) in enumerate(zip(built, pure, strict=True)):
        assert b == p, f"batch {i} differs"


def test_the_observed_state_tells_a_changed_task_apart() -> None:
    """The comparison can fail: a task's attempt changed behind the scheduler's back shows."""
    nodes = {"n0": {"cpu": 2.0, "mem": 10.0}}
    a, b = Driver(False, nodes, 1, None), Driver(True, nodes, 1, None)
    for d in (a, b):
        d.took(d.c.submit(RUN, [spec("t0"), spec("t1", "t0")]))
    assert a.trace == b.trace
    run = a.c.sched.run_state(RUN)
    assert run is not None
    run.tasks["t0"].attempt += 1
    assert observe(a.c, []) != observe(b.c, [])
