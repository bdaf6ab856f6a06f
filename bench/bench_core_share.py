"""Which placement decisions the compiled core takes, per kernel and backend (issue 13 item 4).

    .venv/bin/python bench/bench_core_share.py [--fanout 2000] [--layers 20] [--width 100]

An in-process cluster of 3 nodes x 2 cpu (``handoffd.testing.ThreadedCluster``, in-memory
transport, nothing on the network) runs a fan-out of independent tasks and a layered DAG whose
tasks take 3 inputs of the layer before, each 80 KiB (above the 64 KiB that travel inline with a
report, so locality has something to prefer). Printed: the decisions each kernel took in each
workload, by backend (``handoffd._core.api.decisions``: tasks placed or ordered, window picks and
low-water tests, fits tests, locality preferences, rebalance choices), the tasks placed, and the
compiled core's share. All three nodes share this process, so the counts are the cluster's.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import cloudpickle

import handoffd
from handoffd._core import api
from handoffd.testing import ThreadedCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])

BLOB = 80 * 1024


def bump(i):
    return i + 1


def blob(i):
    return bytes([i % 251]) * BLOB


def join3(a, b, c):
    return bytes([(a[0] + b[0] + c[0]) % 251]) * BLOB


def fan_out(n: int) -> handoffd.DAG:
    dag = handoffd.DAG()
    for i in range(n):
        dag.add_function(handoffd.Function(id=f"f{i}", code=bump, extra_args=[i]))
    return dag


def layered(layers: int, width: int) -> handoffd.DAG:
    rng = random.Random(7)
    dag = handoffd.DAG()
    for j in range(width):
        dag.add_function(handoffd.Function(id=f"t0_{j}", code=blob, extra_args=[j]))
    for layer in range(1, layers):
        for j in range(width):
            parents = [f"t{layer - 1}_{rng.randrange(width)}" for _ in range(3)]
            dag.add_function(handoffd.Function(id=f"t{layer}_{j}", code=join3, args=parents))
    return dag


def show(name: str, before: dict, after: dict, tasks: int, seconds: float) -> None:
    moved = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    print(f"\n{name}: {tasks:,} tasks in {seconds:.2f} s")
    for kernel in api.KERNELS:
        cells = "  ".join(f"{b} {moved.get((kernel, b), 0):>8,}" for b in api.BACKENDS)
        print(f"  {kernel:8} {cells}")
    shares = api.shares(moved)
    total = sum(shares.values())
    share = f"{100 * shares['cython'] / total:.2f}%" if total else "-"
    print(f"  compiled share: {share} of {total:,} decisions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fanout", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--width", type=int, default=100)
    args = parser.parse_args()
    print(f"placement core backend: {api.BACKEND}")
    with ThreadedCluster([{"cpu": 2, "memory": 4000}] * 3) as cluster:
        with handoffd.connect(cluster.url(0), timeout=60) as client:
            client.execute(fan_out(12), timeout=120)  # workers started, not measured
            for name, dag, n in (
                (f"fan-out {args.fanout}", fan_out(args.fanout), args.fanout),
                (
                    f"layered {args.layers}x{args.width}",
                    layered(args.layers, args.width),
                    args.layers * args.width,
                ),
            ):
                before = api.decisions()
                t0 = time.perf_counter()
                out = client.execute(dag, timeout=900)
                seconds = time.perf_counter() - t0
                assert len(out) == n
                show(name, before, api.decisions(), n, seconds)


if __name__ == "__main__":
    main()
