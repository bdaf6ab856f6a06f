"""W3's executing half in one process (issue 13): an Executor over its real WorkerPool (a daemon's
pool options: a device set, the memory watch), its owner on the same node (the executor answers
with records through ``here``, read by ``on_read`` as the daemon's), one one-task run at a time:
dispatch, wait for its report, free the run. Prints this process's CPU per run (its worker's
apart) and, with --calls, Python calls per run (cProfile; --dump FILE keeps the profile).
``--table``: the dispatch as the daemon's owner hands it to its own executor (``dispatch_here``'s
``HereTable``, built per run from the scheduler's ``Dispatch``), not a ``DispatchTasks``.
No owner, transport, codec or client: the figure to compare builds with on a loaded machine.

    cd /tmp/X && CHECKOUT/.venv/bin/python COPY/bench/exec_one.py [RUNS] [--calls] [--dump FILE]
        [--table]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from typing import Any

import _exec_rig as rig

from handoffd import values
from handoffd.daemon import dispatch
from handoffd.daemon.executor_events import ReportedHere
from handoffd.protocol import messages as m
from handoffd.scheduler import events as ev
from handoffd.worker.pool import WorkerPool

WARM = 300


def noop(i: int) -> int:
    return i


async def measure(runs: int, calls: bool, dump: str | None, table: bool = False) -> None:
    done = asyncio.Event()
    payload = values.dumps_code((noop, [1], {}))

    def here(ins: Any) -> None:
        if type(ins) is ReportedHere:
            done.set()

    executor = rig.executor(here)
    pool = WorkerPool(
        1,
        executor.on_outcome,
        name="exec-one",
        devices="",
        memory_enforce=True,
        memory_bound=4000.0,
        on_memory=lambda mb: None,
    )
    pool.on_read = executor.on_read
    executor.pool = pool
    await pool.start()
    item = (m.DispatchItem("t0", 1, {"cpu": 1.0}, "variadic", None, 0, ()),)
    task = (ev.DispatchedTask("t0", 1, payload, {"cpu": 1.0}, "variadic", None, ()),)

    async def cycle(i: int) -> None:
        done.clear()
        run_id = f"r{i}"
        if table:
            ins = ev.Dispatch("node", run_id, 1, task)
            msg, frames = dispatch.dispatch_here(ins, "node:1", lambda name: "node:1")
            executor.on_dispatch(msg, frames, 1)
        else:
            executor.on_dispatch(m.DispatchTasks(run_id, "node:1", item), [payload], 1)
        await done.wait()
        executor.on_free_run(m.FreeRun(run_id), 1)

    profile = cProfile.Profile() if calls else None
    try:
        for i in range(WARM):
            await cycle(i)
        cpu0 = time.process_time()
        if profile is not None:
            profile.enable()
        for i in range(WARM, WARM + runs):
            await cycle(i)
        if profile is not None:
            profile.disable()
        cpu = (time.process_time() - cpu0) / runs * 1e6
    finally:
        await pool.close()
    print(f"CPU us per run {cpu:.1f}" + (" (profiled)" if profile is not None else ""))
    if profile is not None:
        stats = pstats.Stats(profile)
        total = sum(v[1] for v in stats.stats.values())  # type: ignore[attr-defined]
        print(f"Python calls per run {total / runs:.1f}")
        if dump:
            stats.dump_stats(dump)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="?", type=int, default=2000)
    parser.add_argument("--calls", action="store_true", help="count Python calls (cProfile)")
    parser.add_argument("--dump", help="with --calls: write the profile to this file")
    parser.add_argument("--table", action="store_true", help="the daemon's HereTable dispatch")
    args = parser.parse_args()
    asyncio.run(measure(args.runs, args.calls, args.dump, args.table))


if __name__ == "__main__":
    main()
