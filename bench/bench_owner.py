"""The owner's scheduler CPU per task, without sockets, workers or a second process.

Drives ``OwnerScheduler`` the way ``daemon.owner`` does: one ``handle_batch`` per message (a
``DispatchReplied`` or a ``TasksReported``, each preceded by the node's ``NodeUpdate``), with
simulated nodes that accept every dispatch into a local queue, run ``capacity`` tasks at a time and
report completions in batches of up to ``--report-batch`` (a node flushes its reports once per loop
iteration, so a batch is what finished meanwhile). Only the CPU time inside the scheduler is counted (process time: other load on the machine
matters less than with a wall clock).

Workloads: ``w1`` (10,000 independent no-op tasks, as the peer benchmark's W1) and ``w2`` (the
50 x 100 layered DAG of W2, three parents per task, small values kept by the owner). Prints owner
microseconds per task for the submit and for the rest of the run, the number of scheduler calls
and dispatch messages, and tasks per dispatch. ``--profile`` prints the top of a cProfile of the
run phase instead. ``--replicate``: the scheduler feeds the replication log's shell
(``ReplicationIO`` with one standby, on a port with no sockets whose timers fire between messages)
as ``daemon.node.wire`` wires it, the feed counted in the scheduler's time; its flushes are not:
they are printed apart, as "log flush (encoded)", CPU per task of the timers that flush the log,
each ``ReplicateLog`` encoded by a node's codec as the transport would. ``--tick``: simulated
seconds per message, which the flush timer runs on (2e-3: about W1's pace in a daemon, ~100-200
tasks a batch; the default 1e-4 makes a few batches of ``FLUSH_LIMIT``).
Usage::

    .venv/bin/python bench/bench_owner.py            # both workloads, 5 repetitions each
    .venv/bin/python bench/bench_owner.py --only w1 --repeat 9 --nodes 2 --window 32
    .venv/bin/python bench/bench_owner.py --replicate
    .venv/bin/python bench/bench_owner.py --replicate --cpus 48 --window 48 --report-batch 64 \
        --tick 2e-3                                   # the log's flush per task at W1's pace
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import statistics
import sys
import time
from collections import deque
from typing import Any

from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.spec import RunOptions, TaskSpec

CPU = "cpu"


class _Timer:
    def __init__(self, due: float, callback: Any, args: tuple[Any, ...]) -> None:
        self.due, self.callback, self.args, self.cancelled = due, callback, args, False

    def cancel(self) -> None:
        self.cancelled = True


class _Port:
    """What ``ReplicationIO`` asks of the node, without sockets: the sim's clock, sends dropped,
    timers fired by ``fire`` between messages, one live standby ``s``."""

    name, address = "n0", "n0:1"

    def __init__(self) -> None:
        from handoffd.protocol import messages as m
        from handoffd.protocol.codec import Codec

        self.clock = 0.0
        self.timers: list[_Timer] = []
        self.codec: Any = Codec()
        self.sent = 0
        self.busy = 0.0  # CPU seconds in fired timers (the log's flushes and their encoding)
        self._members = [m.MemberState("s", "s:1", "c", 1, m.ALIVE, {CPU: 1.0}, {CPU: 1.0}, 1)]

    def now(self) -> float:
        return self.clock

    def members(self) -> list[Any]:
        return self._members

    def member(self, name: str) -> Any:
        return next((s for s in self._members if s.name == name), None)

    def address_of(self, name: str) -> str | None:
        return f"{name}:1"

    def send(self, address: str, msg: Any, frames: Any = None, term: int = 0) -> bool:
        # Encoded as the node's transport does (once per message), so a flush's cost is whole.
        if self.codec is not None:
            self.codec.encode(msg, sender=self.name, term=term, frames=frames)
        self.sent += 1
        return True

    def call_later(self, delay: float, callback: Any, *args: Any) -> _Timer:
        timer = _Timer(self.clock + max(0.0, delay), callback, args)
        self.timers.append(timer)
        return timer

    def call_soon(self, callback: Any, *args: Any) -> _Timer:
        return self.call_later(0.0, callback, *args)

    def fire(self, now: float) -> None:
        self.clock = now
        start = time.process_time()
        self._fire(now)
        self.busy += time.process_time() - start

    def _fire(self, now: float) -> None:
        while due := [t for t in self.timers if t.due <= now or t.cancelled]:
            for t in due:
                self.timers.remove(t)
            for t in due:
                if not t.cancelled:
                    t.callback(*t.args)


def w1_specs(n: int) -> list[TaskSpec]:
    return [TaskSpec(f"t{i}", (), {CPU: 1.0}, b"payload") for i in range(n)]


def w2_specs(layers: int, width: int, seed: int = 7) -> list[TaskSpec]:
    rng = random.Random(seed)
    specs = [TaskSpec(f"l0-{i}", (), {CPU: 1.0}, b"payload") for i in range(width)]
    for layer in range(1, layers):
        for i in range(width):
            deps = tuple(f"l{layer - 1}-{j}" for j in rng.sample(range(width), 3))
            specs.append(TaskSpec(f"l{layer}-{i}", deps, {CPU: 1.0}, b"payload"))
    return specs


class SimNode:
    def __init__(self, name: str, cpus: float, memory: float) -> None:
        self.name = name
        self.capacity = {CPU: cpus, "memory": memory} if memory > 0 else {CPU: cpus}
        self.version = 0
        self.queue: deque[tuple[str, str, int]] = deque()

    def update(self) -> ev.NodeUpdate:
        self.version += 1
        running = min(len(self.queue), int(self.capacity[CPU]))
        free = {k: q for k, q in self.capacity.items() if k != CPU}  # tasks cost cpu only
        if running < self.capacity[CPU]:
            free[CPU] = self.capacity[CPU] - running
        return ev.NodeUpdate(self.name, self.name, True, self.capacity, free, self.version)


class Sim:
    def __init__(
        self, nodes: int, cpus: float, window: int, report_batch: int, memory: float = 0.0
    ) -> None:
        self.sched = OwnerScheduler("n0", now=0.0, window=window)
        self.nodes = {f"n{i}": SimNode(f"n{i}", cpus, memory) for i in range(nodes)}
        self.report_batch = report_batch
        self.columns = True
        self.tick = 1e-4  # sim seconds per message (the log's flush timer runs on them)
        self.now = 0.0
        self.busy = 0.0  # seconds inside the scheduler
        self.calls = 0
        self.dispatches = 0
        self.dispatched = 0
        self.finished: set[str] = set()
        self.inbox: deque[tuple[str, list[Any]]] = deque()  # (node, events of one message)
        self.timers: deque[Any] = deque()  # due timers (fired before the next message)
        self.port: _Port | None = None
        self.replication: Any = None
        self.feed([n.update() for n in self.nodes.values()])

    def replicate(self) -> None:
        from handoffd.daemon.replication import ReplicationIO

        self.port = _Port()
        self.replication = rep = ReplicationIO(self.port, self.sched, replicas=1, grace=1.0)  # type: ignore[arg-type]
        self.sched.on_change = rep.task_changed
        if hasattr(rep, "tasks_changed"):  # (a build with the batch feed wires it too)
            self.sched.on_changes = rep.tasks_changed

    def feed(self, events: list[Any]) -> None:
        self.now += self.tick
        if self.port is not None:
            self.port.fire(self.now)  # (the log's flushes: not the scheduler's time)
        start = time.process_time()
        out = self.sched.handle_batch(events, self.now)
        self.busy += time.process_time() - start
        self.calls += 1
        for instr in out:
            if isinstance(instr, ev.Dispatch):
                self.dispatches += 1
                self.dispatched += len(instr.items)
                node = self.nodes[instr.node]
                accepted = []
                for item in instr.items:
                    node.queue.append((instr.run_id, item.task_id, item.attempt))
                    accepted.append((item.task_id, item.attempt))
                reply = ev.DispatchAnswered(node.name, instr.run_id, tuple(accepted), ())
                self.inbox.append((node.name, [node.update(), reply]))
            elif isinstance(instr, ev.RunFinished):
                self.finished.add(instr.run_id)
            elif isinstance(instr, ev.StartTimer) and instr.key[0] == "intake":
                # A big run is taken in by slices, each on a timer of 0 s (``scheduler.intake``).
                self.timers.append(ev.TimerFired(instr.key))

    def step(self) -> bool:
        """Deliver one pending message, else let every node report a batch; False when idle."""
        if self.timers:
            self.feed([self.timers.popleft()])
            return True
        if self.inbox:
            _, events = self.inbox.popleft()
            self.feed(events)
            return True
        progressed = False
        for node in self.nodes.values():
            if not node.queue:
                continue
            done = [node.queue.popleft() for _ in range(min(self.report_batch, len(node.queue)))]
            reports: list[Any]
            if self.columns:  # what the daemon feeds: one event per report message (one run here)
                ids = [task_id for _, task_id, _ in done]
                tries = [attempt for _, _, attempt in done]
                k = len(done)
                values = [b"\x92\x01\x02"] * k
                reports = [
                    ev.TasksSucceeded(
                        done[0][0], node.name, ids, tries, [9] * k, values, [-1.0] * k
                    )
                ]
            else:
                reports = [
                    ev.TaskSucceeded(run_id, task_id, attempt, node.name, 9, b"\x92\x01\x02")
                    for run_id, task_id, attempt in done
                ]
            self.feed([node.update(), *reports])
            progressed = True
        return progressed


def run_once(
    specs: list[TaskSpec],
    nodes: int,
    cpus: float,
    window: int,
    report_batch: int,
    prof: Any = None,
    memory: float = 0.0,
    columns: bool = True,
    replicate: bool = False,
    tick: float = 1e-4,
) -> dict[str, float]:
    sim = Sim(nodes, cpus, window, report_batch, memory)
    sim.columns = columns
    sim.tick = tick
    if replicate:
        sim.replicate()
    sim.busy = 0.0
    start = time.process_time()
    sim.feed([ev.RunSubmitted("run", specs, RunOptions())])
    if sim.replication is not None:  # (tracked from here, as the owner's shell does)
        sim.replication.run_accepted("run", lambda: None)
    submit = time.process_time() - start
    sim.busy = 0.0
    calls0 = sim.calls
    if sim.port is not None:
        sim.port.busy, sim.port.sent = 0.0, 0
    if prof is not None:
        prof.enable()
    while "run" not in sim.finished:
        if not sim.step():
            raise RuntimeError("the simulation stalled with the run unfinished")
    if sim.port is not None:  # the rest of the run's log, as the flush timer would send it
        sim.port.fire(sim.now + 1.0)
    if prof is not None:
        prof.disable()
    n = len(specs)
    return {
        "submit_us": submit / n * 1e6,
        "run_us": sim.busy / n * 1e6,
        "calls": sim.calls - calls0,
        "dispatches": sim.dispatches,
        "per_dispatch": sim.dispatched / max(sim.dispatches, 1),
        "flush_us": sim.port.busy / n * 1e6 if sim.port is not None else 0.0,
        "sent": sim.port.sent if sim.port is not None else 0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default="w1,w2")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--cpus", type=float, default=1.0)
    p.add_argument("--memory", type=float, default=0.0, help="node memory MB (a 2nd kind)")
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--report-batch", type=int, default=4)
    p.add_argument("--tasks", type=int, default=10_000, help="w1 size")
    p.add_argument("--profile", action="store_true")
    p.add_argument(
        "--events",
        action="store_true",
        help="report a TaskSucceeded per task (before: a TasksSucceeded per report message)",
    )
    p.add_argument("--replicate", action="store_true", help="feed the replication log's shell")
    p.add_argument(
        "--tick",
        type=float,
        default=1e-4,
        help="simulated seconds per message (2e-3: W1's pace in a daemon, ~100 tasks a log batch)",
    )
    args = p.parse_args(argv)
    workloads = {"w1": lambda: w1_specs(args.tasks), "w2": lambda: w2_specs(50, 100)}
    for name in args.only.split(","):
        specs = workloads[name]()
        if args.profile:
            prof = cProfile.Profile()
            run_once(
                specs,
                args.nodes,
                args.cpus,
                args.window,
                args.report_batch,
                prof,
                args.memory,
                replicate=args.replicate,
            )
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            continue
        rows = [
            run_once(
                specs,
                args.nodes,
                args.cpus,
                args.window,
                args.report_batch,
                memory=args.memory,
                columns=not args.events,
                replicate=args.replicate,
                tick=args.tick,
            )
            for _ in range(args.repeat)
        ]
        sub = [r["submit_us"] for r in rows]
        run = [r["run_us"] for r in rows]
        last = rows[-1]
        print(
            f"{name}: {len(specs)} tasks, {args.nodes} nodes x {args.cpus:g} cpu"
            f"{f' + {args.memory:g} MB' if args.memory else ''}, window "
            f"{args.window}, reports of <= {args.report_batch}"
            f"{', replicated' if args.replicate else ''}: owner us/task submit "
            f"{statistics.median(sub):.1f} (min {min(sub):.1f}), run {statistics.median(run):.1f} "
            f"(min {min(run):.1f}, max {max(run):.1f}); {last['calls']:.0f} calls, "
            f"{last['dispatches']:.0f} dispatches, {last['per_dispatch']:.1f} tasks/dispatch"
            + (
                f"; log flush (encoded) {statistics.median(r['flush_us'] for r in rows):.2f}"
                f" us/task, {last['sent']:.0f} messages"
                if args.replicate
                else ""
            )
        )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
