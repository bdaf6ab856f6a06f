"""Shared harness for the owner-scheduler tests: a simulated cluster that plays the nodes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from handoffd.resources import add, fits, subtract
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.spec import RunOptions, TaskSpec

CPU = "cpu"


def spec(tid: str, *deps: str, cpu: float = 1.0, **kw: Any) -> TaskSpec:
    cost = kw.pop("cost", {CPU: cpu})
    return TaskSpec(tid, tuple(deps), cost, tid.encode(), **kw)


class Cluster:
    """Simulated nodes around one scheduler. ``window=1`` (the default here) turns pipelining off:
    what is dispatched is what the policy placed on free resources, and a node refuses what its
    ledger cannot claim at once. With ``window > 1`` a node queues what fits its capacity (``queue``)
    and claims a queued task from its ledger only when it starts (``start_queued``).

    ``queue_seconds`` None (the default here): the window's depth alone bounds queued work, whatever
    the tasks' durations (the tests of the depth mechanism); a number: the owner's time budget, with
    durations learned from ``succeed(..., duration=)``."""

    def __init__(
        self,
        nodes: dict[str, float | dict[str, float]],
        free: dict[str, float] | None = None,
        window: int = 1,
        queue_seconds: float | None = None,
        backend: str | None = None,
    ):
        self.sched = OwnerScheduler(
            "owner", now=0.0, window=window, queue_seconds=queue_seconds, backend=backend
        )
        self.window = window
        self.queue: dict[str, list[tuple[str, str, int, dict[str, float]]]] = {n: [] for n in nodes}
        self.t = 0.0
        self.capacity = {
            n: (c if isinstance(c, dict) else {CPU: float(c)}) for n, c in nodes.items()
        }
        self.used: dict[str, dict[str, float]] = {n: {} for n in nodes}
        if free is not None:  # other owners' work: occupies the ledger
            for n, f in free.items():
                self.used[n] = {CPU: self.capacity[n][CPU] - f}
        self.version = dict.fromkeys(nodes, 0)
        self.alive = dict.fromkeys(nodes, True)
        self.costs: dict[tuple[str, str, int], dict[str, float]] = {}
        self.log: list[ev.Instruction] = []
        self.feed(*[self.update(n) for n in nodes])

    def feed(self, *events: ev.Event) -> list[ev.Instruction]:
        self.t += 0.01
        out = self.sched.handle_batch(events, self.t)
        self.sched.validate()
        self.log.extend(out)
        return out

    def free(self, node: str) -> dict[str, float]:
        return subtract(self.capacity[node], self.used[node])

    def update(self, node: str) -> ev.NodeUpdate:
        self.version[node] += 1
        return ev.NodeUpdate(
            node, node, True, self.capacity[node], self.free(node), self.version[node]
        )

    def reply(self, d: ev.Dispatch, refuse: bool = False) -> list[ev.Event]:
        """The node's answer to a dispatch: its fresh free first, then the reply."""
        accepted, refused = [], []
        for item in d.items:
            if not refuse and fits(item.cost, self.free(d.node)) and not self.queue[d.node]:
                self.used[d.node] = add(self.used[d.node], item.cost)
                self.costs[(d.run_id, item.task_id, item.attempt)] = item.cost
                accepted.append((item.task_id, item.attempt))
            elif not refuse and self.window > 1 and fits(item.cost, self.capacity[d.node]):
                self.queue[d.node].append((d.run_id, item.task_id, item.attempt, item.cost))
                accepted.append((item.task_id, item.attempt))
            else:
                refused.append((item.task_id, item.attempt, "no room"))
        return [self.update(d.node), ev.DispatchAnswered(d.node, d.run_id, accepted, refused)]

    def release(self, node: str, run_id: str, task_id: str, attempt: int) -> None:
        cost = self.costs.pop((run_id, task_id, attempt))
        self.used[node] = subtract(self.used[node], cost)

    def start_queued(self, node: str) -> list[tuple[str, str, int]]:
        """The node starts queued tasks (in order) while its ledger can claim them."""
        started = []
        queue = self.queue[node]
        while queue and fits(queue[0][3], self.free(node)):
            run_id, task_id, attempt, cost = queue.pop(0)
            self.used[node] = add(self.used[node], cost)
            self.costs[(run_id, task_id, attempt)] = cost
            started.append((run_id, task_id, attempt))
        return started

    def succeed(
        self,
        node: str,
        run_id: str,
        task_id: str,
        attempt: int,
        size: int = 10,
        value: bytes | None = None,
        duration: float = -1.0,
    ) -> list[ev.Instruction]:
        self.release(node, run_id, task_id, attempt)
        return self.feed(
            self.update(node),
            ev.TaskSucceeded(run_id, task_id, attempt, node, size, value, duration),
        )

    def succeed_many(
        self,
        node: str,
        run_id: str,
        done: list[tuple[str, int, int, bytes | None, float]],
        columns: bool = True,
    ) -> list[ev.Instruction]:
        """Attempts of one run on ``node`` that finished together, (task id, attempt, size, value,
        duration) each, reported in one message: as one ``TasksSucceeded`` (``columns``, what the
        daemon feeds) or as a ``TaskSucceeded`` each."""
        for task_id, attempt, *_ in done:
            self.release(node, run_id, task_id, attempt)
        if columns:
            ids, attempts, sizes, values, durations = (list(c) for c in zip(*done, strict=True))
            return self.feed(
                self.update(node),
                ev.TasksSucceeded(run_id, node, ids, attempts, sizes, values, durations),
            )
        return self.feed(
            self.update(node),
            *[ev.TaskSucceeded(run_id, t, a, node, *rest) for t, a, *rest in done],
        )

    def error(
        self, node: str, run_id: str, task_id: str, attempt: int, kind: str = "error"
    ) -> list[ev.Instruction]:
        self.release(node, run_id, task_id, attempt)
        event = ev.TaskErrored(
            run_id, task_id, attempt, node, kind, "ValueError", f"bad {attempt}", "tb"
        )
        return self.feed(self.update(node), event)

    def kill(self, node: str) -> list[ev.Instruction]:
        self.alive[node] = False
        return self.feed(
            ev.NodeUpdate(node, node, False, self.capacity[node], {}, self.version[node])
        )

    def submit(self, run_id: str, specs: list[TaskSpec], **options: Any) -> list[ev.Instruction]:
        return self.feed(ev.RunSubmitted(run_id, specs, RunOptions(**options)))

    def accept_all(self, out: Iterable[ev.Instruction]) -> list[ev.Instruction]:
        more: list[ev.Instruction] = []
        for d in dispatches(out):
            more += self.feed(*self.reply(d))
        return more


def dispatches(out: Iterable[ev.Instruction]) -> list[ev.Dispatch]:
    return [i for i in out if isinstance(i, ev.Dispatch)]


def placed(out: Iterable[ev.Instruction]) -> dict[str, tuple[str, int]]:
    """task id -> (node, attempt) of every dispatched item."""
    return {item.task_id: (d.node, item.attempt) for d in dispatches(out) for item in d.items}


def of_type(out: Iterable[ev.Instruction], cls: type) -> list[Any]:
    return [i for i in out if isinstance(i, cls)]


# -- DAG shapes and inputs --------------------------------------------------------------------------
