"""handoffd vs Ray vs Dask on the same workloads, same machine, same run (issue 7).

    make bench-peers                          # or:
    .venv/bin/python bench/bench_vs_peers.py [--quick] [--only W1,W3] [--systems handoffd,dask]

Each system runs in its own child process (so imports and memory never mix) on a 2-node local
cluster bound to 127.0.0.1 with 1 cpu per node:
  handoffd  2 ``handoffd start`` daemons (``handoffd.testing.DaemonCluster``, --seed, --no-mdns);
            the second has ``--gpu 1``
  dask      ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1")``;
            the second worker gets the abstract resource GPU=1
  ray       ``ray.cluster_utils.Cluster``: head node (num_cpus=1) + one worker node (num_cpus=1,
            num_gpus=1), custom resources pin tasks to a node
The whole benchmark runs inside a private network namespace with loopback only (the script
re-executes itself under ``unshare -n`` when it sees another interface), and every system's
process tree is checked to hold loopback sockets only; the check is printed and stored.

Every workload checks its results against values computed here (a checksum over every result),
so speed never comes from skipped work. Start-up is measured apart (until both nodes ran a task)
and excluded from throughput. Peak PSS is the sum over the system's whole process tree (the
driver/client process included, since Dask's scheduler lives there) sampled during W1-W4.
A peer that cannot be imported is reported as missing, never faked.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "peers.json")
SYSTEMS = ("handoffd", "dask", "ray")
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7")
MEMORY_WORKLOADS = ("W1", "W2", "W3", "W4")
CHILD_TIMEOUT = 1800.0
MiB = 1 << 20


# ---------------------------------------------------------------------------------------------
# Task functions (module level in __main__: every system ships them by value)
# ---------------------------------------------------------------------------------------------


def noop(i):
    return i


def add3(a, b, c):
    return a + b + c + 1


def seed_value(v):
    return v


def step(*args):
    """W6/W7: sleep ``delay``, then sum the parents and ``base``; args = parents..., base, delay."""
    import time as _time

    _time.sleep(args[-1])
    return sum(args[:-2]) + args[-2]


def make_array(i):
    import numpy as _np

    return _np.full(MiB // 8, i, dtype=_np.int64)


def consume_array(a):
    return int(a.sum())


def gpu_task(i):
    import os as _os

    return (i, _os.environ.get("CUDA_VISIBLE_DEVICES", ""))


def where_am_i(_i):
    import os as _os

    return _os.getpid()


# ---------------------------------------------------------------------------------------------
# Workload definitions (system-independent): shapes and expected values
# ---------------------------------------------------------------------------------------------


class Sizes:
    def __init__(self, quick: bool) -> None:
        self.w1 = 2_000 if quick else 10_000
        self.w2_layers, self.w2_width = (20, 50) if quick else (50, 100)
        self.w3 = 100 if quick else 500
        self.w4 = 40 if quick else 200
        self.w5 = 40 if quick else 100
        self.w6_layers, self.w6_width = (10, 50) if quick else (20, 100)
        self.w6_delay = 0.005


def layered_dag(layers: int, width: int, seed: int) -> tuple[list[list[int]], list[list[tuple]]]:
    """Seeded random layered DAG: (layer-0 values, parents[layer][j] = 3 indices in layer-1)."""
    rng = random.Random(seed)
    first = [rng.getrandbits(32) for _ in range(width)]
    parents: list[list[tuple]] = [[]]
    for _ in range(1, layers):
        parents.append([tuple(rng.sample(range(width), 3)) for _ in range(width)])
    return [first], parents


def layered_expected(
    first: list[int], parents: list[list[tuple]], base: int = 1
) -> list[list[int]]:
    values = [list(first)]
    for layer in parents[1:]:
        prev = values[-1]
        values.append([prev[a] + prev[b] + prev[c] + base for a, b, c in layer])
    return values


def tid(layer: int, j: int) -> str:
    return f"t{layer}_{j}"


# ---------------------------------------------------------------------------------------------
# Network namespace and loopback check
# ---------------------------------------------------------------------------------------------


def interfaces() -> set[str]:
    """Interfaces of this process's network namespace (/sys/class/net shows the namespace that
    mounted sysfs, not ours, so read /proc/self/net/dev)."""
    names = set()
    try:
        with open("/proc/self/net/dev") as f:
            for line in f.readlines()[2:]:
                names.add(line.split(":", 1)[0].strip())
    except OSError:
        pass
    return names


def in_private_netns() -> bool:
    return interfaces() == {"lo"}


def reexec_in_netns() -> None:
    """Run this script again inside ``unshare -n`` (loopback only), or exit explaining why not."""
    if in_private_netns() or os.environ.get("BENCH_PEERS_NETNS") == "1":
        return
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        sys.exit(
            "bench_vs_peers: needs `unshare` and `ip` (util-linux, iproute2) for a loopback-only netns"
        )
    cmd = [unshare, "-n"] if os.geteuid() == 0 else [unshare, "--user", "--map-root-user", "-n"]
    cmd += ["sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable, *sys.argv]
    env = dict(os.environ, BENCH_PEERS_NETNS="1")
    os.execve(unshare, cmd, env)


def peer_env() -> dict[str, str]:
    """Environment for every system (DESIGN.md section 5, 'Peers in benchmarks')."""
    return {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # else Ray swaps 127.0.0.1 for a routable address
        "RAY_AUTH_MODE": "disabled",  # else it writes ~/.ray/auth_token
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
        "DASK_DISTRIBUTED__DIAGNOSTICS__NVML": "False",
    }


def tree(pid: int | None = None) -> list[Any]:
    import psutil

    root = psutil.Process(pid)
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return [root]


def loopback_check() -> dict[str, Any]:
    """Every inet socket of this process tree: is its local (and remote) address loopback?"""
    import psutil

    sockets, bad = 0, []
    for proc in tree():
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except psutil.Error:
            continue
        for conn in conns:
            sockets += 1
            for addr in (conn.laddr, conn.raddr):
                if not addr:
                    continue
                ip = ipaddress.ip_address(addr.ip.split("%")[0])
                mapped = getattr(ip, "ipv4_mapped", None)
                if not (mapped or ip).is_loopback:
                    bad.append(f"{name}[{proc.pid}] {addr.ip}:{addr.port} {conn.status}")
    return {
        "netns_loopback_only": in_private_netns(),
        "sockets": sockets,
        "non_loopback": bad,
        "ok": in_private_netns() and not bad,
    }


# ---------------------------------------------------------------------------------------------
# Peak PSS sampling (run by the parent over the child's process tree)
# ---------------------------------------------------------------------------------------------


def pss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().decode(errors="replace").split("\0")
    except OSError:
        return str(pid)
    text = " ".join(w for w in words if w)
    for marker in ("handoffd.cli.daemon", "--child", "spawn_main", "raylet", "gcs_server"):
        if marker in text:
            return f"{pid} {marker} {text[-60:]}"
    return f"{pid} {text[:80]}"


class PssSampler:
    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.breakdown: list[tuple[int, str]] = []  # (PSS bytes, process) at the peak
        self.active = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(self.interval):
            if not self.active:
                continue
            try:
                pids = [p.pid for p in tree(self.pid)]
            except psutil.Error:
                continue
            sizes = [(pss_of(p), p) for p in pids]
            total = sum(size for size, _ in sizes)
            if total > self.peak:
                self.peak = total
                self.breakdown = [(size, describe(p)) for size, p in sorted(sizes, reverse=True)]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# ---------------------------------------------------------------------------------------------
# The systems. Each runner: start() -> seconds until both nodes ran a task; w1()..w7() -> dict;
# close(). Workloads raise AssertionError on a wrong result.
# ---------------------------------------------------------------------------------------------


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latency_result(samples: list[float]) -> dict[str, Any]:
    return {
        "count": len(samples),
        "p50_ms": percentile(samples, 50) * 1e3,
        "p99_ms": percentile(samples, 99) * 1e3,
        "mean_ms": statistics.fmean(samples) * 1e3,
    }


class HandoffdRunner:
    name = "handoffd"

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes
        self.cluster: Any = None
        self.client: Any = None

    def _start_cluster(self) -> float:
        import handoffd
        from handoffd.testing import DaemonCluster, wait_for

        t0 = time.perf_counter()
        self.cluster = DaemonCluster(env=peer_env())
        # d1 starts once d0 listens: a daemon that hears of a peer before its owner side exists
        # never tells that owner (node.py: OwnerIO is not seeded with existing members), and a
        # task pinned to that peer then stays 'unknown_node' until the peer's resources change.
        d0 = d1 = None
        for i in range(2):
            d = self.cluster.start(
                cpu=1,
                memory=4000,
                gpu=i,
                seeds=[d0.address] if d0 is not None else None,
                wait=False,
            )
            wait_for(
                lambda d=d: "listening on" in d.log() or not d.alive(),
                30,
                0.002,
                what=f"daemon {d.name} start",
            )
            if not d.alive():
                raise RuntimeError(f"daemon {d.name} exited:\n{d.log()}")
            d0, d1 = (d, None) if i == 0 else (d0, d)
        assert d0 is not None and d1 is not None
        self.d0, self.d1 = d0, d1
        self.client = handoffd.connect(d0.address, timeout=10)
        wait_for(
            lambda: sum(n.status == "ALIVE" for n in self.client.nodes().values()) == 2,
            30,
            0.002,
            what="both daemons ALIVE",
        )
        dag = handoffd.DAG()
        for i, d in enumerate((d0, d1)):
            dag.add_function(
                handoffd.Function(id=f"s{i}", code=where_am_i, extra_args=[i], node=d.name)
            )
        deadline = time.monotonic() + 30
        while (pids := self._pinned(dag)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no task ran on each daemon:\n{self.cluster.logs()}")
            time.sleep(0.002)
        assert len(set(pids.values())) == 2, pids
        return time.perf_counter() - t0

    def _pinned(self, dag: Any) -> Any:
        import handoffd

        try:
            return self.client.execute(dag)
        except handoffd.ValidationError as exc:  # the owner has not heard of the peer yet
            if exc.kind != "unknown_node":
                raise
            return None

    def start(self) -> float:
        return self._start_cluster()

    def w1(self) -> dict[str, Any]:
        import handoffd

        n = self.sizes.w1
        dag = handoffd.DAG()
        for i in range(n):
            dag.add_function(handoffd.Function(id=f"n{i}", code=noop, extra_args=[i]))
        t0 = time.perf_counter()
        out = self.client.execute(dag)
        elapsed = time.perf_counter() - t0
        assert len(out) == n and sum(out.values()) == n * (n - 1) // 2, "W1 checksum"
        return {"tasks": n, "seconds": elapsed, "tasks_per_s": rate(n, elapsed)}

    def w2(self) -> dict[str, Any]:
        import handoffd

        layers, width = self.sizes.w2_layers, self.sizes.w2_width
        (first,), parents = layered_dag(layers, width, seed=2)
        expected = layered_expected(first, parents)
        dag = handoffd.DAG()
        for j, v in enumerate(first):
            dag.add_function(handoffd.Function(id=tid(0, j), code=seed_value, extra_args=[v]))
        for layer in range(1, layers):
            for j, (a, b, c) in enumerate(parents[layer]):
                dag.add_function(
                    handoffd.Function(
                        id=tid(layer, j),
                        code=add3,
                        args=[tid(layer - 1, a), tid(layer - 1, b), tid(layer - 1, c)],
                    )
                )
        t0 = time.perf_counter()
        out = self.client.execute(dag)
        elapsed = time.perf_counter() - t0
        check_layers(out, expected)
        n = layers * width
        return {
            "tasks": n,
            "seconds": elapsed,
            "tasks_per_s": rate(n, elapsed),
            "max_bits": max(expected[-1]).bit_length(),
        }

    def w3(self) -> dict[str, Any]:
        import handoffd

        samples = []
        for i in range(self.sizes.w3):
            dag = handoffd.DAG().add_function(
                handoffd.Function(id="one", code=noop, extra_args=[i])
            )
            t0 = time.perf_counter()
            out = self.client.execute(dag)
            samples.append(time.perf_counter() - t0)
            assert out == {"one": i}, "W3 result"
        return latency_result(samples)

    def w4(self) -> dict[str, Any]:
        import handoffd

        n = self.sizes.w4
        names = (self.d0.name, self.d1.name)
        dag = handoffd.DAG()
        for i in range(n):
            src, dst = names[i % 2], names[(i + 1) % 2]
            dag.add_function(
                handoffd.Function(id=f"p{i}", code=make_array, extra_args=[i], node=src)
            )
            dag.add_function(
                handoffd.Function(id=f"c{i}", code=consume_array, args=[f"p{i}"], node=dst)
            )
        outputs = [f"c{i}" for i in range(n)]
        t0 = time.perf_counter()
        run = self.client.submit(dag, outputs=outputs)
        run.wait()
        out = run.results()
        elapsed = time.perf_counter() - t0
        placement = run.placement()
        run.release()
        for i in range(n):
            assert out[f"c{i}"] == i * (MiB // 8), "W4 checksum"
            assert placement[f"p{i}"] != placement[f"c{i}"], "W4: consumer on the producer's node"
        return {"tasks": 2 * n, "seconds": elapsed, "mib_per_s": n / elapsed}

    def w5(self) -> dict[str, Any]:
        import handoffd

        n = self.sizes.w5
        dag = handoffd.DAG()
        for i in range(n):
            dag.add_function(
                handoffd.Function(
                    id=f"g{i}", code=gpu_task, extra_args=[i], cost={"cpu": 1, "gpu": 1}
                )
            )
        t0 = time.perf_counter()
        run = self.client.submit(dag)
        run.wait()
        out = run.results()
        elapsed = time.perf_counter() - t0
        placement = run.placement()
        run.release()
        assert sorted(v[0] for v in out.values()) == list(range(n)), "W5 checksum"
        nodes = set(placement.values())
        assert nodes == {self.d1.name}, f"W5 placement {nodes}"
        assert all(v[1] == "0" for v in out.values()), "W5: CUDA_VISIBLE_DEVICES"
        return {
            "tasks": n,
            "seconds": elapsed,
            "tasks_per_s": rate(n, elapsed),
            "all_on_gpu_node": True,
        }

    def _crash_dag(self) -> tuple[Any, list[list[int]]]:
        import handoffd

        s = self.sizes
        (first,), parents = layered_dag(s.w6_layers, s.w6_width, seed=6)
        expected = layered_expected(first, parents)
        dag = handoffd.DAG()
        for j, v in enumerate(first):
            dag.add_function(handoffd.Function(id=tid(0, j), code=step, extra_args=[v, s.w6_delay]))
        for layer in range(1, s.w6_layers):
            for j, (a, b, c) in enumerate(parents[layer]):
                dag.add_function(
                    handoffd.Function(
                        id=tid(layer, j),
                        code=step,
                        args=[tid(layer - 1, a), tid(layer - 1, b), tid(layer - 1, c)],
                        extra_args=[1, s.w6_delay],
                    )
                )
        return dag, expected

    def _crash_run(self, victim: Any) -> dict[str, Any]:
        """A clean run, then the same DAG with ``victim`` SIGKILLed (with its workers) at 30 %."""
        dag, expected = self._crash_dag()
        total = len(dag.functions)
        t0 = time.perf_counter()
        check_layers(self.client.execute(dag), expected)
        clean = time.perf_counter() - t0
        t0 = time.perf_counter()
        run = self.client.submit(dag)
        while run.status().counts.get("DONE", 0) < 0.3 * total:
            time.sleep(0.002)
        os.killpg(victim.pid, signal.SIGKILL)
        killed_at = time.perf_counter() - t0
        run.wait(timeout=max(60.0, 20 * clean))
        out = run.results()
        crashed = time.perf_counter() - t0
        check_layers(out, expected)
        return {
            "tasks": total,
            "clean_s": clean,
            "crash_s": crashed,
            "killed_at_s": killed_at,
            "ratio": crashed / clean,
            "correct": True,
        }

    def w6(self) -> dict[str, Any]:
        return self._crash_run(self.d1)  # d1 is a worker node: the client talks to d0

    def w7(self) -> dict[str, Any]:
        # The owner is the daemon the client submitted to: start a fresh pair and kill d0.
        self.close()
        self._start_cluster()
        try:
            return self._crash_run(self.d0)
        except Exception as exc:  # noqa: BLE001 - failover missing is a reported state, not a crash
            return {"supported": False, "error": f"{type(exc).__name__}: {exc}"[:300]}

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


def check_layers(out: dict[str, Any], expected: list[list[int]]) -> None:
    for layer, row in enumerate(expected):
        for j, value in enumerate(row):
            assert out[tid(layer, j)] == value, f"wrong value for {tid(layer, j)}"


class DaskRunner:
    name = "dask"

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes

    def start(self) -> float:
        from distributed import Client, LocalCluster

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

    def w1(self) -> dict[str, Any]:
        n = self.sizes.w1
        t0 = time.perf_counter()
        futures = self.client.map(noop, range(n), pure=False)
        out = self.client.gather(futures)
        elapsed = time.perf_counter() - t0
        assert sum(out) == n * (n - 1) // 2, "W1 checksum"
        return {"tasks": n, "seconds": elapsed, "tasks_per_s": rate(n, elapsed)}

    def w2(self) -> dict[str, Any]:
        layers, width = self.sizes.w2_layers, self.sizes.w2_width
        (first,), parents = layered_dag(layers, width, seed=2)
        expected = layered_expected(first, parents)
        submit = self.client.submit
        t0 = time.perf_counter()
        futures = {tid(0, j): submit(seed_value, v, pure=False) for j, v in enumerate(first)}
        for layer in range(1, layers):
            for j, (a, b, c) in enumerate(parents[layer]):
                prev = layer - 1
                futures[tid(layer, j)] = submit(
                    add3,
                    futures[tid(prev, a)],
                    futures[tid(prev, b)],
                    futures[tid(prev, c)],
                    pure=False,
                )
        keys = list(futures)
        values = self.client.gather([futures[k] for k in keys])  # every output requested
        elapsed = time.perf_counter() - t0
        check_layers(dict(zip(keys, values, strict=True)), expected)
        n = layers * width
        return {"tasks": n, "seconds": elapsed, "tasks_per_s": rate(n, elapsed)}

    def w3(self) -> dict[str, Any]:
        samples = []
        for i in range(self.sizes.w3):
            t0 = time.perf_counter()
            value = self.client.submit(noop, i, pure=False).result()
            samples.append(time.perf_counter() - t0)
            assert value == i, "W3 result"
        return latency_result(samples)

    def w4(self) -> dict[str, Any]:
        n = self.sizes.w4
        w = self.workers
        t0 = time.perf_counter()
        consumers = []
        for i in range(n):
            src, dst = w[i % 2], w[(i + 1) % 2]
            p = self.client.submit(
                make_array, i, workers=[src], allow_other_workers=False, pure=False
            )
            consumers.append(
                self.client.submit(
                    consume_array, p, workers=[dst], allow_other_workers=False, pure=False
                )
            )
        out = self.client.gather(consumers)
        elapsed = time.perf_counter() - t0
        assert out == [i * (MiB // 8) for i in range(n)], "W4 checksum"
        return {"tasks": 2 * n, "seconds": elapsed, "mib_per_s": n / elapsed}

    def w5(self) -> dict[str, Any]:
        n = self.sizes.w5
        t0 = time.perf_counter()
        futures = [
            self.client.submit(gpu_task_dask, i, resources={"GPU": 1}, pure=False) for i in range(n)
        ]
        out = self.client.gather(futures)
        elapsed = time.perf_counter() - t0
        assert sorted(v[0] for v in out) == list(range(n)), "W5 checksum"
        assert {v[1] for v in out} == {self.workers[1]}, "W5 placement"
        return {
            "tasks": n,
            "seconds": elapsed,
            "tasks_per_s": rate(n, elapsed),
            "all_on_gpu_node": True,
        }

    def _submit_crash_dag(self) -> tuple[list[str], list[Any], list[list[int]]]:
        s = self.sizes
        (first,), parents = layered_dag(s.w6_layers, s.w6_width, seed=6)
        expected = layered_expected(first, parents)
        submit = self.client.submit
        futures = {tid(0, j): submit(step, v, s.w6_delay, pure=False) for j, v in enumerate(first)}
        for layer in range(1, s.w6_layers):
            for j, (a, b, c) in enumerate(parents[layer]):
                prev = layer - 1
                futures[tid(layer, j)] = submit(
                    step,
                    futures[tid(prev, a)],
                    futures[tid(prev, b)],
                    futures[tid(prev, c)],
                    1,
                    s.w6_delay,
                    pure=False,
                )
        return list(futures), list(futures.values()), expected

    def w6(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        keys, futures, expected = self._submit_crash_dag()
        check_layers(dict(zip(keys, self.client.gather(futures), strict=True)), expected)
        clean = time.perf_counter() - t0
        del futures
        t0 = time.perf_counter()
        keys, futures, expected = self._submit_crash_dag()
        total = len(futures)
        while sum(f.done() for f in futures) < 0.3 * total:
            time.sleep(0.002)
        # A worker "node" is its worker process (the nanny lives in this process and restarts it).
        victim = self.client.run(os.getpid, workers=[self.workers[1]])[self.workers[1]]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.perf_counter() - t0
        out = self.client.gather(futures)
        crashed = time.perf_counter() - t0
        check_layers(dict(zip(keys, out, strict=True)), expected)
        return {
            "tasks": total,
            "clean_s": clean,
            "crash_s": crashed,
            "killed_at_s": killed_at,
            "ratio": crashed / clean,
            "correct": True,
        }

    def w7(self) -> dict[str, Any]:
        return {
            "supported": False,
            "error": "the scheduler is a single point of failure (all work lost)",
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        with contextlib.suppress(Exception):
            self.cluster.close()


def gpu_task_dask(i):
    from distributed import get_worker

    return (i, get_worker().address)


class RayRunner:
    name = "ray"

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes

    def start(self) -> float:
        import ray
        from ray.cluster_utils import Cluster

        t0 = time.perf_counter()
        common = {"node_ip_address": "127.0.0.1", "include_dashboard": False}
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "resources": {"node0": 1000}, **common},
        )
        self.worker_node = self.cluster.add_node(
            num_cpus=1, num_gpus=1, resources={"node1": 1000}, node_ip_address="127.0.0.1"
        )
        ray.init(address=self.cluster.address, logging_level="ERROR", log_to_driver=False)
        self.cluster.wait_for_nodes()
        self.ray = ray
        r = ray.remote
        self.f_noop, self.f_add3, self.f_seed = r(noop), r(add3), r(seed_value)
        self.f_step, self.f_make, self.f_consume = r(step), r(make_array), r(consume_array)
        # max_calls=0: reuse the worker process (Ray's default for GPU tasks is a fresh process
        # per call, ~2 tasks/s here), as the Ray figure does.
        self.f_gpu = r(num_gpus=1, max_calls=0)(gpu_task_ray)
        where = r(where_am_i)
        pids = ray.get([where.options(resources={f"node{i}": 1}).remote(i) for i in range(2)])
        assert len(set(pids)) == 2
        return time.perf_counter() - t0

    def w1(self) -> dict[str, Any]:
        n = self.sizes.w1
        t0 = time.perf_counter()
        out = self.ray.get([self.f_noop.remote(i) for i in range(n)])
        elapsed = time.perf_counter() - t0
        assert sum(out) == n * (n - 1) // 2, "W1 checksum"
        return {"tasks": n, "seconds": elapsed, "tasks_per_s": rate(n, elapsed)}

    def _layered(
        self, layers: int, width: int, seed: int, fn0: Any, fn: Any, extra: tuple
    ) -> tuple[dict, list]:
        (first,), parents = layered_dag(layers, width, seed=seed)
        expected = layered_expected(first, parents)
        refs = {
            tid(0, j): fn0.remote(v, *extra[1:]) if extra else fn0.remote(v)
            for j, v in enumerate(first)
        }
        for layer in range(1, layers):
            for j, (a, b, c) in enumerate(parents[layer]):
                prev = layer - 1
                refs[tid(layer, j)] = fn.remote(
                    refs[tid(prev, a)], refs[tid(prev, b)], refs[tid(prev, c)], *extra
                )
        return refs, expected

    def w2(self) -> dict[str, Any]:
        layers, width = self.sizes.w2_layers, self.sizes.w2_width
        t0 = time.perf_counter()
        refs, expected = self._layered(layers, width, 2, self.f_seed, self.f_add3, ())
        keys = list(refs)
        values = self.ray.get([refs[k] for k in keys])
        elapsed = time.perf_counter() - t0
        check_layers(dict(zip(keys, values, strict=True)), expected)
        n = layers * width
        return {"tasks": n, "seconds": elapsed, "tasks_per_s": rate(n, elapsed)}

    def w3(self) -> dict[str, Any]:
        samples = []
        for i in range(self.sizes.w3):
            t0 = time.perf_counter()
            value = self.ray.get(self.f_noop.remote(i))
            samples.append(time.perf_counter() - t0)
            assert value == i, "W3 result"
        return latency_result(samples)

    def w4(self) -> dict[str, Any]:
        n = self.sizes.w4
        t0 = time.perf_counter()
        consumers = []
        for i in range(n):
            src, dst = f"node{i % 2}", f"node{(i + 1) % 2}"
            p = self.f_make.options(resources={src: 1}).remote(i)
            consumers.append(self.f_consume.options(resources={dst: 1}).remote(p))
        out = self.ray.get(consumers)
        elapsed = time.perf_counter() - t0
        assert out == [i * (MiB // 8) for i in range(n)], "W4 checksum"
        return {"tasks": 2 * n, "seconds": elapsed, "mib_per_s": n / elapsed}

    def w5(self) -> dict[str, Any]:
        n = self.sizes.w5
        t0 = time.perf_counter()
        out = self.ray.get([self.f_gpu.remote(i) for i in range(n)])
        elapsed = time.perf_counter() - t0
        assert sorted(v[0] for v in out) == list(range(n)), "W5 checksum"
        assert {v[1] for v in out} == {self.worker_node.node_id}, (
            f"W5 placement {set(v[1] for v in out)}"
        )
        return {
            "tasks": n,
            "seconds": elapsed,
            "tasks_per_s": rate(n, elapsed),
            "all_on_gpu_node": True,
        }

    def w6(self) -> dict[str, Any]:
        s = self.sizes

        def submit() -> tuple[list[str], list[Any], list[list[int]]]:
            refs, expected = self._layered(
                s.w6_layers, s.w6_width, 6, self.f_step, self.f_step, (1, s.w6_delay)
            )
            return list(refs), list(refs.values()), expected

        # layer 0 of step() takes (value, delay): _layered passes extra[1:] to fn0
        t0 = time.perf_counter()
        keys, refs, expected = submit()
        check_layers(dict(zip(keys, self.ray.get(refs), strict=True)), expected)
        clean = time.perf_counter() - t0
        del refs
        t0 = time.perf_counter()
        keys, refs, expected = submit()
        total = len(refs)
        while (
            len(self.ray.wait(refs, num_returns=total, timeout=0, fetch_local=False)[0])
            < 0.3 * total
        ):
            time.sleep(0.005)
        self.cluster.remove_node(self.worker_node, allow_graceful=False)  # SIGKILL its processes
        killed_at = time.perf_counter() - t0
        out = self.ray.get(refs)
        crashed = time.perf_counter() - t0
        check_layers(dict(zip(keys, out, strict=True)), expected)
        return {
            "tasks": total,
            "clean_s": clean,
            "crash_s": crashed,
            "killed_at_s": killed_at,
            "ratio": crashed / clean,
            "correct": True,
        }

    def w7(self) -> dict[str, Any]:
        return {
            "supported": False,
            "error": "head node loss loses the cluster (no GCS fault tolerance without Redis)",
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ray.shutdown()
        with contextlib.suppress(Exception):
            self.cluster.shutdown()


def gpu_task_ray(i):
    import ray as _ray

    return (i, _ray.get_runtime_context().get_node_id())


RUNNERS: dict[str, Callable[[Sizes], Any]] = {
    "handoffd": HandoffdRunner,
    "dask": DaskRunner,
    "ray": RayRunner,
}
IMPORTS = {"handoffd": "handoffd", "dask": "distributed", "ray": "ray"}


# ---------------------------------------------------------------------------------------------
# Child: one system, all selected workloads; talks to the parent by lines on stdout
# ---------------------------------------------------------------------------------------------


def say(kind: str, payload: Any = None) -> None:
    sys.stdout.write(f"@@{kind} {json.dumps(payload)}\n")
    sys.stdout.flush()


def child_main(system: str, sizes: Sizes, only: list[str]) -> None:
    runner = RUNNERS[system](sizes)
    results: dict[str, Any] = {}
    try:
        results["startup_s"] = runner.start()
        say("progress", f"{system} start-up {results['startup_s']:.3f}s")
        say("mem", "start")
        for w in only:
            if w not in MEMORY_WORKLOADS and w not in ("W5", "W6", "W7"):
                continue
            if w == "W5":
                say("mem", "stop")
            if w == "W5" or w == "W6":
                results["loopback"] = loopback_check()  # before a node is killed
            try:
                results[w] = getattr(runner, w.lower())()
            except Exception as exc:  # noqa: BLE001 - report the failure, keep going
                results[w] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
                traceback.print_exc(file=sys.stderr)
            say("progress", f"{system} {w} {json.dumps(results[w])}")
        say("mem", "stop")
        results.setdefault("loopback", loopback_check())
    finally:
        runner.close()
    say("result", results)


# ---------------------------------------------------------------------------------------------
# Parent: run each system in a child, sample its memory, print the table, write the JSON
# ---------------------------------------------------------------------------------------------


def run_child(system: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        system,
        "--only",
        ",".join(args.only),
    ]
    if args.quick:
        cmd.append("--quick")
    env = dict(os.environ, **peer_env(), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    sampler = PssSampler(proc.pid)
    result: dict[str, Any] = {"error": "the child exited without a result"}
    timer = threading.Timer(CHILD_TIMEOUT, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.startswith("@@"):
                sys.stderr.write(line)
                continue
            kind, _, payload = line[2:].partition(" ")
            data = json.loads(payload)
            if kind == "mem":
                sampler.active = data == "start"
            elif kind == "progress":
                print(f"  {data}", file=sys.stderr, flush=True)
            elif kind == "result":
                result = data
        proc.wait()
    finally:
        timer.cancel()
        sampler.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the child left behind
    if proc.returncode != 0 and "error" in result and len(result) == 1:
        result["error"] = f"child exited with {proc.returncode}"
    if sampler.peak:
        result["peak_pss_mib"] = sampler.peak / MiB
        result["peak_pss_by_process_mib"] = [
            [round(size / MiB, 1), what] for size, what in sampler.breakdown[:12]
        ]
    return result


def fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "-"


def cell(res: dict[str, Any], w: str) -> str:
    if "missing" in res:
        return "missing"
    r = res.get(w)
    if r is None:
        return "-"
    if "error" in r and "supported" not in r:
        return "FAILED"
    if w in ("W1", "W2", "W5"):
        return f"{r['tasks_per_s']:,.0f} tasks/s"
    if w == "W3":
        return f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"
    if w == "W4":
        return f"{r['mib_per_s']:,.0f} MiB/s"
    if w in ("W6", "W7"):
        if r.get("supported") is False:
            return (
                "not supported"
                if w == "W7" and res.get("system") != "handoffd"
                else "not yet supported"
            )
        return f"{r['ratio']:.2f}x clean ({r['clean_s']:.2f}s)"
    return "-"


def print_table(report: dict[str, Any]) -> None:
    systems = report["systems"]
    names = list(systems)
    rows = [("workload", *names)]
    labels = {
        "W1": "W1 fanout",
        "W2": "W2 dag",
        "W3": "W3 latency",
        "W4": "W4 payload",
        "W5": "W5 resources",
        "W6": "W6 worker crash",
        "W7": "W7 owner crash",
    }
    for w in report["workloads"]:
        rows.append((labels[w], *(cell(systems[s], w) for s in names)))
    rows.append(
        (
            "memory (peak PSS W1-W4)",
            *(
                "missing"
                if "missing" in systems[s]
                else fmt(systems[s].get("peak_pss_mib"), ",.0f") + " MiB"
                for s in names
            ),
        )
    )
    rows.append(
        (
            "start-up",
            *(
                "missing"
                if "missing" in systems[s]
                else fmt(systems[s].get("startup_s"), ".2f") + " s"
                for s in names
            ),
        )
    )
    rows.append(
        (
            "loopback only",
            *(
                "missing"
                if "missing" in systems[s]
                else ("yes" if systems[s].get("loopback", {}).get("ok") else "NO")
                for s in names
            ),
        )
    )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for k, r in enumerate(rows):
        print(" | ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)))
        if k == 0:
            print("-+-".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run)")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="workloads, e.g. W1,W3")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="systems, e.g. handoffd,dask")
    parser.add_argument("--out", default=RESULTS, help="JSON results path")
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.only = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in args.only if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {','.join(WORKLOADS)}")
    sizes = Sizes(args.quick)
    if args.child:
        child_main(args.child, sizes, args.only)
        return
    reexec_in_netns()
    import importlib.util

    report: dict[str, Any] = {
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "quick": args.quick,
        "workloads": args.only,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "systems": {},
    }
    for system in [s.strip() for s in args.systems.split(",") if s.strip()]:
        if importlib.util.find_spec(IMPORTS[system]) is None:
            report["systems"][system] = {
                "system": system,
                "missing": f"`{IMPORTS[system]}` is not installed",
            }
            print(f"{system}: missing (pip install the bench extra)", file=sys.stderr)
            continue
        print(f"running {system} ...", file=sys.stderr, flush=True)
        res = run_child(system, args)
        res["system"] = system
        with contextlib.suppress(Exception):
            mod = __import__(IMPORTS[system])
            res["version"] = getattr(mod, "__version__", "?")
        report["systems"][system] = res
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print()
    print_table(report)
    print(f"\nJSON: {args.out}")
    for system, res in report["systems"].items():
        lb = res.get("loopback")
        if lb:
            print(
                f"loopback check {system}: {lb['sockets']} sockets, netns loopback-only={lb['netns_loopback_only']}, non-loopback={lb['non_loopback'][:5]}"
            )


if __name__ == "__main__":
    main()
