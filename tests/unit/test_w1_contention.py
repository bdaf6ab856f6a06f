"""``bench/w1_contention.py``'s reading of ``perf script`` (the loop thread's time off its CPU by
cause): the figures in docs/performance.md's section on W1's contention come from it."""

from __future__ import annotations

import importlib.util
import os

import pytest

pytestmark = pytest.mark.timeout(30)

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "..", "..", "bench", "w1_contention.py")


def bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("w1_contention", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def switch(t: float, prev: int, state: str, nxt: int, who: str = "python") -> str:
    return (
        f"{who:>16s} {prev:5d} {t:.6f}:     sched:sched_switch: prev_comm={who} prev_pid={prev} "
        f"prev_prio=120 prev_state={state} ==> next_comm=x next_pid={nxt} next_prio=120"
    )


def wakeup(t: float, waker: int, target: int) -> str:
    return (
        f"          python {waker:5d} {t:.6f}:     sched:sched_wakeup: comm=python "
        f"pid={target} prio=120 target_cpu=001 ffffffff813b4585 ttwu_do_activate"
    )


LOOP, UPLOAD, WORKER, CLIENT = 100, 101, 200, 300
TEXT = "\n".join(
    [
        switch(1.000, WORKER, "R", LOOP),  # the loop gets its CPU
        switch(1.010, LOOP, "S", WORKER),  # ... and waits for the GIL
        "\tffffffff82258a08 __schedule",
        "\tffffffff8144f356 futex_do_wait",
        "",
        wakeup(1.012, UPLOAD, LOOP),  # the upload thread lets go of it
        switch(1.013, WORKER, "R", LOOP),
        switch(1.020, LOOP, "R", WORKER),  # preempted by the worker
        "\tffffffff82258a08 __schedule",
        "",
        switch(1.025, WORKER, "S", LOOP),
        switch(1.030, LOOP, "S", CLIENT),  # asleep in epoll
        "\tffffffff82258a08 __schedule",
        "\tffffffff81753b58 do_epoll_wait",
        "",
        wakeup(1.040, CLIENT, LOOP),
        switch(1.040, CLIENT, "S", LOOP),
        switch(1.045, LOOP, "S", CLIENT),
        "\tffffffff81753b58 do_epoll_wait",
        ":-1    -1 1.046000:     sched:sched_switch: prev_comm=x prev_pid=5 prev_prio=1",
    ]
)


def test_the_loops_time_off_its_cpu_by_cause_and_by_whom() -> None:
    parts = {LOOP: "d0 loop", UPLOAD: "d0 upload", WORKER: "d0 workers", CLIENT: "client"}
    (got,) = bench().loop_times(TEXT, LOOP, [(1.0, 1.05)], parts, also=(CLIENT,))
    assert got["asleep: futex"] == pytest.approx(2.0)
    assert got["runnable, waiting (after a wake-up)"] == pytest.approx(1.0)
    assert got["runnable, waiting (preempted)"] == pytest.approx(5.0)
    assert got["asleep: select"] == pytest.approx(10.0)
    assert got["on its CPU"] == pytest.approx(10.0 + 7.0 + 5.0 + 5.0)
    assert got["client on a CPU"] == pytest.approx(10.0)  # 1.030 -> 1.040
    assert got["n futex: woken by d0 upload"] == 1
    assert got["n select: woken by client"] == 1
    assert got["n preempted by d0 workers"] == 1
    assert got["first d0 upload"] == pytest.approx(12.0)
    assert got["last client"] == pytest.approx(10.0)
    # by 10 ms from the start: the futex wait and its wake-up in the second bin, the preemption
    # in the third; by 10 ms before the end (1.05): the epoll sleep (1.030-1.040) in the second
    assert got["+1 asleep: futex"] == pytest.approx(2.0)
    assert got["+1 runnable, waiting"] == pytest.approx(1.0)
    assert got["+2 runnable, waiting"] == pytest.approx(5.0)
    assert got["-1 asleep: select"] == pytest.approx(10.0)
    assert "-2 asleep: select" not in got and "-0 asleep: select" not in got
    assert "+0 asleep: futex" not in got


def test_a_window_takes_only_its_share_of_an_interval() -> None:
    (first, second) = bench().loop_times(TEXT, LOOP, [(1.0, 1.035), (1.035, 1.05)], {})
    assert first["asleep: select"] == pytest.approx(5.0)
    assert second["asleep: select"] == pytest.approx(5.0)
    assert "n select: woken by python" not in first
    assert second["n select: woken by python"] == 1
