"""The owner's scheduler calls of real W1 (or W2) rounds, recorded, then replayed in one process (issue 13).

    cd /tmp && .venv/bin/python THIS_CHECKOUT/bench/owner_replay.py record OUT.pkl [--rounds 2]
    cd /tmp && .venv/bin/python THIS_CHECKOUT/bench/owner_replay.py replay OUT.pkl [--rounds K] [--gc default]
    valgrind --tool=callgrind ... owner_replay.py replay OUT.pkl --rounds K   (K and K-1: subtract)

``record`` starts the peer benchmark's 2 daemons of 1 cpu (``bench/_peers/handoffd_runner.py``,
inside ``unshare -n``) with the owner d0 under ``_peers/owner_record.py``, runs W1 once to warm
up and ``--rounds`` more, and keeps every call d0 made into its ``OwnerScheduler`` (the events of
each ``handle_batch``, its ``now``, what it returned). ``replay`` builds a scheduler as the daemon
does and makes the same calls: the warm-up run, then ``--rounds`` of the recorded rounds (a round
is a W1 run: its calls from its submission up to the next submission), checks that every call
returns the instructions it returned in the daemon (type, node, tasks a dispatch), and prints
what the rounds' batches held: events by type, ends a success table, tasks an answer, dispatches
and their tasks. Under callgrind the replay measures the scheduler's instructions a task with the
batching the real daemons made (valgrind on the daemon itself slows it ~50x and changes that).
The replay's collector is the daemon's (``tune_gc``: its thresholds, and what was made before the
first call frozen, the recording included) unless ``--gc default``: CPython's thresholds, nothing
frozen, where every collection also scans the recording and a young one comes ~7x as often.
"""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def record(out: str, rounds: int, workload: str = "w1") -> None:
    from _peers.common import reexec_in_netns

    reexec_in_netns()
    from owner_breakdown import runner_with

    path = os.path.abspath(out)
    runner = runner_with([sys.executable, os.path.join(HERE, "_peers", "owner_record.py"), path])
    try:
        run = getattr(runner, workload)
        run()
        for _ in range(rounds):
            result = run()
            print(f"{workload.upper()} round: {result['tasks_per_s']:,.0f} tasks/s", flush=True)
        time.sleep(1.5)  # (the recorder's writer: every 0.5 s)
    finally:
        runner.close()
    with open(path, "rb") as f:
        state = pickle.load(f)
    print(f"recorded {len(state['calls'])} calls into {path}")


def load(path: str, rounds: int) -> tuple[list[Any], list[int], int, Any]:
    """(the recorded calls, where each run's submission is, where ``rounds`` measured rounds end,
    a scheduler built as the daemon built it)."""
    from handoffd.scheduler.owner import OwnerScheduler

    with open(path, "rb") as f:
        state = pickle.load(f)
    calls = state["calls"]
    _defaults(calls)
    made = state["created"][0]
    starts = _submits(calls)
    # (the bench's 2-task check run, the warm-up, then the measured rounds)
    end = starts[rounds + 2] if rounds + 2 < len(starts) else len(calls)
    return calls, starts, end, OwnerScheduler(*made["args"], **made["kwargs"])


def _defaults(calls: list[Any]) -> None:
    """A recording's events of a build before an event gained a field with a default: unpickled
    without it (a slots dataclass sets the fields it was given), so it is given its default."""
    import dataclasses

    from handoffd.scheduler import events as ev

    missing = [
        f for f in dataclasses.fields(ev.TasksSucceeded) if f.default is not dataclasses.MISSING
    ]
    for name, args, _ in calls:
        for e in _events(name, args):
            if type(e) is ev.TasksSucceeded:
                for f in missing:
                    if not hasattr(e, f.name):
                        object.__setattr__(e, f.name, f.default)


def _submits(calls: list[Any]) -> list[int]:
    from handoffd.scheduler import events as ev

    at = []
    for i, (name, args, _) in enumerate(calls):
        events = args[0] if name == "handle_batch" else (args[0],) if name == "handle" else ()
        if any(type(e) is ev.RunSubmitted for e in events):
            at.append(i)
    return at


def replay(
    path: str,
    rounds: int,
    check: bool,
    stats: bool,
    digest: bool = False,
    gc: str = "daemon",
    shell: bool = False,
    history: bool = False,
) -> None:
    import hashlib

    from _peers.owner_record import summary  # (the check the recording made)

    from handoffd.replication import log as rlog
    from handoffd.scheduler import events as ev

    calls, starts, end, scheduler = load(path, rounds)
    moves: list[Any] = []
    # (one by one: a digest compares with a build that told a block's moves each alone)
    # (a build before the log's block entries tells moves one by one: each_move is not there)
    each = getattr(rlog, "each_move", list)
    scheduler.on_changes = lambda changes: moves.extend(each(changes))
    if gc == "daemon":
        from handoffd.cli.daemon_run import tune_gc

        tune_gc()
    differ = 0
    hashed = hashlib.sha256()
    rows = hashlib.sha256()
    through = _Shell(scheduler) if shell or history else None
    for name, args, said in calls[:end]:
        if through is not None:
            name, args = through.read(name, args)
        got = getattr(scheduler, name)(*args)
        if through is not None:
            through.observed()
        if history and through is not None:
            through.hash_rows(rows)
        if check and isinstance(got, list) and summary(got) != said:
            differ += 1
        if digest:  # (every instruction in full, the moves told to replication too)
            hashed.update(repr((got, moves)).encode())
        moves.clear()
    if check:
        print(f"replayed {end} calls ({rounds} rounds after the warm-up); {differ} differ")
    if digest:
        print(f"digest of every instruction and move: {hashed.hexdigest()[:16]}")
    if history:
        print(f"digest of the reported tasks' attempt rows: {rows.hexdigest()[:16]}")
    if not stats:
        return
    measured = calls[starts[2] : end]  # (after the bench's check run and its W1 warm-up)
    tasks = sum(
        len(e.specs)
        for name, args, _ in measured
        for e in _events(name, args)
        if type(e) is ev.RunSubmitted
    )
    _print_stats(measured, tasks)


class _Shell:
    """``--shell``: each recorded success table goes through the owner's shell as its report
    message did in the daemon (``daemon.reports``: ``observe_table``, then ``table_events``),
    with the report's columns only the executing node knows made up deterministically (a pid,
    start and end on the scheduler's clock, bytes in), so a replay counts the reports' history
    (the attempt rows the shell and the scheduler build) with the scheduler's instructions.
    ``--history`` hashes the attempt rows of each call's reported tasks after the call."""

    def __init__(self, scheduler: Any) -> None:
        import inspect

        from handoffd.daemon import reports
        from handoffd.observability.latency import Buckets

        self.scheduler = scheduler
        self.reports = reports
        self.latency = Buckets()
        # (a build before the scheduler wrote the reports' history has neither parameter)
        self.later = "later" in inspect.signature(reports.observe_table).parameters
        # (a build before the scheduler counted the latencies: the shell counts them itself)
        self.delays: list[float] | None = None
        if "delays" in inspect.signature(reports.table_events).parameters:
            self.delays = []
        self.touched: list[tuple[str, Any]] = []

    def read(self, name: str, args: Any) -> tuple[str, Any]:
        from handoffd.protocol.columns import ReportTable
        from handoffd.scheduler import events as ev

        if name not in ("handle_batch", "handle"):
            return name, args
        events = _events(name, args)
        if not any(type(e) is ev.TasksSucceeded for e in events):
            return name, args
        now = args[1]
        out: list[Any] = []
        self.touched = []
        for e in events:
            if type(e) is not ev.TasksSucceeded:
                out.append(e)
                continue
            rows = [
                (t, a, 1, size, took, 4000 + k, now - 0.002, now - 0.001, 64 * k)
                for k, (t, a, size, took) in enumerate(
                    zip(e.task_ids, e.attempts, e.sizes, e.durations, strict=True)
                )
            ]
            table = ReportTable.of_rows(rows, [-1] * len(rows), ())
            run = self.scheduler.run_state(e.run_id)
            later = False
            if run is not None:
                if self.later:
                    later = self.reports.observe_table(run, e.node, table, self.latency, True)
                else:
                    self.reports.observe_table(run, e.node, table, self.latency)
            if self.delays is not None:
                events_of = self.reports.table_events
                events_of(e.run_id, e.node, table, e.values, out, later, self.delays)
            elif self.later:
                self.reports.table_events(e.run_id, e.node, table, e.values, out, later)
            else:
                self.reports.table_events(e.run_id, e.node, table, e.values, out)
            self.touched.append((e.run_id, e.task_ids))
        return "handle_batch", (out, *args[1:])

    def observed(self) -> None:
        """The latencies the scheduler counted in the call, in the shell's histogram (as the
        daemon's shell after each batch)."""
        if self.delays:
            self.latency.observe_all(self.delays)
            self.delays.clear()

    def hash_rows(self, hashed: Any) -> None:
        for run_id, ids in self.touched:
            run = self.scheduler.run_state(run_id)
            if run is not None:
                for t in ids:
                    rec = run.tasks.get(t)
                    hashed.update(repr(None if rec is None else rec.attempts).encode())
        self.touched = []


def _events(name: str, args: Any) -> tuple[Any, ...]:
    return args[0] if name == "handle_batch" else (args[0],) if name == "handle" else ()


def _print_stats(calls: list[Any], tasks: int) -> None:
    from handoffd.scheduler import events as ev

    kinds: collections.Counter[str] = collections.Counter()
    per_batch: collections.Counter[tuple[str, ...]] = collections.Counter()
    ends: list[int] = []
    accepted: list[int] = []
    dispatched: collections.defaultdict[str, list[int]] = collections.defaultdict(list)
    batches = 0
    for name, args, said in calls:
        events = _events(name, args)
        batches += name in ("handle_batch", "handle")
        shape = collections.Counter(type(e).__name__ for e in events)
        per_batch[tuple(sorted(shape))] += 1
        for e in events:
            kinds[type(e).__name__] += 1
            if type(e) is ev.TasksSucceeded:
                ends.append(len(e.task_ids))
            elif type(e) is ev.DispatchAnswered:
                accepted.append(len(e.accepted))
        for kind, node, n in said or ():
            if kind == "Dispatch":
                dispatched[node].append(n)
    print(f"{tasks} tasks, {batches} scheduler batches ({batches / tasks:.4f} a task)")
    print("events a task by type:")
    for k, v in kinds.most_common():
        print(f"  {v / tasks:8.4f}  {k}")
    if ends:
        print(f"success tables: {len(ends)}, ends a table mean {sum(ends) / len(ends):.1f}")
    if accepted:
        print(f"answers: {len(accepted)}, tasks an answer mean {sum(accepted) / len(accepted):.1f}")
    for node, sizes in sorted(dispatched.items()):
        print(f"dispatches to {node}: {len(sizes)}, tasks a dispatch {sum(sizes) / len(sizes):.1f}")
    print("batches by the event types they held (top 8):")
    for shape, v in per_batch.most_common(8):
        print(f"  {v:6d}  {' + '.join(shape) or '(none)'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=("record", "replay"))
    parser.add_argument("path")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workload", choices=("w1", "w2"), default="w1", help="record which")
    parser.add_argument("--no-check", action="store_true")
    parser.add_argument("--stats", action="store_true")
    parser.add_argument("--digest", action="store_true", help="hash every instruction (A/B)")
    parser.add_argument(
        "--gc", choices=("daemon", "default"), default="daemon", help="the collector's settings"
    )
    parser.add_argument(
        "--shell", action="store_true", help="the success tables through the shell's reports"
    )
    parser.add_argument(
        "--history", action="store_true", help="(with --shell) hash the reported attempt rows"
    )
    args = parser.parse_args()
    if args.mode == "record":
        record(args.path, args.rounds, args.workload)
    else:
        replay(
            args.path,
            args.rounds,
            not args.no_check,
            args.stats,
            args.digest,
            args.gc,
            args.shell,
            args.history,
        )


if __name__ == "__main__":
    main()
