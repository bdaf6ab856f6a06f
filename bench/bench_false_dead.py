"""False DEAD verdicts under load (issue 19): probes answered on the event loop (before) against
probes answered by the probe responder thread (after), on the same workload.

Per mode: 3 real daemons on loopback (``--cpu 2`` each, ``lan()`` membership); ``--hogs`` busy-loop
processes (default 4 per core) saturate the machine for ``--seconds`` (default 60) while clients
keep submitting runs through the first daemon: a ``--tasks``-task layered DAG of 2 ms tasks (a big
submission stalls the owner's loop) and keep going until the hogs stop. No daemon is ever killed, so
every DEAD verdict is false. Counted from the daemons' logs: ALIVE -> SUSPECT (suspicions),
SUSPECT -> ALIVE (refuted in time), SUSPECT -> DEAD (false deaths), and the runs that finished
with the right results.

    .venv/bin/python bench/bench_false_dead.py [--seconds 60] [--hogs N] [--tasks 20000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import time
from typing import Any

import handoffd
from handoffd.testing import DaemonCluster, layered_dag, layered_expected, wait_for


def hog(until: float) -> None:
    x = 0
    while time.time() < until:
        x += 1


def one_mode(thread: bool, seconds: float, hogs: int, tasks: int) -> dict[str, Any]:
    width = 200
    layers = max(1, tasks // width)
    env = {"HANDOFFD_PROBE_THREAD": "1" if thread else "0"}
    with DaemonCluster(env=env) as cluster:
        first = cluster.start(cpu=2, memory=2000)
        others = [cluster.start(cpu=2, memory=2000, seeds=[first.address]) for _ in range(2)]
        daemons = [first, *others]
        runs = good = 0
        with handoffd.connect(first.address, timeout=30) as client:
            wait_for(
                lambda: sum(n.status == "ALIVE" for n in client.nodes().values()) == 3, 60, 0.1
            )
            until = time.time() + seconds
            ctx = multiprocessing.get_context("fork")
            procs = [ctx.Process(target=hog, args=(until,), daemon=True) for _ in range(hogs)]
            for p in procs:
                p.start()
            try:
                while time.time() < until:
                    dag = layered_dag(layers, width, 0.002)
                    try:
                        results = client.execute(dag, timeout=max(60.0, seconds * 3))
                    except handoffd.HandoffError as exc:
                        print(f"  run failed: {exc}", flush=True)
                        runs += 1
                        continue
                    runs += 1
                    good += results == layered_expected(layers, width)
            finally:
                for p in procs:
                    p.join(seconds + 30)
        logs = "\n".join(d.log() for d in daemons)
        alive = all(d.alive() for d in daemons)
    return {
        "suspect": len(re.findall(r"member \S+ ALIVE -> SUSPECT", logs)),
        "refuted": len(re.findall(r"member \S+ SUSPECT -> ALIVE", logs)),
        "dead": len(re.findall(r"member \S+ (?:SUSPECT|ALIVE) -> DEAD", logs)),
        "runs": runs,
        "right": good,
        "daemons_alive": alive,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--hogs", type=int, default=4 * (os.cpu_count() or 1))
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args()
    print(
        f"3 daemons x 2 cpu on {os.cpu_count()} cores, {args.hogs} hog processes for "
        f"{args.seconds:.0f} s, {args.tasks}-task DAGs of 2 ms tasks in a loop"
    )
    rows = []
    for label, thread in (("before: probes on the loop", False), ("after: probe thread", True)):
        out = one_mode(thread, args.seconds, args.hogs, args.tasks)
        rows.append((label, out))
        print(f"{label}: {out}", flush=True)
    print(f"\n{'mode':<30} {'suspicions':>10} {'refuted':>8} {'false DEAD':>10} {'runs ok':>8}")
    for label, out in rows:
        ok = f"{out['right']}/{out['runs']}"
        print(f"{label:<30} {out['suspect']:>10} {out['refuted']:>8} {out['dead']:>10} {ok:>8}")


if __name__ == "__main__":
    main()
