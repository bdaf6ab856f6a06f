"""How long a daemon's event loop is held at a time (issue 19, item 7: no stall past ~100 ms).

Real daemons started with ``HANDOFFD_LOOP_STALL_LOG_MS`` low, so each stall of the loop is logged
with its length (``handoffd.daemon.loop_lag``); per case the largest stall logged while it ran is
printed, with the case's wall time. Cases:

- ``submit``: a DAG of N independent tasks (default 200,000) submitted to one daemon (up in
  pieces), until RunAccepted and ``--gap`` seconds more; then (a second figure) cancelled, until
  the run says CANCELLED. ``chain``: the same with each task taking the previous one's result.
  ``--peers K`` starts K more daemons (the run's standbys).
- ``value``: a task on daemon B makes a value of V MiB (default 600); a task pinned to daemon A
  takes it as input, so it moves between the two daemons.
- ``closures``: F functions (default 20) each with a C MiB closure (default 10), run on one
  daemon.

    .venv/bin/python bench/bench_loop_stall.py [--cases submit,chain,value,closures]
        [--tasks 200000] [--peers 0] [--gap 2] [--value-mib 600] [--functions 20]
        [--closure-mib 10]
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


def max_stalls(daemons: list[Daemon], since: list[int]) -> list[float]:
    """The largest stall each daemon logged since ``since`` (0 if none)."""
    worst = []
    for d, start in zip(daemons, since, strict=True):
        found = [float(m.group(1)) for m in _STALL.finditer(d.log()[start:])]
        worst.append(max(found, default=0.0))
    return worst


def measure(daemons: list[Daemon], case: Callable[[], None]) -> tuple[list[float], float]:
    since = [len(d.log()) for d in daemons]
    start = time.perf_counter()
    case()
    took = time.perf_counter() - start
    time.sleep(0.3)  # the last stall is logged when the loop is free again
    return max_stalls(daemons, since), took


def stalls_text(stalls: list[float]) -> str:
    """The largest, then per daemon (the first is the one the client submits to)."""
    each = " / ".join(f"{s:.0f}" for s in stalls)
    return f"max loop stall {max(stalls):.0f} ms (per daemon {each})"


def submit_case(
    client: handoffd.Client, n: int, gap: float, chain: bool = False
) -> tuple[Callable[[], None], Callable[[], None]]:
    """(submit and wait ``gap`` s, cancel): measured apart, the intake's and the cancel's stalls
    show apart. ``chain``: each task takes the previous one's result."""
    dag = handoffd.DAG()
    for i in range(n):
        if chain and i:
            dag.add_function(handoffd.Function(id=f"t{i}", code=abs, args=[f"t{i - 1}"]))
        else:
            dag.add_function(handoffd.Function(id=f"t{i}", code=abs, extra_args=[-i]))
    runs: list[handoffd.Run] = []

    def submit() -> None:
        runs.append(client.submit(dag))
        time.sleep(gap)

    def cancel() -> None:
        runs[0].cancel()
        wait_for(lambda: runs[0].status().state == "CANCELLED", timeout=120)

    return submit, cancel


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
    parser.add_argument("--gap", type=float, default=2.0, help="seconds from accepted to cancel")
    parser.add_argument("--peers", type=int, default=0, help="more daemons (standbys) for submit")
    args = parser.parse_args()
    cases = args.cases.split(",")
    with DaemonCluster(env={"HANDOFFD_LOOP_STALL_LOG_MS": "20"}) as cluster:
        a = cluster.start(cpu=2, memory=8000)
        daemons = [a]
        peers = max(args.peers, 1 if "value" in cases else 0)
        for _ in range(peers):
            daemons.append(cluster.start(cpu=2, memory=8000, seeds=[a.address]))
        with handoffd.connect(a.address, timeout=600) as client:
            if len(daemons) > 1:
                wait_for(lambda: len(client.nodes()) == len(daemons), timeout=30)
            for name in cases:
                if name in ("submit", "chain"):
                    chain = name == "chain"
                    submit, cancel = submit_case(client, args.tasks, args.gap, chain)
                    label = f"{name} {args.tasks} tasks"
                    stalls, took = measure(daemons, submit)
                    print(f"{label}: {stalls_text(stalls)}, took {took:.1f} s", flush=True)
                    stalls, took = measure(daemons, cancel)
                    print(f"cancel it: {stalls_text(stalls)}, took {took:.1f} s", flush=True)
                    continue
                if name == "value":
                    case = value_case(client, args.value_mib, a.name, daemons[1].name)
                    label = f"value {args.value_mib} MiB between 2 daemons"
                else:
                    case = closures_case(client, args.functions, args.closure_mib)
                    label = f"{args.functions} closures x {args.closure_mib} MiB"
                stalls, took = measure(daemons, case)
                print(f"{label}: {stalls_text(stalls)}, took {took:.1f} s", flush=True)


if __name__ == "__main__":
    main()
