"""The owner's shell and scheduler per one-task run (W3), in this process: no sockets, no workers.

Drives ``daemon.owner.OwnerIO`` over its real ``OwnerScheduler`` the way the daemon does for a
one-task ``execute()`` whose task runs on the owner's own node (W3): the client's
``SubmitAndWait`` (with release), our executor's ``DispatchReplied`` and ``TasksReported`` (as
delivered in-process, never encoded), each followed by the drain's ``flush``; with ``--records``
as this build's daemon does it: the dispatch handed to our executor (``OwnerIO.here``), its
answer and report as records (``AnsweredHere``/``ReportedHere`` through ``from_here``), held to
the drain's end (``batch_reports``). The port records
nothing and fires no timers (a short run is answered before its replication delay). Prints the
median microseconds of each step over ``--runs`` runs (the median: a loaded machine's preemptions
land in the mean), so builds compare with little noise; ``--profile`` prints a cProfile of the
steps instead (the compiled scheduler shows as its Python callers' own time). What this leaves
out: decoding and encoding, the local socket, the executor, the worker pool and membership::

    .venv/bin/python bench/owner_w3.py [--runs 4000] [--records]
    cd OTHER_CHECKOUT && .venv/bin/python THIS_CHECKOUT/bench/owner_w3.py   # another build
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from handoffd.daemon.executor_events import AnsweredHere
from handoffd.daemon.executor_records import Task, reported_here
from handoffd.daemon.executor_records import done_report as _done_report
from handoffd.daemon.owner import OwnerIO
from handoffd.protocol import messages as m
from handoffd.scheduler.owner import OwnerScheduler

CPU = "cpu"
Dispatched = m.DispatchTasks


class _Timer:
    def cancel(self) -> None:
        pass


@dataclass
class _Ledger:
    capacity: dict[str, float] = field(default_factory=lambda: {CPU: 2.0})
    free: dict[str, float] = field(default_factory=lambda: {CPU: 2.0})
    version: int = 1


def _task(run_id: str, attempt: int) -> Task:
    return Task(run_id, "f", attempt, "a:1", {}, [], "variadic", None, b"", (), {})


class Port:
    """The owner's port: sends to ourselves are kept for the step that reads them."""

    name, address = "a", "a:1"

    def __init__(self) -> None:
        self.clock = 100.0
        self.replied_at = 0.0
        self.sent: list[Any] = []
        self.replies: list[Any] = []

    def now(self) -> float:
        return self.clock

    def send(self, address: str, msg: Any, frames: Any = None, term: int = 0) -> bool:
        self.sent.append(msg)
        return True

    def reply(self, conn: bytes, msg: Any, frames: Any = None) -> None:
        if not self.replies:
            self.replied_at = time.perf_counter()  # the client's wait ends here
        self.replies.append(msg)

    def address_of(self, name: str) -> str | None:
        return self.address if name == self.name else None

    def call_later(self, delay: float, callback: Any, *args: Any) -> _Timer:
        return _Timer()

    def call_soon(self, callback: Any, *args: Any) -> _Timer:
        return _Timer()

    def member(self, name: str) -> m.MemberState | None:
        return None

    def members(self) -> list[m.MemberState]:
        return []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=4000)
    p.add_argument("--warm", type=int, default=300)
    p.add_argument("--profile", action="store_true")
    p.add_argument(
        "--records",
        action="store_true",
        help="as the daemon does: the dispatch handed to our executor (OwnerIO.here), its answer\n"
        "and report fed as records (from_here), each drain's events held to its end",
    )
    args = p.parse_args(argv)
    port = Port()
    owner = OwnerIO(
        port,  # type: ignore[arg-type]
        OwnerScheduler(port.name, now=port.now()),
        resources=_Ledger(),
        local_value=lambda run_id, task_id: None,
        keep_results_s=30.0,
        keep_status_s=5.0,
    )
    handed: list[m.DispatchTasks] = []
    if args.records:
        owner.batch_reports = True
        owner.here = lambda msg, frames, term: handed.append(msg)
    meta = m.TaskMeta("f", (), {CPU: 1.0}, "variadic", None, None, False, None, None, 0)
    version = 1

    def one(i: int) -> tuple[float, float, float, float]:
        nonlocal version
        run_id = f"r{i}"
        t0 = time.perf_counter()
        msg = m.SubmitAndWait(7, run_id, (meta,), 0, "binpack", None, 30.0, 1 << 20, True)
        owner.handle(msg, [b"code-of-f"], b"client", None)
        t1 = time.perf_counter()
        (dispatch,) = handed if args.records else [s for s in port.sent if type(s) is Dispatched]
        handed.clear()
        # our executor gets a HereTable (attempts as a column), a sent dispatch its items
        attempt = (
            dispatch.attempts[0] if hasattr(dispatch, "attempts") else dispatch.items[0].attempt
        )
        version += 1
        if args.records:
            owner.from_here(AnsweredHere(run_id, 0, (("f", attempt),), (), {CPU: 1.0}, version))
        else:
            answer = m.DispatchReplied(
                run_id, (m.TaskAttempt("f", attempt),), (), {CPU: 1.0}, version
            )
            owner.handle(answer, [], b"", None)
        owner.flush()
        version += 1
        if args.records:
            # (built as our executor builds it: a row or a report, whichever this build keeps)
            done = _done_report(_task(run_id, attempt), 2, (0, 0.0, 0.0), -1.0)
            ledger = _Ledger(free={CPU: 2.0}, version=version)
            record = reported_here(run_id, 0, [(done, b"42", "")], ledger)
        t2 = time.perf_counter()
        if args.records:
            owner.from_here(record)
        else:
            done = m.TaskReport("f", attempt, "DONE", 2, 0, "", "", "", "")
            owner.handle(m.TasksReported(run_id, (done,), {CPU: 2.0}, version), [b"42"], b"", None)
        owner.flush()
        t3 = time.perf_counter()
        if not (port.replies and isinstance(port.replies[-1], m.RunOutcome)):
            raise RuntimeError(f"run {run_id} was not answered with its outcome: {port.replies}")
        replied = port.replied_at - t2
        port.replies.clear()
        port.sent.clear()
        owner.forget(run_id)  # (the retention time would; status kept no longer)
        return t1 - t0, t2 - t1, t3 - t2, replied

    for i in range(args.warm):
        one(i)
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for i in range(args.warm, args.warm + args.runs):
            one(i)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return 0
    rows = [one(i) for i in range(args.warm, args.warm + args.runs)]
    steps = [statistics.median(r[k] for r in rows) * 1e6 for k in range(4)]
    print(
        f"owner shell + scheduler per one-task run, median us over {args.runs}: submit "
        f"{steps[0]:.1f}, dispatch answered {steps[1]:.1f}, report to outcome {steps[2]:.1f} "
        f"(of which to the reply {steps[3]:.1f}); total {sum(steps[:3]):.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
