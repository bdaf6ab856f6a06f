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
import time
from typing import Any

from handoffd import values
from handoffd.daemon import dispatch
from handoffd.daemon.executor import Executor
from handoffd.daemon.executor_events import ReportedHere
from handoffd.protocol import messages as m
from handoffd.scheduler import events as ev
from handoffd.store.store import ResultStore
from handoffd.worker.ledger import Ledger
from handoffd.worker.pool import WorkerPool


def noop() -> None:
    return None


async def measure(tasks: int, batch: int, window: int) -> None:
    payload = values.dumps_code((noop, [], {}))
    cost = {"cpu": 1.0}
    done = asyncio.Event()
    state = {"sent": 0, "reported": 0, "run": 0}
    run_id = "r0"
    executor: Executor

    def send_tasks(n: int) -> None:
        first = state["sent"]
        n = min(n, total - first)
        if n <= 0:
            return
        state["sent"] = first + n
        items = tuple(
            ev.DispatchedTask(f"t{i}", 1, payload, cost, "variadic", None, ())
            for i in range(first, first + n)
        )
        ins = ev.Dispatch("node", run_id, 1, items)
        msg, frames = dispatch.dispatch_here(ins, "node:1", lambda name: "node:1")
        executor.on_dispatch(msg, frames, 1)

    def here(ins: Any) -> None:
        if type(ins) is ReportedHere:
            n = len(ins.values)
            state["reported"] += n
            if state["reported"] >= total:
                done.set()
            else:
                send_tasks(n)

    executor = Executor(
        address="node:1",
        ledger=Ledger({"cpu": 1.0}),
        store=ResultStore(memory_limit=1 << 30),
        send=lambda *a, **k: None,
        inline_result_bytes=1 << 16,
        on_resources_changed=lambda: None,
    )
    executor.here = here
    executor.loop = asyncio.get_running_loop()
    pool = WorkerPool(1, executor.on_outcome, name="own-cycle", on_output=executor.on_output)
    pool.on_read = executor.on_read
    executor.pool = pool
    await pool.start()
    try:
        total = 500  # warm-up
        for _ in range(window // batch):
            send_tasks(batch)
        await done.wait()
        executor.on_free_run(m.FreeRun(run_id), 1)
        run_id, total = "r1", tasks
        state.update(sent=0, reported=0)
        done.clear()
        cpu0 = time.process_time()
        for _ in range(window // batch):
            send_tasks(batch)
        await done.wait()
        cpu = time.process_time() - cpu0
        executor.on_free_run(m.FreeRun(run_id), 1)
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
