"""A task's way back on the executing side, in one process and deterministic: the pool's read of a
worker's KEPT replies (``WorkerPool._on_readable``), the jobs' books, the executor's ends
(``Executor.on_read``: the store, the slot, the ledger, the report's columns), the flush to our own
node's owner (``ReportedHere``) and the next feed the read triggers. The worker is this process:
the pool's side of a socketpair is a ``Worker`` of the pool, its jobs are read off the other side
and answered with the very bytes a worker writes (``_process``' framed KEPT reply), all of one
read at once, as a busy worker's replies come (``--read`` of them, the chain's ahead by default).

Only the way back runs inside ``sys.call_tracing``, so callgrind can count it alone:

    cd /tmp/X && PYTHONHASHSEED=0 valgrind --tool=callgrind --collect-atstart=no \
        --toggle-collect=sys_call_tracing --callgrind-out-file=F.%p \
        CHECKOUT/.venv/bin/python COPY/bench/back_cycle.py --tasks 2000   (then 4000)

and take the difference of the two totals over the tasks (the warm-up and the set-up cancel out).
Without callgrind it prints this process's CPU us a task of the way back and checks every
report's values.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import _exec_rig as rig

from handoffd import values
from handoffd.daemon.executor_events import ReportedHere
from handoffd.protocol import messages as m
from handoffd.worker import _books, _process, _replies
from handoffd.worker._records import Worker
from handoffd.worker.pool import WorkerPool

_FRAMED = struct.Struct("!icqd")  # (``_process._KEPT_FRAMED``: a KEPT reply as a worker writes it)
VALUE = values.dumps(None)


def _direct(fn: Any, args: tuple[Any, ...]) -> Any:
    return fn(*args)


class _Process:
    """What the pool reads of a worker's process on the way back."""

    name = "back-cycle"
    pid = 4242


def noop() -> None:
    return None


async def measure(tasks: int, batch: int, window: int, per_read: int, part: str) -> float:
    state = {"reported": 0, "values": 0}
    reports: list[ReportedHere] = []

    def here(ins: Any) -> None:
        if type(ins) is ReportedHere:
            reports.append(ins)

    loop = asyncio.get_running_loop()
    executor = rig.executor(here)
    feed = rig.Feed(executor, values.dumps_code((noop, [], {})))
    executor.loop = loop
    pool = WorkerPool(1, executor.on_outcome, name="back-cycle")
    executor.pool = pool
    # The pool as ``start`` leaves it, its one worker ours: no process, no reader on the loop
    ours, theirs = socket.socketpair()
    pool._loop = loop
    worker = Worker(_Process(), Connection(theirs.detach()), loop)  # type: ignore[arg-type]
    worker.ready = True
    worker.devices = ""  # (a slot's without GPUs: ``Slot.devices``)
    pool._workers.add(worker)
    pool._idle[""] = [worker]
    ours.setblocking(False)
    call: Any = sys.call_tracing  # (the way back alone runs inside it: callgrind's toggle)
    if part != "all":  # one part of it alone inside the toggle; the rest of the read outside
        call = _direct
        if part == "ends":  # the executor's ends of the read's outcomes (``Executor.on_read``)
            ends = pool.on_read
            pool.on_read = lambda outcomes: sys.call_tracing(ends, (outcomes,))
        else:  # "read": the pipe's read and the replies' decode and books (``_replies.read``)
            read = _replies.read
            _replies.read = lambda *args: sys.call_tracing(read, args)

    def answer() -> None:
        """Every job on the worker's pipe answered, ``per_read`` to a read, in the order sent."""
        try:
            while ours.recv(1 << 20):  # (the jobs' bytes: a worker would read them)
                pass
        except BlockingIOError:
            pass
        tokens = _books.tokens(worker)  # (a run's jobs are one entry of ``worker.sent``)
        for at in range(0, len(tokens), per_read):
            ours.sendall(
                b"".join(
                    _FRAMED.pack(_process.KEPT_SIZE + len(VALUE), b"K", token, 1e-5) + VALUE
                    for token in tokens[at : at + per_read]
                )
            )
            call(pool._on_readable, (worker,))

    async def cycle() -> None:
        state.update(reported=0)
        for _ in range(window // batch):
            feed.send(batch)
        while state["reported"] < feed.total:
            answer()
            await asyncio.sleep(0)  # (the flush the read asked for runs here, traced apart)
            while reports:
                table = reports.pop(0)
                n = len(table.values)
                state["reported"] += n
                state["values"] += sum(v == VALUE for v in table.values)
                feed.send(n)

    feed.round("r0", 500)  # warm-up
    await cycle()
    executor.on_free_run(m.FreeRun(feed.run_id), 1)
    feed.round("r1", tasks)
    state["values"] = 0
    cpu0 = time.process_time()
    await cycle()
    cpu = time.process_time() - cpu0
    assert state["values"] == tasks, state  # every task reported once, with its value
    executor.on_free_run(m.FreeRun(feed.run_id), 1)
    pool._closed = True
    ours.close()
    return cpu / tasks * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=32, help="tasks a first dispatch")
    parser.add_argument("--window", type=int, default=64, help="tasks outstanding")
    parser.add_argument("--read", type=int, default=64, help="replies a read brings, at most")
    parser.add_argument(
        "--part",
        choices=("all", "ends", "read"),
        default="all",
        help="traced: the whole read (all), the executor's ends of it (ends), the replies' read",
    )
    args = parser.parse_args()
    us = asyncio.run(measure(args.tasks, args.batch, args.window, args.read, args.part))
    print(f"tasks {args.tasks}: CPU us a task (way in and back) {us:.1f}")


if __name__ == "__main__":
    main()
