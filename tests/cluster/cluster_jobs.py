"""Functions the cluster tests run as tasks. Shipped by value (registered below), so a worker
needs no copy of the tests directory on its path. Also a check several takeover tests share."""

from __future__ import annotations

import sys

import cloudpickle

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def fail_until(path, succeed_after):
    with open(path, "a") as f:
        f.write("x\n")
    with open(path) as f:
        n = len(f.read().splitlines())
    if n <= succeed_after:
        raise RuntimeError(f"planned failure {n}")
    return n


def timed_sleep(path, task_id, seconds, value):
    """Sleep, then note this execution (task id, start, end in wall time) in ``path``."""
    import time

    start = time.time()
    time.sleep(seconds)
    with open(path, "a") as f:
        f.write(f"{task_id} {start} {time.time()}\n")
    return value


def standbys_hold(cluster, run_id):
    """Whether every node but the first (the owner) holds a replica of ``run_id``."""

    def check():
        return all(run_id in n.replication.standby.replicas for n in cluster.nodes[1:])

    return bool(cluster.run(check))


def gated(path, value):
    """Wait (up to 120 s) until ``path`` exists, then return ``value``: a task that stays
    running until the test lets it end."""
    import os
    import time

    deadline = time.monotonic() + 120
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return value
