"""A daemon's start to "listening on" and handoffctl's ``--help`` / ``nodes``, A/B between trees.

Each tree (a checkout with its compiled modules built in place, e.g. a copy under /tmp) is put
first on PYTHONPATH of every process started, and the trees take turns, round after round, so a
change of the machine's load falls on both. Per round and tree: one daemon started as
``DaemonCluster`` starts it (wall time to its "listening on" line, polled every 5 ms), then
``handoffctl --help`` and ``handoffctl nodes`` against it (wall, and the child's user+sys CPU).
Prints each round and the medians.

    python bench/start_time.py /tmp/ab/base /tmp/ab/new --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

_DAEMON = r"""
import os, sys, time
from handoffd.testing import DaemonCluster
cluster = DaemonCluster()
t = time.perf_counter()
d = cluster.start(wait=False)
while "listening on" not in d.log():
    if not d.alive():
        sys.exit("daemon exited:\n" + d.log())
    time.sleep(0.005)
ready = time.perf_counter() - t
print(ready, d.address, flush=True)
sys.stdin.readline()  # (kept until the parent ran handoffctl against it)
cluster.close()
"""


def _child(tree: str, args: list[str]) -> tuple[float, float, str]:
    env = dict(os.environ, PYTHONPATH=tree)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{args} in {tree} failed:\n{done.stdout}{done.stderr}")
    return wall, cpu, done.stdout


def one_round(tree: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=tree)
    daemon = subprocess.Popen(
        [sys.executable, "-c", _DAEMON],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert daemon.stdout is not None and daemon.stdin is not None
        ready, address = daemon.stdout.readline().split()
        ctl = [sys.executable, "-m", "handoffd.cli.ctl"]
        help_wall, help_cpu, _ = _child(tree, [*ctl, "--help"])
        nodes_wall, nodes_cpu, out = _child(tree, [*ctl, "--address", address, "nodes"])
        assert "ALIVE" in out, out
        daemon.stdin.write("\n")
        daemon.stdin.flush()
        daemon.wait(60)
    finally:
        daemon.kill()
    return {
        "ready": float(ready),
        "help_wall": help_wall,
        "help_cpu": help_cpu,
        "nodes_wall": nodes_wall,
        "nodes_cpu": nodes_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = {tree: [] for tree in opts.trees}
    for number in range(opts.rounds):
        for tree in opts.trees:
            row = one_round(tree)
            rows[tree].append(row)
            print(number, tree, json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
    print(f"load {os.getloadavg()[0]:.1f}; medians of {opts.rounds}:")
    for tree, got in rows.items():
        medians = {k: round(statistics.median(r[k] for r in got), 3) for k in got[0]}
        print(tree, json.dumps(medians))


if __name__ == "__main__":
    main()
