"""The pool's count of cancels sent a worker (``_cancels``) is memory the spawned worker shares:
what ``add`` writes is what the worker's ``seen()[0]`` reads, before and after it started."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from handoffd.worker import _cancels

pytestmark = pytest.mark.timeout(60)


def _echo(shared: _cancels.Shared, conn: Any) -> None:
    seen = shared.seen()
    conn.send(seen[0])
    while conn.recv():
        conn.send(seen[0])


@pytest.mark.skipif(_cancels.Count.create() is None, reason="no memfd_create here")
def test_what_the_pool_counts_is_what_the_spawned_worker_reads() -> None:
    count = _cancels.Count.create()
    assert count is not None
    count.add()
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_echo, args=(count.for_worker(), theirs), daemon=True)
    proc.start()
    try:
        assert ours.poll(30) and ours.recv() == 1  # counted before it started
        for expected in (2, 3, 4):
            count.add()
            ours.send(True)
            assert ours.poll(30) and ours.recv() == expected
        ours.send(False)
        proc.join(30)
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(10)
        count.close()
        ours.close()
        theirs.close()
