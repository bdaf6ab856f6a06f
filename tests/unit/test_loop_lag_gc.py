"""A collection as long as a logged stall is logged with its generation and thread (it holds the
GIL, so it stalls the loop from whichever thread runs it), and closing the watcher stops that."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading

import pytest

from handoffd.daemon.loop_lag import LoopLag


def test_collections_are_logged_from_any_thread(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        lag = LoopLag(asyncio.get_running_loop(), log_ms=0.0)
        try:
            gc.collect(1)
            worker = threading.Thread(target=gc.collect, name="collector-test")
            worker.start()
            worker.join()
        finally:
            lag.close()
        gc.collect()  # after close: not logged

    with caplog.at_level(logging.WARNING, logger="handoffd.loop"):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if "garbage collection" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "generation 1" in lines[0] and "thread MainThread" in lines[0]
    assert "generation 2" in lines[1] and "thread collector-test" in lines[1]
