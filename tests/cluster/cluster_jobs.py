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
