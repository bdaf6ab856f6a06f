"""Streaming pipelines (client.stream) on 2 real daemons on loopback: throughput of a 3-stage
pipeline of trivial functions with micro-batching, and the latency of one item through 3 stages.

    .venv/bin/python bench/bench_stream.py [--items 100000] [--batch 512] [--latency 300]

Prints items/s (pushed to last output), per repeat, and the p50/p90 of one item's round trip
(push, wait for its output) through the same 3 stages without batching. The issue's targets:
>= 50,000 items/s, p50 <= 2 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

import cloudpickle

import handoffd
from handoffd import Function
from handoffd.testing import DaemonCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def inc_batch(batch):
    return [x + 1 for x in batch]


def inc(x):
    return x + 1


def three_stages(batch: int | None) -> handoffd.DAG:
    dag = handoffd.DAG()
    dag.add_function(Function(id="src", type="input"))
    previous = "src"
    for name in ("a", "b", "c"):
        if batch:
            fn = Function(id=name, code=inc_batch, args=[previous], batch_size=batch,
                          batch_timeout=0.002)  # fmt: skip
        else:
            fn = Function(id=name, code=inc, args=[previous])
        dag.add_function(fn)
        previous = name
    return dag


def throughput(client: handoffd.Client, items: int, batch: int) -> float:
    with client.stream(three_stages(batch), max_in_flight=max(4 * batch, 20000)) as pipe:
        placement = pipe.run.placement()
        done: list[float] = []

        def read() -> None:
            # results() ends once it caught up with the pushes so far: read until all came
            count = 0
            while count < items:
                before = count
                for out in pipe.results(timeout=120):
                    assert out == count + 3, (count, out)  # pushed i, 3 stages add 1 each
                    count += 1
                if count == before:
                    time.sleep(0.001)
            done.append(time.perf_counter())

        start = time.perf_counter()
        reader = threading.Thread(target=read)
        for i in range(items):
            pipe.push(i)
            if i == 0:
                reader.start()
        reader.join(300)
        rate = items / (done[0] - start)
    print(f"  stages on nodes: {sorted(set(placement.values()))}")
    return rate


def latency(client: handoffd.Client, count: int) -> list[float]:
    out: list[float] = []
    with client.stream(three_stages(None), max_in_flight=10) as pipe:
        for i in range(count):
            start = time.perf_counter()
            pipe.push(i)
            (value,) = list(pipe.results(timeout=30))
            out.append(time.perf_counter() - start)
            assert value == i + 3
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--latency", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with DaemonCluster() as cluster:
        a = cluster.start(cpu=2, memory=2000)
        cluster.start(cpu=2, memory=2000, seeds=[a.address])
        with handoffd.connect(a.address, timeout=10) as client:
            wait_for(lambda: len(client.nodes()) == 2, 30, what="2 nodes")
            for run in range(args.repeat):
                rate = throughput(client, args.items, args.batch)
                print(f"throughput run {run}: {rate:,.0f} items/s through 3 stages "
                      f"(batch_size {args.batch}, {args.items:,} items, 2 nodes)")  # fmt: skip
            times = sorted(latency(client, args.latency))[10:]  # the first few warm up
            p50 = statistics.median(times) * 1000
            p90 = times[int(len(times) * 0.9)] * 1000
            print(f"latency of one item through 3 stages: p50 {p50:.2f} ms, p90 {p90:.2f} ms "
                  f"({len(times)} items, one at a time)")  # fmt: skip


if __name__ == "__main__":
    main()
