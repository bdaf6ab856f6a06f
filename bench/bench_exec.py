"""The executing side alone: an Executor with its real WorkerPool runs N no-op tasks dispatched in
batches (as an owner would), reports collected in memory; no network, no owner.

    .venv/bin/python bench/bench_exec.py [--tasks 10000] [--batch 64] [--cpus 1] [--repeat 3]
        [--as-daemon] [--live | --live-pairs] [--print]

Prints tasks/s per repeat, the report messages sent (ReportColumns) and the CPU per task of this
process (the executor and its pool) and of the workers (fewer = more reports per message).
--live: the pool sends running tasks' output live (as a daemon's does: WorkerPool on_output);
--live-pairs: each repeat runs without and with it, back to back, and prints the pair's ratio and
the median ratio; --print: every task prints one line (else they print nothing). TaskOutputLive
messages sent are counted.
Run it with PYTHONPATH=<another checkout> to compare builds on the same machine at the same time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from handoffd import values
from handoffd.daemon.executor import Executor
from handoffd.protocol import messages as m
from handoffd.protocol.messages_code import TaskOutputLive
from handoffd.protocol.messages_columns import RepliedColumns, ReportColumns
from handoffd.store.store import ResultStore
from handoffd.worker.ledger import Ledger
from handoffd.worker.pool import WorkerPool

AS_DAEMON = False
DAEMON_OPTIONS: dict = {
    "devices": "",
    "memory_enforce": True,
    "memory_bound": 4000.0,
    "on_memory": lambda mb: None,
}


def noop(i: int) -> int:
    return i


def noisy(i: int) -> int:
    print(f"task {i}")
    return i


async def one(
    tasks: int, batch: int, cpus: int, run: int, live: bool = False, printing: bool = False
) -> tuple[float, int, int]:
    ledger = Ledger({"cpu": cpus})
    reports = 0
    messages = 0
    live_messages = 0
    done = asyncio.Event()
    pending: list[int] = list(range(tasks))
    run_id = f"run-{run}"
    payload = values.dumps_code((noisy if printing else noop, [1], {}))
    executor: Executor

    def send(address: str, msg: object, frames: list[bytes], term: int = 0) -> None:
        nonlocal reports, messages, live_messages
        if isinstance(msg, TaskOutputLive):
            live_messages += 1
        # The shell sends a remote owner its answers and reports as columns (issue 13); counting
        # only the per-task messages it no longer sends left every repeat waiting forever.
        if isinstance(msg, RepliedColumns):  # the owner re-places what was refused
            pending.extend(int(t[1:]) for t in msg.refused_ids)
        elif isinstance(msg, m.DispatchReplied):
            pending.extend(int(r.task_id[1:]) for r in msg.refused)
        if isinstance(msg, (ReportColumns, m.TasksReported)):
            messages += 1
            reports += len(msg.task_ids if isinstance(msg, ReportColumns) else msg.reports)
            top_up()
            if reports >= tasks:
                done.set()

    def top_up() -> None:
        # The owner keeps the node's queue full: like the local queue's limit, 64 x capacity.
        in_flight = executor.running_count()
        room = 64 * cpus + cpus - in_flight
        while pending and room > 0:
            n = min(batch, room, len(pending))
            ids, pending[:n] = pending[:n], []
            items = tuple(
                m.DispatchItem(f"t{i}", 1, {"cpu": 1.0}, "variadic", None, 0, ()) for i in ids
            )
            executor.on_dispatch(m.DispatchTasks(run_id, "owner:1", items), [payload], 1)
            room -= n

    executor = Executor(
        address="node:1",
        ledger=ledger,
        store=ResultStore(memory_limit=1 << 30),
        send=send,
        inline_result_bytes=1 << 16,
        on_resources_changed=lambda: None,
    )
    # --as-daemon: the options a daemon gives its pool (a device set, the memory watch)
    # (a daemon's pool has the default device set "", the executor's jobs' set without GPUs; a
    # pool left at None swapped its one worker for a new one at the first job)
    options = DAEMON_OPTIONS if AS_DAEMON else {"devices": ""}
    if live:
        options = {**options, "on_output": executor.on_output}
    pool = WorkerPool(cpus, executor.on_outcome, name="bench-exec", **options)
    executor.pool = pool
    await pool.start()
    try:
        pids = pool.worker_pids()
        cpu0, workers0 = time.process_time(), sum(_cpu(p) for p in pids)
        started = time.perf_counter()
        top_up()
        await done.wait()
        elapsed = time.perf_counter() - started
        cpu = (time.process_time() - cpu0) / tasks * 1e6
        # (a worker that died meanwhile is missing from the second reading: the figure is low)
        workers = (sum(_cpu(p) for p in pids) - workers0) / tasks * 1e6
    finally:
        await pool.close()
    executor.store.drop_run(run_id)
    CPU.append((cpu, workers))
    return tasks / elapsed, messages, live_messages


CPU: list[tuple[float, float]] = []  # per repeat: CPU us per task (this process, its workers)


def _cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--cpus", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--as-daemon", action="store_true", help="the pool options of a daemon (memory watch)"
    )
    parser.add_argument("--live", action="store_true", help="send running tasks' output live")
    parser.add_argument("--live-pairs", action="store_true", help="without and with --live")
    parser.add_argument("--print", action="store_true", help="every task prints one line")
    args = parser.parse_args()
    global AS_DAEMON
    AS_DAEMON = args.as_daemon
    ratios: list[float] = []
    for run in range(args.repeat):
        modes = [False, True] if args.live_pairs else [args.live]
        rates = []
        for live in modes:
            rate, messages, live_messages = asyncio.run(
                one(args.tasks, args.batch, args.cpus, run, live, args.print)
            )
            rates.append(rate)
            cpu, workers = CPU[-1]
            print(
                f"{'live' if live else 'off '} {rate:,.0f} tasks/s  ({messages} ReportColumns, "
                f"{live_messages} TaskOutputLive for {args.tasks} tasks); CPU us per task: "
                f"executor {cpu:.1f}, workers {workers:.1f}"
            )
        if args.live_pairs:
            ratios.append(rates[1] / rates[0])
            print(f"  live/off {ratios[-1]:.3f}")
    if len(CPU) > 1:
        print(
            f"median CPU us per task: executor {statistics.median(c for c, _ in CPU):.1f}, "
            f"workers {statistics.median(w for _, w in CPU):.1f} (load {os.getloadavg()[0]:.1f})"
        )
    if ratios:
        print(f"median live/off {statistics.median(ratios):.3f} over {len(ratios)} pairs")


if __name__ == "__main__":
    main()
