"""Large values through a WorkerPool alone: a producer job returns a 1 MiB numpy array, a consumer
job takes it as its input and returns a small int, pair after pair (what one node's pool does in the
peers bench's W4, without the network). No daemon, no owner.

    .venv/bin/python bench/bench_payloads.py [--pairs 200] [--size 1048576] [--workers 1] [--repeat 5]

Prints MiB/s per repeat (bytes produced and consumed per second, counted once). Run it with
PYTHONPATH=<another checkout> from a neutral directory to compare builds at the same time.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

from handoffd import values
from handoffd.worker.pool import Job, Outcome, WorkerPool


def produce(i: int, size: int) -> np.ndarray:
    return np.full(size // 8, i, dtype=np.int64)


def consume(array: np.ndarray) -> int:
    return int(array[0])


async def one(pool_workers: int, pairs: int, size: int) -> float:
    done = asyncio.Event()
    left = pairs
    pool: WorkerPool
    consume_payload = values.dumps_code((consume, [], {}))

    def on_done(outcome: Outcome) -> None:
        nonlocal left
        assert outcome.ok, outcome
        kind, i = outcome.key  # type: ignore[misc]
        if kind == "p":
            assert outcome.value is not None
            pool.submit(Job(("c", i), consume_payload, [("value", outcome.value)]))
            return
        assert values.loads(outcome.value) == i  # type: ignore[arg-type]
        left -= 1
        if not left:
            done.set()

    pool = WorkerPool(pool_workers, on_done)
    await pool.start()
    try:
        started = time.perf_counter()
        for i in range(pairs):
            pool.submit(Job(("p", i), values.dumps_code((produce, [i, size], {})), []))
        await done.wait()
        return time.perf_counter() - started
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for _ in range(args.repeat):
        seconds = asyncio.run(one(args.workers, args.pairs, args.size))
        print(f"{args.pairs * args.size / seconds / (1 << 20):8.0f} MiB/s  ({seconds:.3f} s)")


if __name__ == "__main__":
    main()
