"""The loop thread's CPU time per loop iteration (``daemon.loop_cpu``) and where a stall's time
went (``loop_lag``'s detail): the load-independent figures of issue 19 item 7. CPU time is asserted
(a callback burning a known amount of it, one sleeping), never wall time."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time

import pytest

from handoffd.daemon import loop_cpu, loop_lag
from handoffd.daemon.loop_cpu import LoopCpu
from handoffd.daemon.loop_lag import LoopLag, thread_times


def burn(ms: float) -> None:
    """Use ``ms`` of this thread's CPU (however long that takes on a loaded machine)."""
    start = time.thread_time()
    while time.thread_time() - start < ms / 1000.0:
        pass


def test_off_unless_asked_for_and_nothing_wrapped() -> None:
    handle_run = asyncio.Handle._run  # type: ignore[attr-defined]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert LoopCpu.from_env(loop, {}) is None
        assert "_run_once" not in vars(loop)
        assert asyncio.Handle._run is handle_run  # type: ignore[attr-defined]

    asyncio.run(main())


def test_a_bad_value_is_logged_and_leaves_it_off(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert LoopCpu.from_env(loop, {"HANDOFFD_LOOP_CPU_LOG_MS": "lots"}) is None
        assert LoopCpu.from_env(loop, {"HANDOFFD_LOOP_CPU_LOG_MS": "-1"}) is None

    with caplog.at_level(logging.WARNING, logger="handoffd.loop"):
        asyncio.run(main())
    assert sum("HANDOFFD_LOOP_CPU_LOG_MS" in r.getMessage() for r in caplog.records) == 2


def test_the_costliest_iterations_are_kept_with_what_ran(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handle_run = asyncio.Handle._run  # type: ignore[attr-defined]
    probes: list[LoopCpu] = []

    async def sleeper() -> None:
        await asyncio.sleep(0)
        time.sleep(0.2)  # wall time, no CPU: not the loop's own work

    async def main() -> None:
        loop = asyncio.get_running_loop()
        probe = LoopCpu.from_env(loop, {"HANDOFFD_LOOP_CPU_LOG_MS": "25"})
        assert probe is not None
        probes.append(probe)
        loop.call_soon(burn, 40.0)
        await asyncio.sleep(0.01)
        await asyncio.create_task(sleeper())
        await asyncio.sleep(0.01)
        probe.close()
        assert "_run_once" not in vars(loop)

    with caplog.at_level(logging.INFO, logger="handoffd.loop"):
        asyncio.run(main())
    probe = probes[0]
    assert asyncio.Handle._run is handle_run  # type: ignore[attr-defined]
    kept = probe.largest()
    assert 1 <= len(kept) <= loop_cpu.KEEP and probe.iterations >= 3
    cpu_ms, _wall, count, top = kept[0]
    assert cpu_ms >= 40.0 and probe.max_ms == cpu_ms and count >= 1
    assert "burn" in top
    # The sleeper's iteration: 200 ms of wall time, next to no CPU.
    assert all("sleeper" not in t or c < 100.0 for c, _, _, t in kept)
    logged = [r.getMessage() for r in caplog.records if "loop iteration used" in r.getMessage()]
    assert len(logged) == 1 and "burn" in logged[0] and "in the kernel" in logged[0], logged


def test_a_stall_says_where_the_loop_threads_time_went(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        lag = LoopLag(loop, log_ms=20.0, detail=True)
        try:
            await asyncio.sleep(0.02)
            loop.call_soon(burn, 60.0)
            await asyncio.sleep(0.05)
        finally:
            lag.close()

    with caplog.at_level(logging.WARNING, logger="handoffd.loop"):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if "event loop held" in r.getMessage()]
    assert lines and all("of CPU, waited" in line and "slept" in line for line in lines), lines
    used = [int(line.split(" loop thread used ")[1].split(" ms")[0]) for line in lines]
    assert max(used) >= 55, lines


def test_thread_times_count_this_threads_cpu() -> None:
    before = thread_times()
    burn(20.0)
    after = thread_times()
    assert after[0] - before[0] >= 0.015 and after[1] >= before[1] >= 0.0
    fd = loop_lag._open_schedstat()  # kept open by the loop's thread, read at each tick
    try:
        again = thread_times(fd)
        burn(20.0)
        assert thread_times(fd)[0] - again[0] >= 0.015 and again[0] >= after[0]
    finally:
        if fd >= 0:
            os.close(fd)


def test_handoffd_start_wires_it() -> None:
    from handoffd.cli import daemon_run

    source = inspect.getsource(daemon_run._serve)
    assert "LoopCpu.from_env(loop)" in source and "detail=cpu is not None" in source


def test_a_stall_names_the_busiest_other_thread(caplog: pytest.LogCaptureFixture) -> None:
    """While the loop waited, another Python thread (the GIL's other taker) used CPU: the stall's
    line says which, its CPU and its wait for a CPU (a hold or the machine's load)."""
    import threading

    async def main() -> None:
        loop = asyncio.get_running_loop()
        lag = LoopLag(loop, log_ms=0.0, detail=True)
        burner = threading.Thread(target=burn, args=(150.0,), name="burner")
        try:
            burner.start()
            await loop.run_in_executor(None, burner.join)
            await asyncio.sleep(0.02)
        finally:
            lag.close()
        assert lag._others is not None and lag._others._files == {}  # closed

    with caplog.at_level(logging.WARNING, logger="handoffd.loop"):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if "event loop held" in r.getMessage()]
    named = [line for line in lines if "the busiest other thread, burner, used" in line]
    assert named, lines
    used = [int(line.split("burner, used ")[1].split(" ms")[0]) for line in named]
    assert sum(used) >= 100, named


def test_where_names_a_threads_innermost_frames() -> None:
    """A stall's line says where the GIL's holder let go (``loop_lag.where``): the thread's
    innermost frames, innermost first, with their lines."""
    import threading

    inside = threading.Event()
    release = threading.Event()

    def holder_inner() -> None:
        inside.set()
        release.wait(30)

    def holder_outer() -> None:
        holder_inner()

    thread = threading.Thread(target=holder_outer, name="holder")
    thread.start()
    try:
        assert inside.wait(30)
        text = loop_lag.where(thread.ident, depth=4)
    finally:
        release.set()
        thread.join(30)
    names = [part.split(" (")[0] for part in text.split(" < ")]
    assert names[2:4] == ["holder_inner", "holder_outer"], text  # (below: Event.wait)
    assert "test_loop_cpu.py:" in text
    assert loop_lag.where(None) == "(gone)"


def test_a_stall_says_where_the_busiest_thread_is(caplog: pytest.LogCaptureFixture) -> None:
    import threading

    async def main() -> None:
        loop = asyncio.get_running_loop()
        lag = LoopLag(loop, log_ms=0.0, detail=True)
        stop = threading.Event()

        def spin() -> None:  # Python bytecode: the loop gets the GIL every switch interval
            while not stop.is_set():
                burn(5.0)

        spinner = threading.Thread(target=spin, name="spinner")
        try:
            spinner.start()
            await asyncio.sleep(0.3)
        finally:
            stop.set()
            await loop.run_in_executor(None, spinner.join)
            lag.close()

    with caplog.at_level(logging.WARNING, logger="handoffd.loop"):
        asyncio.run(main())
    lines = [
        r.getMessage() for r in caplog.records if "busiest other thread, spinner" in r.getMessage()
    ]
    assert any("it is now at " in line and "spin (" in line for line in lines), lines
