"""``WindowMachine``: with the owner's dispatch window, no node idles while tasks are ready,
however the nodes report (a hypothesis state machine; a failing sequence shrinks)."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from scheduler_harness import Cluster, dispatches, spec

from handoffd.scheduler import events as ev
from handoffd.scheduler.cluster_view import QUEUE_SECONDS

Key = tuple[str, str, int]  # (run, task, attempt)


class WindowMachine(RuleBasedStateMachine):
    """One run of equal tasks on two nodes with the dispatch window: the nodes report finished
    tasks in any grouping and order; after the nodes have answered every dispatch, a node with
    nothing running or queued means no task is ready."""

    def __init__(self) -> None:
        super().__init__()
        self.c = Cluster({"n1": 1})
        self.where: dict[Key, str] = {}
        self.pending: list[ev.Dispatch] = []
        self.tasks = 0
        self.took = -1.0

    @initialize(
        tasks=st.integers(1, 120),
        window=st.integers(2, 8),
        cpus=st.tuples(st.sampled_from([1.0, 2.0, 3.0]), st.sampled_from([1.0, 2.0])),
        took=st.sampled_from([None, 0.0001, 0.002, 1.0]),
    )
    def start(self, tasks: int, window: int, cpus: tuple[float, float], took: float | None) -> None:
        self.tasks = tasks
        # took None: the depth alone (no time budget); else every task runs ``took`` seconds
        self.took = -1.0 if took is None else took
        queue_seconds = None if took is None else QUEUE_SECONDS
        self.c = Cluster({"n1": cpus[0], "n2": cpus[1]}, window=window, queue_seconds=queue_seconds)
        self.pending = dispatches(self.c.submit("r", [spec(f"t{i}") for i in range(tasks)]))
        self.answer_all()

    def answer_all(self) -> None:
        while self.pending:
            d = self.pending.pop(0)
            self.where.update({(d.run_id, i.task_id, i.attempt): d.node for i in d.items})
            self.pending += dispatches(self.c.feed(*self.c.reply(d)))

    def running(self, node: str) -> list[Key]:
        queued = {(r, t, a) for r, t, a, _ in self.c.queue[node]}
        return [k for k in self.c.costs if k not in queued and self.where[k] == node]

    @rule(node=st.sampled_from(["n1", "n2"]), count=st.integers(1, 8))
    def report(self, node: str, count: int) -> None:
        done = self.running(node)[:count]
        for key in done:
            self.c.release(node, *key)
        self.c.start_queued(node)  # before the report goes out: it says nothing is free
        reports = [ev.TaskSucceeded(r, t, a, node, 10, None, self.took) for r, t, a in done]
        self.pending = dispatches(self.c.feed(self.c.update(node), *reports))
        self.answer_all()

    @invariant()
    def no_node_idles_while_tasks_are_ready(self) -> None:
        status = self.c.sched.run_status("r")
        if status is None or status.state != "RUNNING":
            return
        ready = status.counts["READY"]
        for node in ("n1", "n2"):
            busy = self.running(node) or self.c.queue[node]
            assert busy or not ready, f"{node} idles with {ready} tasks ready"

    def teardown(self) -> None:
        if not self.tasks:
            return
        for _ in range(2 * self.tasks):
            if not self.c.costs:
                break
            for node in ("n1", "n2"):
                if self.running(node):
                    self.report(node, 8)
        status = self.c.sched.run_status("r")
        assert status is not None and status.counts["DONE"] == self.tasks, status


WindowMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_window_never_leaves_a_node_idle = WindowMachine.TestCase
