"""How long the daemon's event loop was held at a time (issue 19: no stall past ~100 ms).

A callback due every ``PERIOD_S`` notes how late it ran: the lateness is how long something else
held the loop. The largest since start is kept (``max_ms``, in the node's stats) and each stall
of ``HANDOFFD_LOOP_STALL_LOG_MS`` (default 100) or more is logged, so a stall shows in the
daemon's log with its length; ``bench/bench_loop_stall.py`` sets the threshold low to read the
largest stall of each case from the log. A collection of the cyclic garbage collector that long
is logged too (generation, objects collected, the thread that ran it): whichever thread allocates
runs it holding the GIL, so it stalls the loop from any thread, and the log says which it was.

``hand_over_sooner`` (called at the daemon's start) shortens the interpreter's switch interval:
while a thread works in Python (an upload's build, a takeover's rebuild, a big reply's encoding),
the loop, back from ``select`` and wanting the GIL, waits that interval before the thread is asked
to let go (CPython's 5 ms: each 10 ms tick ran ~5 ms late at the median, 1.3 ms at 1 ms).

The tick runs only while the process works. Each wake-up of an idle loop costs ~70 us of CPU on a
small VM, and the tick was most of an idle daemon's wake-ups; so when the process (all its
threads) used under ``IDLE_SHARE`` of a core over ``IDLE_WINDOW_S``, the tick stops and the loop's
own waits are watched instead: the selector's ``select`` is wrapped (idle only: a busy loop's
turns pay nothing), each wait's lateness past its time-out and each turn's callbacks (the time
from one wait to the next) are noted as the tick's lateness is, and the tick comes back as soon
as a turn holds the loop ``BUSY_HOLD_S`` or the process uses more than ``IDLE_SHARE`` of a core
(counted from ``IDLE_WINDOW_S``). What the idle watch cannot see is a wait for the GIL right
after a wake-up by I/O (when the socket became ready is unknown); a thread that could hold the
GIL that long makes the process busy first, and the tick sees the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("handoffd.loop")

PERIOD_S = 0.01

# The tick stops while the process used under IDLE_SHARE of a core over IDLE_WINDOW_S, and comes
# back when a turn of the loop holds it BUSY_HOLD_S or the process uses more (module comment).
IDLE_WINDOW_S = 0.1
IDLE_SHARE = 0.05
BUSY_HOLD_S = 0.002

# The daemon's switch interval (``sys.setswitchinterval``; CPython's default is 5 ms): how long a
# thread waiting for the GIL waits before asking its holder to let go. Overridden by
# ``HANDOFFD_SWITCH_INTERVAL_MS``.
SWITCH_INTERVAL_S = 0.001


def hand_over_sooner(environ: Mapping[str, str] | None = None) -> float:
    """Set this process's switch interval to ``SWITCH_INTERVAL_S`` (or the environment's
    ``HANDOFFD_SWITCH_INTERVAL_MS``); returns the interval set, in seconds. A bad value is
    logged and the default used: a typo never stops a daemon."""
    env = os.environ if environ is None else environ
    seconds = SWITCH_INTERVAL_S
    raw = env.get("HANDOFFD_SWITCH_INTERVAL_MS", "")
    if raw:
        try:
            wanted = float(raw) / 1000.0
        except ValueError:
            wanted = 0.0
        if 0.0 < wanted <= 1.0:
            seconds = wanted
        else:
            log.warning(
                "HANDOFFD_SWITCH_INTERVAL_MS=%r: not a number of milliseconds in (0, 1000]; "
                "using %g ms",
                raw,
                SWITCH_INTERVAL_S * 1000.0,
            )
    sys.setswitchinterval(seconds)
    return seconds


def thread_times(fd: int = -1) -> tuple[float, float]:
    """(CPU seconds, seconds runnable but waiting for a CPU) of the calling thread so far, from
    Linux's ``/proc/thread-self/schedstat`` (``fd``: that file opened by this thread, read again);
    (``time.thread_time()``, 0.0) where it is missing."""
    try:
        if fd >= 0:
            raw = os.pread(fd, 128, 0)
        else:
            with open("/proc/thread-self/schedstat", "rb") as f:
                raw = f.read()
        return _parsed(raw)
    except (OSError, ValueError):
        return time.thread_time(), 0.0


def _parsed(raw: bytes) -> tuple[float, float]:
    on_cpu, waiting = raw.split()[:2]
    return int(on_cpu) / 1e9, int(waiting) / 1e9


class OtherThreads:
    """The process's other Python threads (the GIL's other takers: an upload's, a takeover's),
    their schedstat read at each tick: while the loop slept waiting for the GIL, did the thread
    holding it run (its CPU: a long hold) or wait for a CPU itself (the machine's load)?"""

    def __init__(self) -> None:
        self._me = threading.get_native_id()
        self._files: dict[int, int] = {}  # native thread id -> its schedstat, open
        self._last: dict[int, tuple[float, float]] = {}

    def read(self) -> list[tuple[str, float, float, int | None]]:
        """(name, CPU ms, ms waiting for a CPU, ``threading`` ident) of each other Python thread
        since the last read (since its start for a thread new since)."""
        live = {
            t.native_id: (t.name, t.ident)
            for t in threading.enumerate()
            if t.native_id is not None and t.native_id != self._me
        }
        for tid in [tid for tid in self._files if tid not in live]:
            os.close(self._files.pop(tid))
            self._last.pop(tid, None)
        out = []
        for tid, (name, ident) in live.items():
            try:
                fd = self._files.get(tid)
                if fd is None:
                    fd = self._files[tid] = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY)
                now = _parsed(os.pread(fd, 128, 0))
            except (OSError, ValueError):  # (it ended meanwhile)
                continue
            before = self._last.get(tid, (0.0, 0.0))
            self._last[tid] = now
            cpu_ms, wait_ms = (now[0] - before[0]) * 1000.0, (now[1] - before[1]) * 1000.0
            out.append((name, cpu_ms, wait_ms, ident))
        return out

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()


def where(ident: int | None, depth: int = 3) -> str:
    """The innermost ``depth`` Python frames of thread ``ident``, innermost first. Read as the
    loop gets the GIL back, it is where the thread holding it let go: just after the C call (a
    dict's resize, a compiled loop) that held the GIL, the stall's cause."""
    frame = sys._current_frames().get(ident) if ident is not None else None
    if frame is None:
        return "(gone)"
    parts: list[str] = []
    while frame is not None and len(parts) < depth:
        code = frame.f_code
        name = code.co_filename.rpartition("handoffd/")[2] or code.co_filename
        parts.append(f"{code.co_name} ({name}:{frame.f_lineno})")
        frame = frame.f_back
    return " < ".join(parts)


def _open_schedstat() -> int:
    """This thread's ``/proc/thread-self/schedstat`` opened (-1 where missing)."""
    try:
        return os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    except OSError:
        return -1


class LoopLag:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, log_ms: float | None = None, detail: bool = False
    ) -> None:
        """``detail``: each stall logged says where the loop thread's time went meanwhile (its
        CPU, its wait for a CPU: ``thread_times``, read at every tick)."""
        if log_ms is None:
            log_ms = float(os.environ.get("HANDOFFD_LOOP_STALL_LOG_MS", "100"))
        self.log_ms = log_ms
        self.max_ms = 0.0
        self.stalls = 0  # how many reached log_ms
        self.idle = False  # the tick stopped, the loop's waits watched instead
        self.idle_spells = 0  # how many times the tick stopped
        self._loop = loop
        # (None: a loop without a selector to watch, e.g. another implementation: always ticks)
        self._selector: Any = getattr(loop, "_selector", None)
        if self._selector is not None and "select" in vars(self._selector):
            self._selector = None  # (someone else wraps it already)
        now = time.monotonic()
        self._due = now + PERIOD_S
        self._handle: asyncio.TimerHandle | None = loop.call_later(PERIOD_S, self._tick)
        self._window_at = now  # the idle test's window: its start, the process's CPU then
        self._window_cpu = time.process_time()
        self._back = now  # (idle) when the loop last came back from its wait
        self._gc_start = 0.0
        # (read at every tick: opened once, by the loop's thread, which constructs this)
        self._schedstat = _open_schedstat() if detail else -1
        self._times = thread_times(self._schedstat) if detail else None
        self._times_at = now
        self._others = OtherThreads() if detail else None
        if self._others is not None:
            self._others.read()
        gc.callbacks.append(self._collected)

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks``: times each collection (any thread), logs one of ``log_ms`` or more."""
        if phase == "start":
            self._gc_start = time.perf_counter()
            return
        took_ms = (time.perf_counter() - self._gc_start) * 1000.0
        if took_ms >= self.log_ms:
            log.warning(
                "garbage collection of generation %s took %.0f ms (%s objects freed, thread %s)",
                info.get("generation"),
                took_ms,
                info.get("collected"),
                threading.current_thread().name,
            )

    def _tick(self) -> None:
        now = time.monotonic()
        self._note(max(0.0, (now - self._due) * 1000.0), now)
        if self._selector is not None and now - self._window_at >= IDLE_WINDOW_S:
            cpu = time.process_time()
            quiet = cpu - self._window_cpu < IDLE_SHARE * (now - self._window_at)
            self._window_at, self._window_cpu = now, cpu
            if quiet:
                self._handle = None
                self._watch_waits(now)
                return
        self._due = now + PERIOD_S
        self._handle = self._loop.call_later(PERIOD_S, self._tick)

    def _note(self, late_ms: float, now: float) -> None:
        """The loop was held ``late_ms`` (a tick's lateness, an idle turn's or wait's)."""
        self.max_ms = max(self.max_ms, late_ms)
        if self._times is not None:  # (the period: since the last read)
            last, self._times = self._times, thread_times(self._schedstat)
            since_ms, self._times_at = (now - self._times_at) * 1000.0, now
            cpu_ms, wait_ms = ((b - a) * 1000.0 for a, b in zip(last, self._times, strict=True))
            asleep_ms = max(0.0, since_ms - cpu_ms - wait_ms)
            others = self._others.read() if self._others is not None else []
        if late_ms >= self.log_ms:
            self.stalls += 1
            if self._times is None:
                log.warning(
                    "event loop held for %.0f ms (max so far %.0f ms)", late_ms, self.max_ms
                )
            else:
                busiest = max(others, key=lambda o: o[1] + o[2], default=None)
                log.warning(
                    "event loop held for %.0f ms (max so far %.0f ms; since the last tick the "
                    "loop thread used %.0f ms of CPU, waited %.0f ms for a CPU and slept %.0f ms: "
                    "in select, for the GIL; %s)",
                    late_ms,
                    self.max_ms,
                    cpu_ms,
                    wait_ms,
                    asleep_ms,
                    "no other Python thread"
                    if busiest is None
                    else f"the busiest other thread, {busiest[0]}, used {busiest[1]:.0f} ms of "
                    f"CPU and waited {busiest[2]:.0f} ms for a CPU; it is now at {where(busiest[3])}",
                )

    def _watch_waits(self, now: float) -> None:
        """Stop ticking: wrap the loop's selector's ``select`` (this selector only) until the
        process works again."""
        self.idle = True
        self.idle_spells += 1
        self._back = now
        select = self._selector.select
        monotonic, process_time = time.monotonic, time.process_time

        def watched(timeout: float | None = None) -> Any:
            entered = monotonic()
            held_ms = (entered - self._back) * 1000.0  # this turn's callbacks
            self._note(held_ms, entered)
            cpu = process_time()
            if held_ms >= BUSY_HOLD_S * 1000.0 or cpu - self._window_cpu > IDLE_SHARE * max(
                entered - self._window_at, IDLE_WINDOW_S
            ):
                self._tick_again(entered, cpu)
                # (the tick is due in PERIOD_S: this wait must not outlast it)
                timeout = PERIOD_S if timeout is None else min(timeout, PERIOD_S)
                return select(timeout)
            if entered - self._window_at >= IDLE_WINDOW_S:
                self._window_at, self._window_cpu = entered, cpu
            ready = select(timeout)
            self._back = back = monotonic()
            if timeout is not None:  # (past its time-out: waiting for the GIL or a CPU)
                self._note(max(0.0, (back - entered - max(timeout, 0.0)) * 1000.0), back)
            return ready

        self._selector.select = watched

    def _tick_again(self, now: float, cpu: float) -> None:
        """The process works: unwrap the selector, tick again (due in ``PERIOD_S``)."""
        self._unwatch()
        self._window_at, self._window_cpu = now, cpu
        self._due = now + PERIOD_S
        self._handle = self._loop.call_later(PERIOD_S, self._tick)

    def _unwatch(self) -> None:
        if self.idle:
            self.idle = False
            with contextlib.suppress(AttributeError):
                del self._selector.select  # (the class's own again)

    def close(self) -> None:
        self._unwatch()
        if self._schedstat >= 0:
            os.close(self._schedstat)
            self._schedstat = -1
        if self._others is not None:
            self._others.close()
        if self._collected in gc.callbacks:
            gc.callbacks.remove(self._collected)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
