"""The owner node's own executor in W1's shape, in one process with real worker processes: the
scheduler's ``Dispatch`` of no-op tasks handed over as the daemon hands it (``dispatch_here``'s
table to ``Executor.on_dispatch``), admitted against a 1-cpu ledger, run by a ``WorkerPool`` of one
worker, the replies read (``on_read``) and the reports handed back as records (``ReportedHere``),
each report batch answered by a new dispatch of as many tasks (a steady window, as the owner keeps
it). No owner scheduler, transport or codec: the executing side's own work a task.

Prints this process's CPU us a task; for instruction counts run it twice under callgrind (only this
process is traced: the worker is a spawned interpreter) and take the difference:

    cd /tmp/X && valgrind --tool=callgrind --callgrind-out-file=F.%p \
        CHECKOUT/.venv/bin/python COPY/bench/own_cycle.py --tasks 2000   (then 4000)
"""

from __future__ import annotations

import argparse
import asyncio

import _exec_rig as rig

from handoffd import values
from handoffd.worker.pool import WorkerPool


def noop() -> None:
    return None


async def measure(tasks: int, batch: int, window: int) -> None:
    steady = rig.Window(values.dumps_code((noop, [], {})))
    executor = steady.executor
    executor.loop = asyncio.get_running_loop()
    pool = WorkerPool(1, executor.on_outcome, name="own-cycle", on_output=executor.on_output)
    pool.on_read = executor.on_read
    executor.pool = pool
    await pool.start()
    try:
        await steady.round("r0", 500, window, batch)  # warm-up
        cpu = await steady.round("r1", tasks, window, batch)
    finally:
        await pool.close()
    print(f"tasks {tasks}: CPU us a task {cpu / tasks * 1e6:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=32, help="tasks a first dispatch")
    parser.add_argument("--window", type=int, default=64, help="tasks outstanding")
    args = parser.parse_args()
    asyncio.run(measure(args.tasks, args.batch, args.window))


if __name__ == "__main__":
    main()
