"""The owner node's own executor and worker pool in W1's shape, deterministic: ``own_cycle.py``
with the worker process replaced by an in-process stand-in on a socketpair, which reads (and
drops) what the pool writes and answers every job on the pipe with a KEPT reply, as a worker
does. Every job's way in (the dispatch's intake, the refill's chain, the pool's feed and its
bytes) and way back (the replies read, the ends, the reports) runs as in the daemon; the run's
timing no longer depends on how fast a real worker drains its pipe, so two run lengths under
callgrind subtract to the same figure each time (``own_cycle``'s moved ~1.8k a task between
pairs):

    cd /tmp/X && PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=F.%p \
        CHECKOUT/.venv/bin/python COPY/bench/own_feed.py --tasks 2000   (then 4000)

The stand-in's own work (a recv, a pack a reply) is counted too, the same in both builds.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from multiprocessing.connection import Connection

import _exec_rig as rig

from handoffd import values
from handoffd.worker import _books, _process
from handoffd.worker._records import Worker
from handoffd.worker.pool import WorkerPool


def noop() -> None:
    return None


def noop_of(i: int) -> int:
    return i


class _Process:
    """What the pool reads of a worker's process while it lives."""

    name = "own-feed-1"
    pid = 1


def _fake_worker(
    pool: WorkerPool, loop: asyncio.AbstractEventLoop, devices: str | None
) -> socket.socket:
    """A worker of ``devices`` on a socketpair, registered with the pool as started and idle;
    returns the stand-in's end."""
    ours, theirs = socket.socketpair()
    worker = Worker(_Process(), Connection(ours.detach()), loop)  # type: ignore[arg-type]
    worker.devices = devices
    pool._loop = loop
    pool._workers.add(worker)
    loop.add_reader(worker.fd, pool._on_readable, worker)
    pool._on_ready(worker)
    theirs.setblocking(False)
    value = values.dumps(None)
    answered = [0]  # the last token answered
    frame = _process._KEPT_FRAMED.pack

    def readable() -> None:
        while True:  # drop what the pool wrote: the jobs are read off ``worker.sent``
            try:
                if not theirs.recv(1 << 16):
                    return
            except BlockingIOError:
                break
        on_pipe = _books.tokens(worker)  # (a run's jobs are one entry of ``worker.sent``)
        replies = [
            frame(_process.KEPT_SIZE + len(value), _process.KEPT, token, 0.0) + value
            for token in on_pipe
            if token > answered[0]
        ]
        if replies:
            answered[0] = max(on_pipe)
            theirs.sendall(b"".join(replies))

    loop.add_reader(theirs.fileno(), readable)
    return theirs


async def measure(tasks: int, batch: int, window: int, calls: bool) -> None:
    if calls:  # W1's payloads: ``noop_of(i)``, one code part and an int each
        steady = rig.Window(b"", values.dumps_code(noop_of))
    else:
        steady = rig.Window(values.dumps_code((noop, [], {})))
    executor = steady.executor
    loop = executor.loop = asyncio.get_running_loop()
    pool = WorkerPool(1, executor.on_outcome, name="own-feed", on_output=executor.on_output)
    pool.on_read = executor.on_read
    executor.pool = pool
    # (of the device set the executor's slots name: the pool would swap it out for another)
    theirs = _fake_worker(pool, loop, executor.ledger.visible([]))
    cpu = 0.0
    try:
        for round_id, count in (("r0", 500), ("r1", tasks)):  # a warm-up, then the measured
            cpu = await steady.round(round_id, count, window, batch)
    finally:
        loop.remove_reader(theirs.fileno())
        theirs.close()
        await pool.close()
    print(f"tasks {tasks}: CPU us a task {cpu / tasks * 1e6:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=32, help="tasks a first dispatch")
    parser.add_argument("--window", type=int, default=64, help="tasks outstanding")
    parser.add_argument(
        "--calls",
        action="store_true",
        help="each task's payload W1's form, noop_of(i) (one code part and an int each), not "
        "one payload for all",
    )
    args = parser.parse_args()
    asyncio.run(measure(args.tasks, args.batch, args.window, args.calls))


if __name__ == "__main__":
    main()
