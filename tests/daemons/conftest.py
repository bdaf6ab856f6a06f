"""Fixtures for real daemons: every daemon a test starts is killed by PID, even when it fails."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from shared_daemons import shared, start_pair


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
    return start_pair(daemons)


@pytest.fixture(scope="module")
def module_daemons() -> Iterator[Any]:
    """A DaemonCluster kept for one test module (on each xdist worker that runs its tests), for
    daemons shared by tests that neither kill, stop nor reconfigure them (``shared``)."""
    from handoffd.testing import DaemonCluster

    cluster = DaemonCluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def shared_pair(module_daemons: Any) -> Iterator[tuple[Any, Any]]:
    """``pair``'s two daemons (2 cpu each), shared by a module's tests (``shared``): for tests
    that neither kill, stop nor reconfigure them and end every run they start."""
    with shared(module_daemons, 2, 2000) as both:
        yield both


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
