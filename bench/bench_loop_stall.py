"""How long a daemon's event loop is held at a time (issue 19, item 7: no stall past ~100 ms).

Real daemons started with ``HANDOFFD_LOOP_STALL_LOG_MS`` low, so each stall of the loop is logged
with its length (``handoffd.daemon.loop_lag``); per case the largest stall logged while it ran is
printed, with the case's wall time. Cases:

- ``submit``: a DAG of N independent tasks (default 200,000) submitted to one daemon (up in
  pieces), until RunAccepted; then cancelled (``--gap`` seconds later).
- ``value``: a task on daemon B makes a value of V MiB (default 600); a task pinned to daemon A
  takes it as input, so it moves between the two daemons.
- ``closures``: F functions (default 20) each with a C MiB closure (default 10), run on one
  daemon.

    .venv/bin/python bench/bench_loop_stall.py [--cases submit,value,closures] [--tasks 200000]
        [--value-mib 600] [--functions 20] [--closure-mib 10]
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Callable

import handoffd
from handoffd.testing import Daemon, DaemonCluster, wait_for

_STALL = re.compile(r"event loop held for (\d+) ms")


def max_stall(daemons: list[Daemon], since: list[int]) -> float:
    worst = 0.0
    for d, start in zip(daemons, since, strict=True):
        for found in _STALL.finditer(d.log()[start:]):
            worst = max(worst, float(found.group(1)))
    return worst


def measure(daemons: list[Daemon], case: Callable[[], None]) -> tuple[float, float]:
    since = [len(d.log()) for d in daemons]
    start = time.perf_counter()
    case()
    took = time.perf_counter() - start
    time.sleep(0.3)  # the last stall is logged when the loop is free again
    return max_stall(daemons, since), took


def submit_case(client: handoffd.Client, n: int, gap: float) -> Callable[[], None]:
    dag = handoffd.DAG()
    for i in range(n):
        dag.add_function(handoffd.Function(id=f"t{i}", code=abs, extra_args=[-i]))

    def case() -> None:
        run = client.submit(dag)
        time.sleep(gap)  # apart, the intake's and the cancel's stalls show apart in the log
        run.cancel()

    return case


def make_value(mib: int) -> bytes:
    return os.urandom(1 << 20) * mib


def value_len(value: bytes) -> int:
    return len(value)


def value_case(client: handoffd.Client, mib: int, a: str, b: str) -> Callable[[], None]:
    def case() -> None:
        dag = handoffd.DAG()
        dag.add_function(handoffd.Function(id="make", code=make_value, extra_args=[mib], node=b))
        dag.add_function(handoffd.Function(id="use", code=value_len, args=["make"], node=a))
        run = client.submit(dag)
        run.wait(timeout=600)
        assert run.result("use") == mib << 20

    return case


def closures_case(client: handoffd.Client, count: int, mib: int) -> Callable[[], None]:
    def case() -> None:
        dag = handoffd.DAG()
        for i in range(count):
            blob = os.urandom(mib << 20)

            def size(blob: bytes = blob) -> int:
                return len(blob)

            dag.add_function(handoffd.Function(id=f"c{i}", code=size))
        run = client.submit(dag)
        run.wait(timeout=600)
        assert all(run.result(f"c{i}") == mib << 20 for i in range(count))

    return case


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="submit,value,closures")
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--value-mib", type=int, default=600)
    parser.add_argument("--functions", type=int, default=20)
    parser.add_argument("--closure-mib", type=int, default=10)
    parser.add_argument("--gap", type=float, default=0.0, help="seconds from accepted to cancel")
    args = parser.parse_args()
    cases = args.cases.split(",")
    with DaemonCluster(env={"HANDOFFD_LOOP_STALL_LOG_MS": "20"}) as cluster:
        a = cluster.start(cpu=2, memory=8000)
        daemons = [a]
        if "value" in cases:
            b = cluster.start(cpu=2, memory=8000, seeds=[a.address])
            daemons.append(b)
        with handoffd.connect(a.address, timeout=600) as client:
            if len(daemons) > 1:
                wait_for(lambda: len(client.nodes()) == 2, timeout=30)
            for name in cases:
                if name == "submit":
                    case, label = (
                        submit_case(client, args.tasks, args.gap),
                        f"submit {args.tasks} tasks",
                    )
                elif name == "value":
                    case = value_case(client, args.value_mib, a.name, daemons[1].name)
                    label = f"value {args.value_mib} MiB between 2 daemons"
                else:
                    case = closures_case(client, args.functions, args.closure_mib)
                    label = f"{args.functions} closures x {args.closure_mib} MiB"
                stall, took = measure(daemons, case)
                print(f"{label}: max loop stall {stall:.0f} ms, took {took:.1f} s", flush=True)


if __name__ == "__main__":
    main()
