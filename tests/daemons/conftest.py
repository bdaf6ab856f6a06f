"""Fixtures for real daemons: every daemon a test starts is killed by PID, even when it fails."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def daemons() -> Iterator[Any]:
    """A DaemonCluster; its daemons' logs go to the captured teardown output, which pytest shows
    only for a test that failed."""
    from handoffd.testing import DaemonCluster

    cluster = DaemonCluster()
    try:
        yield cluster
    finally:
        cluster.close()
        print(cluster.logs())


@pytest.fixture
def pair(daemons: Any) -> tuple[Any, Any]:
    """Two real daemons with 2 cpu each, the second seeded with the first, both ALIVE."""
    import handoffd
    from handoffd.testing import wait_for

    a = daemons.start(cpu=2, memory=2000)
    b = daemons.start(cpu=2, memory=2000, seeds=[a.address])
    with handoffd.connect(a.address) as client:
        wait_for(
            lambda: [n.status for n in client.nodes().values()] == ["ALIVE", "ALIVE"],
            timeout=30,
            what="two daemons joined",
        )
    return a, b


@contextlib.contextmanager
def spawned_worker(*extra: Any, live: float = 0.0) -> Iterator[tuple[Any, Any]]:
    """(process, the parent's end of its pipe) of a worker started as a WorkerPool starts one;
    ``extra``: ``_process.main``'s arguments after its name tuple (e.g. the cancel count);
    ``live``: its live-output interval (0: output kept with the outcome)."""
    from handoffd.worker import _process

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=True)
    proc = ctx.Process(
        target=_process.main, args=(child, None, ("t", os.getpid(), "", live), *extra), daemon=True
    )
    proc.start()
    child.close()
    try:
        assert parent.poll(30) and parent.recv_bytes() == _process.READY
        yield proc, parent
    finally:
        parent.close()
        if proc.pid is not None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.join(10)


@pytest.fixture
def spawn_worker() -> Any:
    """``spawned_worker``, for a test that starts a worker with more arguments."""
    return spawned_worker


@pytest.fixture
def worker() -> Iterator[tuple[Any, Any]]:
    """(process, the parent's end of its pipe) of a worker started as a WorkerPool starts one."""
    with spawned_worker() as started:
        yield started
