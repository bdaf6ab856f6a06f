"""Driving a real WorkerPool from a test: jobs, an outcome collector, a pool per test, and the
file-based coordination the jobs use (the jobs run in other processes: they import this module by
name, so it stays importable from the workers, which get the test process's sys.path)."""

from __future__ import annotations

import asyncio
import os
import pathlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from handoffd import values
from handoffd.worker import _books
from handoffd.worker.pool import Job, Outcome, WorkerPool


# -- functions run in the workers -----------------------------------------------------------------
def wait_for_file(path: str, limit: float = 60.0) -> None:
    """Block until ``path`` exists (bounded so a broken test cannot hang a worker forever)."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


def touch(path: str) -> None:
    """Create ``path`` holding this pid, atomically: a reader never sees it empty."""
    partial = f"{path}.{os.getpid()}.partial"
    pathlib.Path(partial).write_text(str(os.getpid()))
    os.replace(partial, path)


def blocked(started: str, gate: str) -> int:
    touch(started)
    wait_for_file(gate)
    return os.getpid()


def die_hard(marker: str) -> None:
    touch(marker)
    os.kill(os.getpid(), 9)


# -- harness --------------------------------------------------------------------------------------
def job(
    key: Any, code: Callable[..., Any], *extra: Any, inputs: list | None = None, **kw: Any
) -> Job:
    return Job(key, values.dumps_code((code, list(extra), {})), inputs or [], **kw)


class Collector:
    """Collects outcomes; ``wait(n)`` resumes once n have arrived."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.event: asyncio.Event | None = None

    def __call__(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        assert self.event is not None
        self.event.set()

    async def wait(self, n: int) -> list[Outcome]:
        if self.event is None:
            self.event = asyncio.Event()
        while len(self.outcomes) < n:
            self.event.clear()
            await self.event.wait()
        return self.outcomes

    def by_key(self) -> dict[Any, Outcome]:
        return {o.key: o for o in self.outcomes}


def run_pool(
    workers: int, body: Callable[[WorkerPool, Collector], Awaitable[Any]], **options: Any
) -> Any:
    """Run ``body`` with a started pool (``options`` go to WorkerPool); the pool is closed after."""

    async def main() -> Any:
        collector = Collector()
        collector.event = asyncio.Event()
        pool = WorkerPool(workers, collector, name="test-worker", **options)
        await pool.start()
        try:
            return await body(pool, collector)
        finally:
            await pool.close()

    return asyncio.run(main())


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def until(predicate: Any, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "condition never came true"
        await asyncio.sleep(0.005)


def on_pipe(pool: WorkerPool, key: Any) -> Any:
    """The worker whose pipe has the job, or None (white box: the pool's key -> chain map; a
    job sent is on its chain's worker's pipe, a job queued in its chain's ``jobs``; the jobs on
    a pipe as ``_books`` reads them, a feed's short jobs one ``Run`` entry)."""
    chain = pool.live().get(key)
    worker = None if chain is None else chain.worker
    if worker is None or not any(job.key == key for job in _books.jobs(worker)):
        return None
    return worker


def sent_ahead(pool: WorkerPool, key: Any) -> bool:
    """The job is on a worker's pipe behind the one running (white box: the pool's own map)."""
    worker = on_pipe(pool, key)
    return worker is not None and (worker.head is None or worker.head.key != key)
