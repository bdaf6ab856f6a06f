"""Cost of shipping the caller's code and bringing task output back (issue 14).

Starts one local daemon and times sequential ``execute`` of a one-task DAG:
  plain      a function defined here (by value), nothing shipped
  shipped    a function of a module imported from under the current directory (auto-shipped:
             the package's sha travels with every run, its zip once per daemon)
  printing   the plain task printing 20 lines (captured, kept by the owner, not fetched)
Prints runs/s of each and their ratios to ``plain`` (figures of one run on this machine).

    python bench/bench_user_code.py [--runs N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import handoffd
from handoffd.testing import DaemonCluster


def plain(x: int) -> int:
    return x + 1


def printing(x: int) -> int:
    for i in range(20):
        print(f"line {i} of task {x}")
    return x + 1


def rate(client: handoffd.Client, code: object, runs: int) -> float:
    dag = handoffd.DAG().add_function(handoffd.Function(id="t", code=code, extra_args=[1]))
    client.execute(dag)  # warm: the package stored on the daemon
    started = time.perf_counter()
    for _ in range(runs):
        client.execute(dag)
    return runs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50, help="runs per round and kind")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    project = tempfile.mkdtemp(prefix="bench-user-code-")
    with open(os.path.join(project, "bench_helpers_14.py"), "w") as f:
        f.write("def plain(x):\n    return x + 1\n")
    os.chdir(project)
    sys.path.insert(0, project)
    import bench_helpers_14  # type: ignore[import-not-found]

    with DaemonCluster() as cluster:
        daemon = cluster.start(cpu=1, memory=1000)
        with handoffd.connect(daemon.address) as client:
            codes = {"plain": plain, "shipped": bench_helpers_14.plain, "printing": printing}
            for code in codes.values():
                rate(client, code, 20)  # warm the workers and caches
            samples: dict[str, list[float]] = {name: [] for name in codes}
            for _ in range(args.rounds):  # short interleaved rounds, the median of each kind
                for name, code in codes.items():
                    samples[name].append(rate(client, code, args.runs))
            figures = {name: statistics.median(values) for name, values in samples.items()}
    base = figures["plain"]
    for name, value in figures.items():
        print(f"{name:<9} {value:8.1f} runs/s  ({value / base:.2f} x plain)")


if __name__ == "__main__":
    main()
