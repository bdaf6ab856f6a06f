"""Dask: ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1")``;
the second worker gets the abstract resource GPU=1."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

import cloudpickle

from . import common
from .futures import FuturesRunner


def by_value(fn: Any) -> Any:
    """``fn`` as Dask shipped it when it lived in the script's ``__main__``: by value.

    Dask pickles a graph with plain pickle and turns to cloudpickle only when those bytes name
    ``__main__`` or when the graph object's own module is registered by value, never a function's
    in it, so a function of ``_peers`` would travel by reference (the workers import it through
    the ``sys.path`` that spawn hands down). This copy is not its module's attribute: plain pickle
    refuses it, Dask cloudpickles the graph, and cloudpickle ships the copy by value."""
    common.ship_by_value(cloudpickle)
    return cloudpickle.loads(cloudpickle.dumps(fn))


def gpu_task_dask(i):
    from distributed import get_worker

    return (i, get_worker().address)


class DaskRunner(FuturesRunner):
    name = "dask"
    w7_unsupported = "the scheduler is a single point of failure (all work lost)"

    def start(self) -> float:
        from distributed import Client, LocalCluster

        self.f_noop, self.f_seed, self.f_add3, self.f_step, self.f_make, self.f_consume = (
            by_value(f)
            for f in (
                common.noop,
                common.seed_value,
                common.add3,
                common.step,
                common.make_array,
                common.consume_array,
            )
        )
        self.f_gpu = by_value(gpu_task_dask)
        where_am_i = by_value(common.where_am_i)
        t0 = time.perf_counter()
        self.cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        self.client = Client(self.cluster)
        self.workers = sorted(self.client.scheduler_info()["workers"])
        assert len(self.workers) == 2
        futures = [
            self.client.submit(where_am_i, i, workers=[w], pure=False)
            for i, w in enumerate(self.workers)
        ]
        pids = self.client.gather(futures)
        assert len(set(pids)) == 2
        elapsed = time.perf_counter() - t0

        async def set_gpu(dask_worker):
            await dask_worker.set_resources(GPU=1)

        self.client.run(set_gpu, workers=[self.workers[1]])
        return elapsed

    def submit(self, fn: Any, *args: Any) -> Any:
        return self.client.submit(fn, *args, pure=False)

    def submit_on(self, node: int, fn: Any, *args: Any) -> Any:
        worker = self.workers[node]
        return self.client.submit(
            fn, *args, workers=[worker], allow_other_workers=False, pure=False
        )

    def submit_gpu(self, i: int) -> Any:
        return self.client.submit(self.f_gpu, i, resources={"GPU": 1}, pure=False)

    def gpu_node(self) -> Any:
        return self.workers[1]

    def map(self, fn: Any, items: range) -> list[Any]:
        return self.client.map(fn, items, pure=False)

    def call(self, fn: Any, *args: Any) -> Any:
        return self.client.submit(fn, *args, pure=False).result()

    def gather(self, futures: list[Any]) -> list[Any]:
        return self.client.gather(futures)

    def done_count(self, futures: list[Any]) -> int:
        return sum(f.done() for f in futures)

    def kill_worker_node(self) -> None:
        # A worker "node" is its worker process (the nanny lives in this process and restarts it).
        victim = self.client.run(os.getpid, workers=[self.workers[1]])[self.workers[1]]
        os.kill(victim, signal.SIGKILL)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        with contextlib.suppress(Exception):
            self.cluster.close()
