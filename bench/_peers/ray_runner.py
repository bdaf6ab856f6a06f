"""Ray: ``ray.cluster_utils.Cluster``, a head node (num_cpus=1) and one worker node (num_cpus=1,
num_gpus=1); custom resources ``node0``/``node1`` pin tasks to a node."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from . import common
from .futures import FuturesRunner


def gpu_task_ray(i):
    import ray as _ray

    return (i, _ray.get_runtime_context().get_node_id())


class RayRunner(FuturesRunner):
    name = "ray"
    crash_poll = 0.005
    w2_times_building = True
    w7_unsupported = "head node loss loses the cluster (no GCS fault tolerance without Redis)"

    def start(self) -> float:
        import ray
        import ray.cloudpickle
        from ray.cluster_utils import Cluster

        # Ray pickles functions with its vendored cloudpickle, whose registry is its own.
        common.ship_by_value(ray.cloudpickle)
        t0 = time.perf_counter()
        head = {"node_ip_address": "127.0.0.1", "include_dashboard": False}
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "resources": {"node0": 1000}, **head},
        )
        self.worker_node = self.cluster.add_node(
            num_cpus=1, num_gpus=1, resources={"node1": 1000}, node_ip_address="127.0.0.1"
        )
        ray.init(address=self.cluster.address, logging_level="ERROR", log_to_driver=False)
        self.cluster.wait_for_nodes()
        self.ray = ray
        r = ray.remote
        self.f_noop, self.f_add3, self.f_seed = r(common.noop), r(common.add3), r(common.seed_value)
        self.f_step = r(common.step)
        self.f_make, self.f_consume = r(common.make_array), r(common.consume_array)
        # max_calls=0: reuse the worker process (Ray's default for GPU tasks is a fresh process
        # per call, ~2 tasks/s here), as the Ray figure does.
        self.f_gpu = r(num_gpus=1, max_calls=0)(gpu_task_ray)
        where = r(common.where_am_i)
        pids = ray.get([where.options(resources={f"node{i}": 1}).remote(i) for i in range(2)])
        assert len(set(pids)) == 2
        return time.perf_counter() - t0

    def submit(self, fn: Any, *args: Any) -> Any:
        return fn.remote(*args)

    def submit_on(self, node: int, fn: Any, *args: Any) -> Any:
        return fn.options(resources={f"node{node}": 1}).remote(*args)

    def submit_gpu(self, i: int) -> Any:
        return self.f_gpu.remote(i)

    def gpu_node(self) -> Any:
        return self.worker_node.node_id

    def map(self, fn: Any, items: range) -> list[Any]:
        return [fn.remote(i) for i in items]

    def call(self, fn: Any, *args: Any) -> Any:
        return self.ray.get(fn.remote(*args))

    def gather(self, futures: list[Any]) -> list[Any]:
        return self.ray.get(futures)

    def done_count(self, futures: list[Any]) -> int:
        total = len(futures)
        return len(self.ray.wait(futures, num_returns=total, timeout=0, fetch_local=False)[0])

    def kill_worker_node(self) -> None:
        self.cluster.remove_node(self.worker_node, allow_graceful=False)  # SIGKILL its processes

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ray.shutdown()
        with contextlib.suppress(Exception):
            self.cluster.shutdown()
