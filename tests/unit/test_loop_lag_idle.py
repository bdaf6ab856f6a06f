"""The lag monitor's tick stops while the process is idle (``loop_lag``: an idle daemon woke ~100
times a second for it) and the loop's own waits are watched instead: a stall while idle is still
caught and logged, work brings the tick back, and closing leaves the loop's selector as it was.
CPU time and lower bounds of wall time are asserted, never an upper bound of wall time."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from handoffd.daemon import loop_lag
from handoffd.daemon.loop_lag import LoopLag
from handoffd.testing import async_wait_for


def burn(ms: float) -> None:
    """Use ``ms`` of this thread's CPU (however long that takes on a loaded machine)."""
    start = time.thread_time()
    while time.thread_time() - start < ms / 1000.0:
        pass


async def until(check: Any, what: str) -> None:
    """Wait (awaiting, so the loop turns) until ``check()``."""
    await async_wait_for(check, timeout=60.0, interval=0.02, what=what)


def test_a_quiet_loop_stops_ticking_and_work_brings_the_tick_back() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        selector = loop._selector  # type: ignore[attr-defined]
        lag = LoopLag(loop, log_ms=1000.0)
        try:
            assert not lag.idle and lag._handle is not None
            await until(lambda: lag.idle, "idle")
            assert lag._handle is None and "select" in vars(selector)  # no tick: waits watched
            stop = threading.Event()

            def spin() -> None:  # another thread's work makes the process busy
                while not stop.is_set():
                    burn(5.0)

            spinner = threading.Thread(target=spin, name="spinner")
            spinner.start()
            try:
                await until(lambda: not lag.idle, "ticking again while another thread works")
                assert lag._handle is not None and "select" not in vars(selector)
            finally:
                stop.set()
                await loop.run_in_executor(None, spinner.join)
            await until(lambda: lag.idle, "idle again")
            assert lag.idle_spells >= 2
        finally:
            lag.close()
        assert "select" not in vars(selector) and lag._handle is None

    asyncio.run(main())


def test_a_stall_while_idle_is_logged_and_the_tick_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        lag = LoopLag(loop, log_ms=100.0, detail=True)
        try:
            await until(lambda: lag.idle, "idle")
            loop.call_soon(burn, 150.0)  # one turn's callback holds the loop
            await asyncio.sleep(0)
            await until(lambda: not lag.idle, "ticking again after the stall")
        finally:
            lag.close()
        assert lag.stalls >= 1 and lag.max_ms >= 150.0

    with caplog.at_level(logging.WARNING, logger="handoffd.loop"):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if "event loop held" in r.getMessage()]
    assert lines and "loop thread used" in lines[0], lines
    held = int(lines[0].split("held for ")[1].split(" ms")[0])
    used = int(lines[0].split(" loop thread used ")[1].split(" ms")[0])
    assert held >= 150 and used >= 145, lines


class _SlowSelector:
    """Comes back from each wait ``extra_s`` past its time-out (as a loop waiting for the GIL)."""

    def __init__(self, extra_s: float) -> None:
        self.extra_s = extra_s

    def select(self, timeout: float | None = None) -> list[Any]:
        time.sleep((timeout or 0.0) + self.extra_s)
        return []


class _FakeLoop:
    def __init__(self, extra_s: float) -> None:
        self._selector = _SlowSelector(extra_s)
        self.timers: list[float] = []

    def call_later(self, delay: float, callback: Any) -> _Timer:
        self.timers.append(delay)
        return _Timer()


class _Timer:
    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def test_a_wait_back_late_while_idle_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    loop = _FakeLoop(extra_s=0.15)
    lag = LoopLag(loop, log_ms=100.0)  # type: ignore[arg-type]
    try:
        lag._watch_waits(time.monotonic())
        with caplog.at_level(logging.WARNING, logger="handoffd.loop"):
            assert loop._selector.select(0.001) == []
        assert lag.idle and lag.stalls == 1 and lag.max_ms >= 150.0
        assert any("event loop held" in r.getMessage() for r in caplog.records)
    finally:
        lag.close()
    assert "select" not in vars(loop._selector)


def test_a_busy_turn_shortens_the_wait_to_the_ticks_period() -> None:
    """Waking from idle, the tick is due in ``PERIOD_S``: the turn's wait may not outlast it
    (else the tick would read as late by the rest of a long time-out)."""
    waits: list[float | None] = []

    class Recording:
        def select(self, timeout: float | None = None) -> list[Any]:
            waits.append(timeout)
            return []

    loop = _FakeLoop(extra_s=0.0)
    loop._selector = Recording()  # type: ignore[assignment]
    lag = LoopLag(loop, log_ms=1000.0)  # type: ignore[arg-type]
    try:
        lag._watch_waits(time.monotonic())
        burn(loop_lag.BUSY_HOLD_S * 1000.0 * 2)  # this turn holds the loop
        loop._selector.select(30.0)
        assert not lag.idle and waits == [loop_lag.PERIOD_S]
        assert loop.timers[-1] == loop_lag.PERIOD_S
    finally:
        lag.close()
