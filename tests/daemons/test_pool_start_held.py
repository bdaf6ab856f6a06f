"""A job that holds its worker for good (a pipeline's stage replica) submitted while the pool's
other workers are still starting must not keep the jobs queued behind it from their workers: the
start completes once every worker said ready, busy or idle."""

from __future__ import annotations

import asyncio
import os

import pytest
from pool_harness import Collector, blocked, job, touch

from handoffd.testing import wait_for
from handoffd.worker.pool import WorkerPool

pytestmark = pytest.mark.timeout(90)


class SecondReadyHeld(WorkerPool):
    """Delivers the second worker's "ready" only when told, to order the start deterministically."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.held = []
        self.release = False

    def _on_ready(self, worker):
        if self.release or not any(w.ready for w in self._workers):
            super()._on_ready(worker)
        else:
            self.held.append(worker)


def test_a_job_queued_while_workers_start_runs_beside_a_held_worker(tmp_path):
    gate, started = str(tmp_path / "gate"), str(tmp_path / "started")

    async def main() -> None:
        got = Collector()
        got.event = asyncio.Event()
        pool = SecondReadyHeld(2, got, name="test-held")
        start = asyncio.ensure_future(pool.start())
        try:
            await asyncio.to_thread(
                wait_for, lambda: any(w.ready for w in pool._workers), 60, 0.01, "one worker ready"
            )
            pool.submit(job("long", blocked, started, gate))  # takes the one ready worker
            await asyncio.to_thread(
                wait_for, lambda: os.path.exists(started), 60, 0.01, "long runs"
            )
            pool.submit(job("short", lambda: "done"))  # queued: the other worker is starting
            await asyncio.to_thread(wait_for, lambda: pool.held, 60, 0.01, "second worker ready")
            pool.release = True
            for worker in pool.held:
                pool._on_ready(worker)
            outcomes = await asyncio.wait_for(got.wait(1), 30)  # before "long" is released
            assert [o.key for o in outcomes] == ["short"] and outcomes[0].ok
            await asyncio.wait_for(start, 10)
        finally:
            touch(gate)
            await pool.close()

    asyncio.run(main())
