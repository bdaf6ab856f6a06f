"""Lazy serialization hooks: what a hooked edge costs when the scheduler puts the consumer on the
producer's node (no hook should run) and when it puts it on the other node (one serialize, one
deserialize). In-process cluster of 2 nodes (cpu 2 and cpu 1; the 2-cpu consumer fits only the
first), a producer of --mb MB of compressible text, zlib hooks that count their calls in a file.

Prints one JSON line per run: the build's handoffd path, the case, seconds per execute (median of
--repeat) and the hook calls per execute. Run it with two builds alternately to compare, e.g.

    for i in 1 2 3; do .venv/bin/python bench/bench_lazy_hooks.py; \
        /work/main/.venv/bin/python bench/bench_lazy_hooks.py; done
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
import zlib

import cloudpickle

import handoffd
from handoffd import Argument, Function
from handoffd.testing import ThreadedCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def make_text(mb):
    line = "2026-12-02 GET /api/items/17 200 0.004\n"
    return line * (mb * 1024 * 1024 // len(line))


def count_lines(text):
    return text.count("\n")


def hooks(calls):
    def note(what):
        with open(calls, "a") as f:
            f.write(what + "\n")

    def pack(value):
        note("serialize")
        return zlib.compress(pickle.dumps(value), 1)

    def unpack(data):
        note("deserialize")
        return pickle.loads(zlib.decompress(data))

    return pack, unpack


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    calls = os.path.join(tempfile.mkdtemp(), "calls")
    pack, unpack = hooks(calls)
    with ThreadedCluster([{"cpu": 2, "memory": 8000}, {"cpu": 1, "memory": 8000}]) as cluster:
        first, second = cluster.names()
        with handoffd.connect(cluster.address, timeout=60) as client:
            warm = handoffd.DAG()  # start both nodes' workers before timing anything
            for i, node in enumerate((first, second, first)):
                warm.add_function(
                    Function(id=f"w{i}", code=count_lines, extra_args=["x"], node=node)
                )
            client.execute(warm)
            for case, producer_node in (("same node", first), ("other node", second)):
                dag = handoffd.DAG()
                dag.add_function(
                    Function(id="p", code=make_text, extra_args=[args.mb], node=producer_node)
                )
                dag.add_function(
                    Function(id="c", code=count_lines, cost={"cpu": 2},
                             args=[Argument("p", serialize=pack, deserialize=unpack)])
                )  # fmt: skip
                times = []
                for _ in range(args.repeat):
                    if os.path.exists(calls):
                        os.remove(calls)
                    start = time.perf_counter()
                    try:
                        client.execute(dag, outputs=["c"])
                    except handoffd.HandoffError as exc:  # e.g. a build that cannot place it
                        print(json.dumps({"case": case, "error": f"{type(exc).__name__}: {exc}"}))
                        break
                    times.append(time.perf_counter() - start)
                if not times:
                    continue
                with open(calls) if os.path.exists(calls) else open(os.devnull) as f:
                    made = f.read().split()
                print(json.dumps({
                    "build": os.path.dirname(os.path.dirname(handoffd.__file__)),
                    "case": case,
                    "seconds_median": round(statistics.median(times), 3),
                    "hook_calls_last_run": made,
                }))  # fmt: skip


if __name__ == "__main__":
    main()
