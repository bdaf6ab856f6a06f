"""Re-placement of queued work: a task waiting in a busy node's queue moves to a node that frees
up, through a withdraw handshake that never runs a task twice (scheduler/rebalance.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from scheduler_harness import CPU, Cluster, of_type, placed, spec

from handoffd.resources import fits, subtract
from handoffd.scheduler import events as ev
from handoffd.scheduler.cluster_view import QUEUE_SECONDS, WINDOW

Key = tuple[str, str, int]


def _answer(c: Cluster, w: ev.Withdraw) -> ev.WithdrawAnswered:
    """The node's side of a withdrawal: drop what is still queued, keep the rest."""
    queue = c.queue[w.node]
    waiting = {(r, t, a) for r, t, a, _ in queue}
    withdrawn = [(t, a) for t, a in w.items if (w.run_id, t, a) in waiting]
    c.queue[w.node] = [
        q for q in queue if (q[0], q[1], q[2]) not in {(w.run_id, *i) for i in withdrawn}
    ]
    kept = [i for i in w.items if i not in withdrawn]
    return ev.WithdrawAnswered(w.node, w.run_id, withdrawn, kept)


def test_a_task_queued_behind_other_owners_work_moves_to_a_node_that_frees() -> None:
    # "busy" is full of another owner's work; "idle" has room for one task.
    c = Cluster(
        {"busy": 1, "idle": 1}, free={"busy": 0}, window=WINDOW, queue_seconds=QUEUE_SECONDS
    )
    out = c.submit("r", [spec("t0"), spec("t1")])
    assert placed(out) == {"t0": ("idle", 1), "t1": ("busy", 1)}  # t1 waits in busy's queue
    c.accept_all(out)
    assert c.queue["busy"] and not of_type(c.log, ev.Withdraw)
    out = c.succeed("idle", "r", "t0", 1, duration=1.0)  # idle frees: ask busy for t1 back
    (w,) = of_type(out, ev.Withdraw)
    assert (w.node, w.run_id, w.items) == ("busy", "r", (("t1", 1),))
    out = c.feed(c.update("busy"), _answer(c, w))
    assert placed(out) == {"t1": ("idle", 2)}  # a new attempt where it starts now
    assert not c.queue["busy"]
    c.accept_all(out)
    c.succeed("idle", "r", "t1", 2, duration=1.0)
    status = c.sched.run_status("r")
    assert status is not None and status.state == "DONE"


def test_a_task_that_already_started_stays_and_is_never_asked_again() -> None:
    c = Cluster(
        {"busy": 1, "idle": 1}, free={"busy": 0}, window=WINDOW, queue_seconds=QUEUE_SECONDS
    )
    c.accept_all(c.submit("r", [spec("t0"), spec("t1")]))
    c.used["busy"] = {}  # the other owner's work ended: busy starts t1 from its queue
    (started,) = c.start_queued("busy")
    out = c.succeed("idle", "r", "t0", 1, duration=1.0)
    (w,) = of_type(out, ev.Withdraw)
    out = c.feed(_answer(c, w))
    assert w.items == ((started[1], started[2]),) and not placed(out)
    out = c.feed(c.update("idle"))  # idle still free: nothing more to ask
    assert not of_type(out, ev.Withdraw)
    c.succeed("busy", "r", "t1", 1, duration=1.0)
    status = c.sched.run_status("r")
    assert status is not None and status.state == "DONE"


def test_short_tasks_are_left_in_their_queues() -> None:
    """Known short work drains within the time budget: never worth a round trip."""
    c = Cluster({"a": 1, "b": 1}, window=WINDOW, queue_seconds=QUEUE_SECONDS)
    for i in range(3):
        c.sched._view.durations.observe(f"s{i}", ((CPU, 1.0),), 0.0002)
    out = c.submit("r", [spec(f"s{i}") for i in range(3)])
    c.accept_all(out)
    assert len(placed(c.log)) == 3
    assert not c.sched._rebalance.queued


class RebalanceMachine(RuleBasedStateMachine):
    """Three nodes, other owners' load coming and going, runs of unknown-duration tasks, node
    deaths, withdrawals answered late or in any order: no task ever has two live copies (queued or
    running), no ledger over-commits, a withdrawn attempt never starts, and every run finishes."""

    def __init__(self) -> None:
        super().__init__()
        self.c = Cluster({"n1": 1})
        self.where: dict[Key, str] = {}
        self.withdraws: list[ev.Withdraw] = []
        self.withdrawn: set[Key] = set()
        self.started: set[Key] = set()
        self.runs = 0

    @initialize(cpus=st.lists(st.sampled_from([1, 2]), min_size=3, max_size=3))
    def start(self, cpus: list[int]) -> None:
        nodes: dict[str, Any] = {f"n{i}": cpu for i, cpu in enumerate(cpus)}
        # n0 and n1 start full of other owners' work: our tasks wait in their queues
        self.c = Cluster(nodes, free={"n0": 0, "n1": 0}, window=WINDOW, queue_seconds=QUEUE_SECONDS)

    def process(self, out: list[ev.Instruction]) -> None:
        pending = list(out)
        while pending:
            ins = pending.pop(0)
            if isinstance(ins, ev.Withdraw):
                self.withdraws.append(ins)
            elif isinstance(ins, ev.Dispatch):
                if not self.c.alive[ins.node]:
                    continue
                for item in ins.items:
                    self.where[(ins.run_id, item.task_id, item.attempt)] = ins.node
                pending += self.c.feed(*self.c.reply(ins))
                self.note_running()
            elif isinstance(ins, ev.CancelAttempts) and self.c.alive[ins.node]:
                for task_id, attempt in ins.items:
                    key = (ins.run_id, task_id, attempt)
                    self.c.queue[ins.node] = [q for q in self.c.queue[ins.node] if q[:3] != key]
                    if key in self.c.costs:
                        self.c.release(ins.node, *key)

    def note_running(self) -> None:
        for key in self.c.costs:
            assert key not in self.withdrawn, f"{key} started after it was withdrawn"
            self.started.add(key)

    @rule(tasks=st.integers(1, 6))
    def submit(self, tasks: int) -> None:
        run = f"r{self.runs}"
        self.runs += 1
        self.process(self.c.submit(run, [spec(f"t{i}") for i in range(tasks)]))

    @precondition(lambda self: any(self.running_on(n) for n in self.c.capacity))
    @rule(pick=st.integers(0, 30), prompt=st.booleans())
    def finish(self, pick: int, prompt: bool = False) -> None:
        """A task of ours ends; ``prompt``: the withdrawals it causes are answered at once (else
        they stay in flight while more happens)."""
        busy = [(n, k) for n in self.c.capacity for k in self.running_on(n)]
        node, key = busy[pick % len(busy)]
        self.c.release(node, *key)
        self.c.start_queued(node)
        self.note_running()
        out = self.c.feed(self.c.update(node), ev.TaskSucceeded(*key, node, 10, None, 1.0))
        self.process(out)
        while prompt and self.withdraws:
            self.answer_withdraw(len(self.withdraws) - 1)

    @rule(node=st.sampled_from(["n0", "n1", "n2"]), load=st.sampled_from([0.0, 1.0]))
    def foreign_load(self, node: str, load: float) -> None:
        """Another owner's work on ``node`` starts or ends (its ledger share)."""
        if not self.c.alive[node]:
            return
        mine = {CPU: 0.0}
        for key in self.running_on(node):
            mine[CPU] += self.c.costs[key][CPU]
        want = min(load, self.c.capacity[node][CPU] - mine[CPU])
        self.c.used[node] = {CPU: mine[CPU] + max(want, 0.0)}
        self.c.start_queued(node)
        self.note_running()
        self.process(self.c.feed(self.c.update(node)))

    @precondition(lambda self: self.withdraws)
    @rule(pick=st.integers(0, 10))
    def answer_withdraw(self, pick: int) -> None:
        w = self.withdraws.pop(pick % len(self.withdraws))
        if not self.c.alive[w.node]:
            return
        answer = _answer(self.c, w)
        self.withdrawn |= {(w.run_id, t, a) for t, a in answer.withdrawn}
        self.process(self.c.feed(self.c.update(w.node), answer))

    @precondition(lambda self: all(self.c.alive.values()))
    @rule(node=st.sampled_from(["n0", "n1", "n2"]))
    def kill(self, node: str) -> None:
        """(One death per example: the others keep the machine moving work around.)"""
        if self.c.alive[node]:
            self.c.queue[node] = []
            for key in [k for k in self.c.costs if self.where.get(k) == node]:
                self.c.costs.pop(key)
            self.process(self.c.kill(node))

    def running_on(self, node: str) -> list[Key]:
        if not self.c.alive[node]:
            return []
        return [k for k in self.c.costs if self.where.get(k) == node]

    @invariant()
    def at_most_one_live_copy_and_no_overcommit(self) -> None:
        copies: dict[tuple[str, str], list[Key]] = {}
        for node in self.c.capacity:
            if not self.c.alive[node]:
                continue
            live = self.running_on(node) + [q[:3] for q in self.c.queue[node]]
            for key in live:
                copies.setdefault(key[:2], []).append(key)
            used = self.c.used[node]
            assert fits(used, self.c.capacity[node]), f"{node} over-committed: {used}"
        for task, keys in copies.items():
            assert len(keys) == 1, f"{task} has live copies {keys}"

    def teardown(self) -> None:
        for node in self.c.capacity:  # other owners leave
            if self.c.alive[node]:
                self.c.used[node] = subtract(
                    self.c.used[node], subtract(self.c.used[node], self.mine(node))
                )
                self.c.start_queued(node)
                self.process(self.c.feed(self.c.update(node)))
        for _ in range(400):
            while self.withdraws:
                self.answer_withdraw(0)
            busy = [n for n in self.c.capacity if self.running_on(n)]
            if not busy:
                break
            self.finish(0)
        for r in range(self.runs):
            status = self.c.sched.run_status(f"r{r}")
            assert status is not None and status.state == "DONE", (r, status)

    def mine(self, node: str) -> dict[str, float]:
        total = {CPU: 0.0}
        for key in self.running_on(node):
            total[CPU] += self.c.costs[key][CPU]
        return total


RebalanceMachine.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_rebalancing_never_runs_a_task_twice = RebalanceMachine.TestCase
