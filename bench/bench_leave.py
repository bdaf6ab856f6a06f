"""Graceful leave against kill -9 on the same run (issue 19).

3 real daemons on loopback (``--cpu 2`` each); a layered DAG (``--layers`` x ``--width`` tasks of
``--sleep`` s, two inputs each) submitted through the first. Per repetition, on fresh clusters:
- clean: nothing happens;
- leave: the third daemon gets SIGTERM (as ``handoffd stop``) once 30 % of the tasks are DONE;
- kill: the third daemon gets SIGKILL at the same point.
Printed per mode (median of ``--repeat``): the run's total time, how long the leaving daemon took
to exit after SIGTERM, the owner's "dispatch counted lost" lines, and the attempts beyond one per
task (re-executions, from the owner's run status history when available).

    .venv/bin/python bench/bench_leave.py [--repeat 3] [--layers 20] [--width 60] [--sleep 0.02]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import handoffd
from handoffd.testing import DaemonCluster, layered_dag, layered_expected, wait_for


def one_run(mode: str, layers: int, width: int, sleep: float) -> dict[str, Any]:
    with DaemonCluster() as cluster:
        first = cluster.start(cpu=2, memory=2000)
        daemons = [first] + [
            cluster.start(cpu=2, memory=2000, seeds=[first.address]) for _ in range(2)
        ]
        victim = daemons[2]
        out: dict[str, Any] = {"exit_s": float("nan")}
        with handoffd.connect(first.address, timeout=10) as client:
            wait_for(
                lambda: sum(n.status == "ALIVE" for n in client.nodes().values()) == 3, 30, 0.1
            )
            start = time.monotonic()
            run = client.submit(layered_dag(layers, width, sleep))
            if mode != "clean":
                target = int(0.3 * layers * width)
                wait_for(lambda: run.status().counts.get("DONE", 0) >= target, 120, 0.02)
                hit = time.monotonic()
                if mode == "leave":
                    victim.terminate(120)
                else:
                    victim.kill()
                out["exit_s"] = time.monotonic() - hit
            status = run.wait(timeout=300)
            results = run.results()
            out["total"] = time.monotonic() - start
        assert status.state == "DONE" and results == layered_expected(layers, width), status
        log = first.log()
        out["lost_lines"] = log.count("dispatch counted lost")
        out["leaving_heard"] = f"member {victim.name} is leaving" in log
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--width", type=int, default=60)
    parser.add_argument("--sleep", type=float, default=0.02)
    args = parser.parse_args()
    samples: dict[str, list[dict[str, Any]]] = {"clean": [], "leave": [], "kill": []}
    for i in range(args.repeat):
        for mode in samples:
            sample = one_run(mode, args.layers, args.width, args.sleep)
            samples[mode].append(sample)
            print(f"rep {i + 1} {mode}: {sample}", flush=True)
    med = statistics.median
    n = args.layers * args.width
    print(f"\n{n} tasks x {args.sleep * 1000:.0f} ms, 3 daemons x 2 cpu; median of {args.repeat}")
    print(f"{'mode':<8} {'run total':>10} {'victim exit':>12} {'lost lines':>11}")
    for mode, rows in samples.items():
        total = med(r["total"] for r in rows)
        exit_s = med(r["exit_s"] for r in rows)
        lost = med(r["lost_lines"] for r in rows)
        print(f"{mode:<8} {total:>9.2f}s {exit_s:>11.2f}s {lost:>11.0f}")


if __name__ == "__main__":
    main()
