"""What the Dask and Ray runners share: both submit one task at a time as a future (a Dask future,
a Ray object ref) that later tasks take as an argument, and gather a list of them. W1-W6 are
written once here over a few primitives each runner implements; only what differs stays there
(how a task is submitted, pinned to a node or to the GPU node, how a worker node is killed).
"""

from __future__ import annotations

import time
from typing import Any

from .common import (
    MiB,
    Sizes,
    check_layers,
    crash_result,
    latency_result,
    layered,
    payload_result,
    throughput,
    tid,
)


class FuturesRunner:
    """Subclasses set the task functions as they submit them (``f_noop``, ``f_seed``, ``f_add3``,
    ``f_step``, ``f_make``, ``f_consume``) in ``start()`` and implement the primitives below."""

    name = ""
    crash_poll = 0.002  # seconds between progress checks before the W6 kill
    w2_times_building = False  # does W2's time include building the DAG and its expected values
    w7_unsupported = ""  # why W7 (owner crash) cannot run
    f_noop: Any
    f_seed: Any
    f_add3: Any
    f_step: Any
    f_make: Any
    f_consume: Any

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes

    # -- primitives -----------------------------------------------------------------------

    def submit(self, fn: Any, *args: Any) -> Any:
        """One task; futures among ``args`` are its inputs."""
        raise NotImplementedError

    def submit_on(self, node: int, fn: Any, *args: Any) -> Any:
        """One task that must run on node ``node`` (0 or 1)."""
        raise NotImplementedError

    def submit_gpu(self, i: int) -> Any:
        """W5's task ``i``, needing the one GPU; returns ``(i, where it ran)``."""
        raise NotImplementedError

    def gpu_node(self) -> Any:
        """Where W5's tasks must all run, as ``submit_gpu``'s tasks report it."""
        raise NotImplementedError

    def map(self, fn: Any, items: range) -> list[Any]:
        raise NotImplementedError

    def call(self, fn: Any, *args: Any) -> Any:
        """Run one task and wait for its value."""
        raise NotImplementedError

    def gather(self, futures: list[Any]) -> list[Any]:
        raise NotImplementedError

    def done_count(self, futures: list[Any]) -> int:
        raise NotImplementedError

    def kill_worker_node(self) -> None:
        """SIGKILL the node that is not the driver's (node 1)."""
        raise NotImplementedError

    # -- workloads ------------------------------------------------------------------------

    def submit_layered(
        self, first: list[int], parents: list[list[tuple]], fn0: Any, fn: Any, extra: tuple = ()
    ) -> dict[str, Any]:
        """Submit a layered DAG: layer 0 runs ``fn0(value, *extra[1:])``, every later task
        ``fn(parent_a, parent_b, parent_c, *extra)``. Returns ``{tid: future}``."""
        futures = {tid(0, j): self.submit(fn0, v, *extra[1:]) for j, v in enumerate(first)}
        for layer in range(1, len(parents)):
            prev = layer - 1
            for j, (a, b, c) in enumerate(parents[layer]):
                futures[tid(layer, j)] = self.submit(
                    fn, futures[tid(prev, a)], futures[tid(prev, b)], futures[tid(prev, c)], *extra
                )
        return futures

    def gather_all(self, futures: dict[str, Any]) -> dict[str, Any]:
        """Every output of a layered DAG, by task id."""
        keys = list(futures)
        return dict(zip(keys, self.gather([futures[k] for k in keys]), strict=True))

    def w1(self) -> dict[str, Any]:
        n = self.sizes.w1
        t0 = time.perf_counter()
        out = self.gather(self.map(self.f_noop, range(n)))
        elapsed = time.perf_counter() - t0
        assert sum(out) == n * (n - 1) // 2, "W1 checksum"
        return throughput(n, elapsed)

    def w2(self) -> dict[str, Any]:
        layers, width = self.sizes.w2_layers, self.sizes.w2_width
        if not self.w2_times_building:
            first, parents, expected = layered(layers, width, seed=2)
        t0 = time.perf_counter()
        if self.w2_times_building:
            first, parents, expected = layered(layers, width, seed=2)
        out = self.gather_all(self.submit_layered(first, parents, self.f_seed, self.f_add3))
        elapsed = time.perf_counter() - t0
        check_layers(out, expected)
        return throughput(layers * width, elapsed)

    def w3(self) -> dict[str, Any]:
        samples = []
        for i in range(self.sizes.w3):
            t0 = time.perf_counter()
            value = self.call(self.f_noop, i)
            samples.append(time.perf_counter() - t0)
            assert value == i, "W3 result"
        return latency_result(samples)

    def w4(self) -> dict[str, Any]:
        n = self.sizes.w4
        t0 = time.perf_counter()
        consumers = []
        for i in range(n):
            p = self.submit_on(i % 2, self.f_make, i)
            consumers.append(self.submit_on((i + 1) % 2, self.f_consume, p))
        out = self.gather(consumers)
        elapsed = time.perf_counter() - t0
        assert out == [i * (MiB // 8) for i in range(n)], "W4 checksum"
        return payload_result(n, elapsed)

    def w5(self) -> dict[str, Any]:
        n = self.sizes.w5
        t0 = time.perf_counter()
        out = self.gather([self.submit_gpu(i) for i in range(n)])
        elapsed = time.perf_counter() - t0
        assert sorted(v[0] for v in out) == list(range(n)), "W5 checksum"
        assert {v[1] for v in out} == {self.gpu_node()}, f"W5 placement {set(v[1] for v in out)}"
        return throughput(n, elapsed, all_on_gpu_node=True)

    def _submit_crash_dag(self) -> tuple[dict[str, Any], list[list[int]]]:
        s = self.sizes
        first, parents, expected = layered(s.w6_layers, s.w6_width, seed=6)
        # step(*parents, base, delay); layer 0 runs step(value, delay)
        extra = (1, s.w6_delay)
        return self.submit_layered(first, parents, self.f_step, self.f_step, extra), expected

    def w6(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        futures, expected = self._submit_crash_dag()
        check_layers(self.gather_all(futures), expected)
        clean = time.perf_counter() - t0
        del futures
        t0 = time.perf_counter()
        futures, expected = self._submit_crash_dag()
        pending = list(futures.values())
        total = len(pending)
        while self.done_count(pending) < 0.3 * total:
            time.sleep(self.crash_poll)
        self.kill_worker_node()
        killed_at = time.perf_counter() - t0
        out = self.gather_all(futures)
        crashed = time.perf_counter() - t0
        check_layers(out, expected)
        return crash_result(total, clean, crashed, killed_at)

    def w7(self) -> dict[str, Any]:
        return {"supported": False, "error": self.w7_unsupported}
