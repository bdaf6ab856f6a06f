"""Owner failover benchmark (issue 6): 3 real daemons on loopback (``--cpu 2`` each, ``lan()``
membership), a 2,000-task DAG of 5 ms tasks (20 layers x 100, two inputs per task).

Per repetition, on fresh clusters:
- clean: submit -> every result at the client;
- failure: the same, with kill -9 of the owner once 30 % of the tasks are DONE. ``takeover`` is the
  time from the kill to the new owner's first dispatch (wall clock logged by the new owner).

Prints the median of ``--repeat`` (default 5) and every sample. Goals: takeover < 2 s, failure run
<= 1.3x the clean run.

    .venv/bin/python bench/bench_failover.py [--repeat N]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

import handoffd
from handoffd.testing import DaemonCluster, layered_dag, layered_expected, wait_for

LAYERS, WIDTH, SLEEP = 20, 100, 0.005


def build_dag() -> handoffd.DAG:
    return layered_dag(LAYERS, WIDTH, SLEEP)


def expected() -> dict[str, int]:
    return layered_expected(LAYERS, WIDTH)


_FIRST_DISPATCH = re.compile(r"took over at term \d+ in ([\d.]+) s .* at wall ([\d.]+)")


def one_run(kill: bool) -> dict[str, float]:
    with DaemonCluster() as cluster:
        first = cluster.start(cpu=2, memory=2000)
        daemons = [first] + [
            cluster.start(cpu=2, memory=2000, seeds=[first.address]) for _ in range(2)
        ]
        with handoffd.connect(first.address, timeout=5) as client:
            wait_for(
                lambda: sum(n.status == "ALIVE" for n in client.nodes().values()) == 3, 30, 0.1
            )
            dag = build_dag()
            start = time.monotonic()
            run = client.submit(dag)
            killed_at = 0.0
            if kill:
                wait_for(lambda: run.status().counts.get("DONE", 0) >= 600, 120, 0.02)
                killed_at = time.time()
                first.kill()
            run.wait(timeout=120)
            results = run.results()
            total = time.monotonic() - start
        assert results == expected(), "wrong results"
        out = {"total": total}
        if kill:
            for daemon in daemons[1:]:
                found = _FIRST_DISPATCH.search(daemon.log())
                if found:
                    out["takeover"] = float(found.group(2)) - killed_at
                    out["reconcile"] = float(found.group(1))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    clean: list[float] = []
    failed: list[float] = []
    takeover: list[float] = []
    reconcile: list[float] = []
    for i in range(args.repeat):
        clean.append(one_run(False)["total"])
        sample = one_run(True)
        failed.append(sample["total"])
        takeover.append(sample.get("takeover", float("nan")))
        reconcile.append(sample.get("reconcile", float("nan")))
        print(
            f"rep {i + 1}: clean {clean[-1]:.2f} s, failure {failed[-1]:.2f} s, "
            f"takeover {takeover[-1]:.3f} s (reconciliation {reconcile[-1]:.3f} s)",
            flush=True,
        )
    med = statistics.median
    print(f"\n2,000 x 5 ms DAG, 3 daemons x 2 cpu, lan() membership; median of {args.repeat}")
    print(f"{'metric':<44} {'median':>9}")
    print(f"{'kill -9 owner -> new owner first dispatch':<44} {med(takeover):>8.3f}s")
    print(f"{'  of which reconciliation':<44} {med(reconcile):>8.3f}s")
    print(f"{'total run time, no failure':<44} {med(clean):>8.2f}s")
    print(f"{'total run time, owner killed at 30 %':<44} {med(failed):>8.2f}s")
    print(f"{'slowdown (failure / clean)':<44} {med(failed) / med(clean):>8.2f}x")


if __name__ == "__main__":
    main()
