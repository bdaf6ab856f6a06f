"""The loop thread's own CPU time per loop iteration (issue 19, item 7: no stall past ~100 ms).

``loop_lag`` measures stalls in wall time: how late a 10 ms tick ran. On a loaded machine that
is as much the machine as the daemon (the loop waiting for a CPU, or for the GIL while another
thread runs Python). What the loop's own code costs is its CPU time: ``LoopCpu`` measures
``getrusage(RUSAGE_THREAD)`` (its CPU, the kernel's share, page faults; else
``time.thread_time``) around each iteration of the loop (``BaseEventLoop._run_once``: the wait in
``select``, which costs no CPU, then the callbacks made ready) and around each callback, and keeps
the ``KEEP`` largest iterations with the callback that used the most of each (``largest``). Each
iteration of ``log_ms`` or more is logged (``bench/bench_loop_stall.py`` reads the log).
Waiting for the GIL costs no CPU either, so the figure is the loop's own work, whatever the load.

Off unless ``HANDOFFD_LOOP_CPU_LOG_MS`` is set (``from_env``): the daemon's loop and callbacks
are then not wrapped at all, so it costs nothing. On, two ``thread_time`` calls per callback.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("handoffd.loop")

KEEP = 5  # iterations kept (the largest)

try:
    import resource

    _RUSAGE_THREAD: int | None = resource.RUSAGE_THREAD  # (Linux)
except (ImportError, AttributeError):  # pragma: no cover - other systems: thread_time only
    _RUSAGE_THREAD = None


class LoopCpu:
    """Wraps ``loop``'s ``_run_once`` (an attribute of this loop only) and ``asyncio.Handle._run``
    (every handle of the process: only its loop's thread counts) until ``close``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, log_ms: float) -> None:
        self.log_ms = log_ms
        self.iterations = 0
        self.max_ms = 0.0
        # (cpu ms, wall ms of that iteration's callbacks, callbacks run, what used the most)
        self._kept: list[tuple[float, float, int, str]] = []
        self._loop: Any = loop
        self._run_once: Callable[[], None] = loop._run_once  # type: ignore[attr-defined]
        self._handle_run: Callable[[asyncio.Handle], None] = asyncio.Handle._run  # type: ignore[attr-defined]
        self._top: Any = None  # this iteration's costliest callback so far, and its cost
        self._top_s = 0.0
        self._top_wall_s = 0.0
        self._wall_s = 0.0
        self._callbacks = 0
        loop._run_once = self._iteration  # type: ignore[attr-defined]
        asyncio.Handle._run = _timed(self)  # type: ignore[method-assign,assignment]

    @classmethod
    def from_env(
        cls, loop: asyncio.AbstractEventLoop, environ: Mapping[str, str] | None = None
    ) -> LoopCpu | None:
        """A ``LoopCpu`` when ``HANDOFFD_LOOP_CPU_LOG_MS`` is set (the threshold in ms), else None.
        A bad value is logged and the probe left off: a typo never stops a daemon."""
        env = os.environ if environ is None else environ
        raw = env.get("HANDOFFD_LOOP_CPU_LOG_MS", "")
        if not raw:
            return None
        try:
            log_ms = float(raw)
        except ValueError:
            log_ms = -1.0
        if log_ms < 0.0:
            log.warning(
                "HANDOFFD_LOOP_CPU_LOG_MS=%r: not a number of milliseconds (>= 0); the loop's "
                "CPU time is not measured",
                raw,
            )
            return None
        return cls(loop, log_ms)

    def _iteration(self) -> None:
        self._top, self._top_s, self._top_wall_s, self._wall_s, self._callbacks = None, 0, 0, 0, 0
        start = _usage()
        try:
            self._run_once()
        finally:
            end = _usage()
            cpu_ms = (end[0] - start[0]) * 1000.0
            self.iterations += 1
            if cpu_ms > self.max_ms:
                self.max_ms = cpu_ms
            if cpu_ms >= self.log_ms or len(self._kept) < KEEP or cpu_ms > self._kept[0][0]:
                self._note(cpu_ms, (end[1] - start[1]) * 1000.0, end[2] - start[2])
            self._top = None

    def _note(self, cpu_ms: float, kernel_ms: float, faults: int) -> None:
        what = _describe(self._top)
        top = (
            f"{what} ({self._top_s * 1000.0:.0f} ms CPU, {self._top_wall_s * 1000.0:.0f} ms wall);"
            f" in the kernel {kernel_ms:.0f} ms, {faults} page faults"
        )
        entry = (cpu_ms, self._wall_s * 1000.0, self._callbacks, top)
        if len(self._kept) < KEEP:
            heapq.heappush(self._kept, entry)
        elif cpu_ms > self._kept[0][0]:
            heapq.heapreplace(self._kept, entry)
        if cpu_ms >= self.log_ms:
            log.warning(
                "loop iteration used %.0f ms of the loop thread's CPU (%.0f ms wall in %d "
                "callbacks; the largest: %s)",
                cpu_ms,
                entry[1],
                self._callbacks,
                top,
            )

    def largest(self) -> list[tuple[float, float, int, str]]:
        """The ``KEEP`` costliest iterations so far, costliest first: (CPU ms, wall ms of its
        callbacks, how many callbacks ran, the costliest callback with its CPU and wall ms)."""
        return sorted(self._kept, reverse=True)

    def close(self) -> None:
        """Unwrap the loop and the handles; the largest iterations logged once."""
        if self._loop.__dict__.get("_run_once") == self._iteration:
            del self._loop._run_once
        if getattr(asyncio.Handle._run, "probe", None) is self:
            asyncio.Handle._run = self._handle_run  # type: ignore[method-assign]
        for cpu_ms, wall_ms, count, top in self.largest():
            log.info(
                "loop iteration of %.0f ms CPU (%.0f ms wall, %d callbacks; the largest: %s)",
                cpu_ms,
                wall_ms,
                count,
                top,
            )


def _usage() -> tuple[float, float, int]:
    """This thread's (CPU seconds, of them in the kernel, page faults) so far: the kernel's share
    and the faults tell an iteration's own work from memory the kernel had to find for it."""
    if _RUSAGE_THREAD is None:
        return time.thread_time(), 0.0, 0
    r = resource.getrusage(_RUSAGE_THREAD)
    return r.ru_utime + r.ru_stime, r.ru_stime, r.ru_minflt + r.ru_majflt


def _timed(probe: LoopCpu) -> Callable[[asyncio.Handle], None]:
    run = probe._handle_run
    thread_time, perf_counter = time.thread_time, time.perf_counter

    loop = probe._loop

    def _run(handle: asyncio.Handle) -> None:
        if handle._loop is not loop:  # type: ignore[attr-defined]
            run(handle)  # another loop's (another thread's)
            return
        start, wall = thread_time(), perf_counter()
        try:
            run(handle)
        finally:
            took, wall = thread_time() - start, perf_counter() - wall
            probe._callbacks += 1
            probe._wall_s += wall
            if took > probe._top_s:
                probe._top, probe._top_s, probe._top_wall_s = handle, took, wall

    _run.probe = probe  # type: ignore[attr-defined]
    return _run


def _describe(handle: Any) -> str:
    """What ``handle`` ran: a task's coroutine (where it now waits), else the callback."""
    if handle is None:
        return "no callback (the loop's own wait and I/O)"
    callback = getattr(handle, "_callback", None)
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", repr(coro))
        return f"task {task.get_name()} {name}"
    name = getattr(callback, "__qualname__", None)
    if name is None:
        return repr(handle)
    owner = getattr(callback, "__self__", None)
    if owner is not None and not getattr(callback, "__module__", None):
        return f"{type(owner).__qualname__}.{name}"
    return f"{getattr(callback, '__module__', '?')}.{name}"
