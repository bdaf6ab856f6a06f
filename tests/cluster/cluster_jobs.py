"""Functions the cluster tests run as tasks. Shipped by value (registered below), so a worker
needs no copy of the tests directory on its path."""

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
