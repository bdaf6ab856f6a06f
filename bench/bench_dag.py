"""Figures for the DAG model and local execution.

  python bench/bench_dag.py [--functions 10000] [--tasks 2000] [--jobs 20000]

Prints: validation time of a 10,000-function DAG (a chain, and a layered fan-out/fan-in), the client's
CPU per task to turn a DAG into its submission (validate, order, payloads, encode: what the cluster waits
for before it sees anything), no-op jobs/s straight through a WorkerPool with one and with two workers,
and no-op functions/s through run_local.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import handoffd  # noqa: E402
from handoffd import values  # noqa: E402
from handoffd.protocol import codec  # noqa: E402
from handoffd.protocol import messages as m  # noqa: E402
from handoffd.worker.pool import Job, Outcome, WorkerPool  # noqa: E402


def noop(*args: object) -> None:
    return None


def chain_dag(n: int) -> handoffd.DAG:
    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="f0", code=noop))
    for i in range(1, n):
        dag.add_function(handoffd.Function(id=f"f{i}", code=noop, args=[f"f{i - 1}"]))
    return dag


def layered_dag(n: int, width: int = 100) -> handoffd.DAG:
    """Layers of ``width`` functions, each depending on three of the previous layer."""
    dag = handoffd.DAG()
    for i in range(n):
        layer, pos = divmod(i, width)
        args = (
            [] if layer == 0 else [f"f{(layer - 1) * width + (pos + k) % width}" for k in range(3)]
        )
        dag.add_function(handoffd.Function(id=f"f{i}", code=noop, args=args))
    return dag


def independent_dag(n: int) -> handoffd.DAG:
    dag = handoffd.DAG()
    for i in range(n):
        dag.add_function(handoffd.Function(id=f"t{i}", code=noop))
    return dag


def w1_dag(n: int) -> handoffd.DAG:
    """bench_vs_peers' W1: independent no-op functions, each with its own literal."""
    dag = handoffd.DAG()
    for i in range(n):
        dag.add_function(handoffd.Function(id=f"n{i}", code=noop, extra_args=[i]))
    return dag


def add3(a: int, b: int, c: int) -> int:
    return a + b + c


def w2_dag(layers: int = 50, width: int = 100) -> handoffd.DAG:
    """bench_vs_peers' W2 shape: a seeded layer-0 literal per function, then three random parents."""
    rng = random.Random(2)
    dag = handoffd.DAG()
    for j in range(width):
        dag.add_function(handoffd.Function(id=f"l0-{j}", code=noop, extra_args=[j]))
    for layer in range(1, layers):
        for j in range(width):
            args = [f"l{layer - 1}-{p}" for p in rng.sample(range(width), 3)]
            dag.add_function(handoffd.Function(id=f"l{layer}-{j}", code=add3, args=args))
    return dag


def submission_us(dag: handoffd.DAG, repeats: int = 5) -> float:
    """Best-of µs per function for what ``Client.execute`` does before anything is sent."""

    def submit() -> None:
        rows, payloads = dag.wire_tasks()
        msg = m.SubmitAndWait(1, "run", codec.Rows(rows), 3, "binpack", None, 2.0, 1 << 26, True)
        codec.encode(msg, sender="client", frames=payloads)

    return best_of(repeats, submit) * 1e6 / len(dag)


def best_of(repeats: int, fn: object) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


async def pool_rate(workers: int, jobs: int) -> float:
    """No-op jobs/s with ``2 * workers`` jobs in flight (each worker always has its next job ready)."""
    payload = values.dumps_code((noop, [], {}))
    done = 0
    finished = asyncio.get_running_loop().create_future()
    submitted = 0

    def on_done(outcome: Outcome) -> None:
        nonlocal done, submitted
        assert outcome.ok, outcome
        done += 1
        if submitted < jobs:
            pool.submit(Job(submitted, payload, []))
            submitted += 1
        elif done == jobs:
            finished.set_result(None)

    pool = WorkerPool(workers, on_done, name="bench")
    await pool.start()
    try:
        start = time.perf_counter()
        for _ in range(min(jobs, 2 * workers)):
            pool.submit(Job(submitted, payload, []))
            submitted += 1
        await finished
        return jobs / (time.perf_counter() - start)
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=2_000)
    parser.add_argument("--jobs", type=int, default=20_000)
    opts = parser.parse_args()

    for label, build in (("chain", chain_dag), ("layered x3", layered_dag)):
        dag = build(opts.functions)
        seconds = best_of(3, dag.validate)
        print(f"validate {len(dag):>6} functions ({label:<10}): {seconds * 1000:8.1f} ms")
        seconds = best_of(3, dag.critical_path_length)
        print(f"critical path {len(dag):>6} ({label:<10}):        {seconds * 1000:8.1f} ms")
        seconds = best_of(1, dag.to_specs)
        print(f"to_specs {len(dag):>6} functions ({label:<10}): {seconds * 1000:8.1f} ms")

    for label, dag in (("W1 independent", w1_dag(opts.functions)), ("W2 50x100", w2_dag())):
        us = submission_us(dag)
        print(f"submission {len(dag):>6} functions ({label:<14}): {us:6.2f} us/function")

    for workers in (1, 2):
        rate = asyncio.run(pool_rate(workers, opts.jobs))
        print(f"WorkerPool no-op jobs, {workers} worker(s): {rate:10,.0f} jobs/s")

    for workers in (1, 2):
        dag = independent_dag(opts.tasks)
        start = time.perf_counter()
        results = handoffd.run_local(dag, max_workers=workers)
        elapsed = time.perf_counter() - start
        assert len(results) == opts.tasks
        print(
            f"run_local {opts.tasks} independent no-op functions, {workers} worker(s): "
            f"{opts.tasks / elapsed:8,.0f} functions/s ({elapsed:.2f} s incl. worker start-up)"
        )
    dag = chain_dag(opts.tasks)
    start = time.perf_counter()
    handoffd.run_local(dag, max_workers=2)
    elapsed = time.perf_counter() - start
    print(
        f"run_local chain of {opts.tasks} no-op functions: {opts.tasks / elapsed:8,.0f} functions/s"
    )


if __name__ == "__main__":
    main()
