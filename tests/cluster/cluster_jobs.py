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


def timed_sleep(path, task_id, seconds, value, gate=None):
    """Sleep, then note this execution (task id, start, end in wall time) in ``path``. With
    ``gate``, it ends no sooner than that file exists (waiting for it at most 60 s)."""
    import os
    import time

    start = time.time()
    time.sleep(seconds)
    waited = time.monotonic() + 60.0
    while gate is not None and not os.path.exists(gate) and time.monotonic() < waited:
        time.sleep(0.01)
    with open(path, "a") as f:
        f.write(f"{task_id} {start} {time.time()}\n")
    return value


def standbys_hold(cluster, run_id):
    """Whether every node but the first (the owner) holds a replica of ``run_id``."""

    def check():
        return all(run_id in n.replication.standby.replicas for n in cluster.nodes[1:])

    return bool(cluster.run(check))


def gated_dag(gate, n):
    """A DAG of ``n`` tasks ``t0``.. that each return their index once ``gate`` exists (``gated``;
    the takeover tests hold a run's tasks running with it)."""
    import handoffd

    dag = handoffd.DAG()
    for i in range(n):
        dag.add_function(handoffd.Function(id=f"t{i}", code=gated, extra_args=[gate, i]))
    return dag


def gated_run(cluster, gate, n):
    """Submit ``gated_dag(gate, n)`` through node 0 of ``cluster`` (a ``ThreadedCluster``) and
    wait until both its standbys hold it: (run id, first standby, second standby)."""
    import handoffd
    from handoffd.testing import wait_for

    with handoffd.connect(cluster.url(0), timeout=30) as client:
        run_id = client.submit(gated_dag(gate, n)).id
    wait_for(lambda: standbys_hold(cluster, run_id), 30, what="replicas")
    first, second = cluster.run(lambda: cluster.nodes[0].replication.log.standbys(run_id))
    return run_id, first, second


def gated(path, value):
    """Wait (up to 120 s) until ``path`` exists, then return ``value``: a task that stays
    running until the test lets it end."""
    import os
    import time

    deadline = time.monotonic() + 120
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return value
