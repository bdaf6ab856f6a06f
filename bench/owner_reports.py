"""The owner's CPU for our own executor's reports of a many-task run (W1's half on the owner's
node), in this process: ``OwnerIO`` over its real scheduler, the run's dispatches handed to a
stand-in executor (``OwnerIO.here``) that accepts every task (``AnsweredHere``) and reports them
in batches of ``--batch`` as this build's executor builds them (``executor_records.done_report``,
``reported_here``), each batch fed through ``from_here`` and the drain's ``flush``. Prints the
process CPU per task of the report phase (the batches' build and the owner's handling); for an
instruction count, run it under ``valgrind --tool=cachegrind`` at two ``--tasks`` and take the
difference::

    cd /tmp/x && CHECKOUT/.venv/bin/python COPY/bench/owner_reports.py [--tasks 4000] [--batch 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from owner_w3 import CPU, Port, _Ledger  # noqa: E402

from handoffd.daemon.executor_events import AnsweredHere  # noqa: E402
from handoffd.daemon.executor_records import Task, done_report, reported_here  # noqa: E402
from handoffd.daemon.owner import OwnerIO  # noqa: E402
from handoffd.protocol import messages as m  # noqa: E402
from handoffd.scheduler.owner import OwnerScheduler  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", type=int, default=1000, help="per run (at most 1024: one window)")
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--batch", type=int, default=100)
    args = p.parse_args()
    port = Port()
    owner = OwnerIO(
        port,  # type: ignore[arg-type]
        OwnerScheduler(port.name, now=port.now()),
        resources=_Ledger(capacity={CPU: 1e6}, free={CPU: 1e6}),
        local_value=lambda run_id, task_id: None,
        keep_results_s=30.0,
        keep_status_s=5.0,
    )
    owner.batch_reports = True
    handed: list = []
    owner.here = lambda msg, frames, term: handed.append(msg)
    version, took, done = 2, 0.0, 0
    for r in range(args.runs):
        run_id = f"r{r}"
        metas = tuple(
            m.TaskMeta(f"t{i}", (), {CPU: 1.0}, "variadic", None, None, False, None, None, 0)
            for i in range(args.tasks)
        )
        msg = m.SubmitAndWait(7, run_id, metas, 0, "binpack", None, 30.0, 1 << 20, True)
        owner.handle(msg, [b"code"] * args.tasks, b"client", None)
        owner.flush()
        while handed:  # (the scheduler's window: the next tasks go out as reports come in)
            attempts: list[tuple[str, int]] = []
            for d in handed:  # (a HereTable: ids and attempts as columns; or DispatchTasks' items)
                if hasattr(d, "attempts"):
                    attempts += zip(d.task_ids, d.attempts, strict=True)
                else:
                    attempts += [(i.task_id, i.attempt) for i in d.items]
            handed.clear()
            version += 1
            owner.from_here(AnsweredHere(run_id, 0, tuple(attempts), (), {CPU: 1e6}, version))
            owner.flush()
            started = time.process_time()
            for b in range(0, len(attempts), args.batch):
                entries = []
                for task_id, attempt in attempts[b : b + args.batch]:
                    task = Task(
                        run_id, task_id, attempt, "a:1", {}, [], "variadic", None, b"", (), {}
                    )
                    entries.append(
                        (done_report(task, 5, (1, 0.0, 0.0), 1e-5), b"\x80\x05K\x01.", "")
                    )
                version += 1
                ledger = _Ledger(free={CPU: 1e6}, version=version)
                owner.from_here(reported_here(run_id, 0, entries, ledger))
                owner.flush()
            took += time.process_time() - started
            done += len(attempts)
        if not (port.replies and isinstance(port.replies[-1], m.RunOutcome)):
            raise RuntimeError(f"run {run_id} was not answered with its outcome")
        port.replies.clear()
        owner.forget(run_id)
    if done != args.tasks * args.runs:
        raise RuntimeError(f"{done} of {args.tasks} x {args.runs} tasks reported")
    print(f"{done} tasks, batches of {args.batch}: {took / done * 1e6:.2f} us/task")
    return 0


if __name__ == "__main__":
    sys.exit(main())
