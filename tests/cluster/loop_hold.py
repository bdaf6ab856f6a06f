"""How long an event loop was held by work, not by the machine's load: the stall tests' measure.

``LoopLag.max_ms`` (handoffd/daemon/loop_lag.py) is wall time: on a loaded machine (CI beside
other work, 10-26 runnable on 2 cores) the loop's thread, or the thread holding the GIL, waits
hundreds of ms for a CPU, and the largest lateness over a whole test is such a wait, not the
owner's work. Here each tick's lateness counts only as far as work explains it: less the time the
loop's thread waited for a CPU (schedstat), and at most the CPU the process used meanwhile (a loop
held by a long callback, its own or another thread's holding the GIL, shows that callback's CPU; a
loop and GIL holder both waiting for a CPU show none). A test compares it with CPU time
(``time.thread_time``) of the same work done in one piece.
"""

from __future__ import annotations

import asyncio
import os
import time

from handoffd.daemon.loop_lag import thread_times

# (LoopLag's is 10 ms: shorter here, so that a tick's CPU is little more than its lateness's)
PERIOD_S = 0.002


class LoopHold:
    """Construct on the loop's thread (``cluster.run``); read ``max_s`` and ``max_wall_s`` there."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.max_s = 0.0  # the longest stall work explains
        self.max_wall_s = 0.0  # the longest lateness, as LoopLag sees it (for the messages)
        self._loop = loop
        try:
            self._fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:  # (no schedstat: its wait for a CPU reads as 0, the bound by CPU stays)
            self._fd = -1
        self._wait = thread_times(self._fd)[1]
        self._cpu = time.process_time()
        self._due = time.monotonic() + PERIOD_S
        self._handle: asyncio.TimerHandle | None = loop.call_later(PERIOD_S, self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        late = max(0.0, now - self._due)
        wait = thread_times(self._fd)[1]
        cpu = time.process_time()
        held = min(late - (wait - self._wait), cpu - self._cpu)
        self.max_s = max(self.max_s, held)
        self.max_wall_s = max(self.max_wall_s, late)
        self._wait, self._cpu = wait, cpu
        self._due = now + PERIOD_S
        self._handle = self._loop.call_later(PERIOD_S, self._tick)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
