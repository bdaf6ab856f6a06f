"""The set-up the takeover tests on real daemons share: three daemons joined, and a run of slow
tasks submitted to the first, under way (``test_runs_owner_changing``,
``test_status_owner_changing``, ``test_readers_two_takeovers``)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import cloudpickle

import handoffd
from handoffd.testing import wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def slow_square(i: int) -> int:
    """A task of a quarter of a second: a run of a few hundred is under way for a while."""
    time.sleep(0.25)
    return i * i


def released_square(i: int, release: str) -> int:
    """``slow_square`` until the file ``release`` exists, then at once: a test that made its last
    fault releases the run's remaining tasks, whose quarter of a second each (tens of seconds on
    the survivors' few cpus) proves nothing more than the results they return."""
    deadline = time.monotonic() + 0.25
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    return i * i


def three_daemons(daemons: Any) -> tuple[Any, list[Any]]:
    """Three daemons of 2 cpu each, all ALIVE in every one's view: the first, and the two seeded
    with it. Started side by side (one start waited for before the next cost ~1 s of
    interpreter start each on a loaded machine); ``joined`` waits for each one's view."""
    a = daemons.start(cpu=2, memory=2000, wait=False)
    rest = [daemons.start(cpu=2, memory=2000, seeds=[a.address], wait=False) for _ in range(2)]
    daemons.joined(a, *rest)
    return a, rest


def submit_under_way(
    address: str, code: Callable[..., Any], tasks: int, done: int, *args: Any
) -> tuple[Any, dict[str, int]]:
    """Submit ``tasks`` tasks ``code(i, *args)`` through ``address`` and wait for ``done`` of them
    to end: the run and its counts then. (``code`` is the test module's, pickled by value there.)"""
    with handoffd.connect(address) as client:
        dag = handoffd.DAG()
        for i in range(tasks):
            dag.add_function(handoffd.Function(id=f"t{i}", code=code, extra_args=[i, *args]))
        run = client.submit(dag)
        wait_for(lambda: run.status().counts.get("DONE", 0) >= done, timeout=60, what="progress")
        return run, dict(run.status().counts)
