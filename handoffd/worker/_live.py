"""A worker's live output: what the running job printed leaves for the daemon while the job runs.

One thread per worker process, started by the first job that prints anything (a process whose
tasks print nothing never starts it, and sends nothing more than before). A write into the job's
``capture.Captured`` head wakes the thread when nothing was waiting; the thread then waits until
``interval`` seconds passed since its last look (and a few milliseconds at least, so a ``print``'s
text and its newline, two writes, go together), takes the new complete lines and sends them on the
pipe as ``LIVE`` + pickle((token, text)). It looks again after ``interval`` while text is left.

Every send on the pipe while a job runs is made under ``lock``: the job's end (``with sender:``)
takes it, so no live text of a job follows the job's outcome, and the outcome carries only what
was not sent. The worker's loop does that in line and takes the lock only once the thread exists:
it clears ``_job`` first, so a thread started later finds no job to send of.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable

from handoffd.worker.capture import Captured

LIVE = b"L"  # a message of live output (never a pickle's first byte, nor READY's)
_GATHER = 0.005  # seconds a wake waits at least: a print's text and its newline are two writes


class LiveSender:
    """Takes the running job's new output every ``interval`` seconds and ``send``s it."""

    def __init__(self, send: Callable[[bytes], None], interval: float) -> None:
        self.lock = threading.Lock()  # held for every send on the pipe while a job runs
        self._send = send
        self._interval = interval
        self._event = threading.Event()
        self._thread: threading.Thread | None = None
        self._job: tuple[int, Captured] | None = None  # (token, its buffer) of the running job
        self._last = 0.0  # when the thread last took
        self._out = Captured(self._wake)  # every job's buffer in turn (Captured.reset)
        self.buffer = self._out  # (for the worker's loop, which reads what a job left in it)
        os.register_at_fork(after_in_child=self._forked)

    def start(self, token: int) -> Captured:
        """A buffer for the job ``token`` that starts now; its new lines are sent while it runs.
        (The worker's loop does this in line, a call less a job.)"""
        out = self._out
        if out._head_size or out._tail_size or out.dropped:  # (else nothing to empty)
            out.reset()
        # Published after the reset, without the lock: the thread reads ``_job`` once under it,
        # and sees None (the last job's end set it) or this job with its empty buffer.
        self._job = (token, out)
        return out

    # ``with sender:`` around sending the job's outcome: nothing of the job is sent live from
    # there on. (A method, not a @contextmanager generator: ~1 us less per job.)
    def __enter__(self) -> None:
        self.lock.acquire()
        self._job = None

    def __exit__(self, *exc: object) -> None:
        self.lock.release()

    def hold(self) -> None:
        """``__enter__`` without the release (the worker's loop does this in line and releases
        ``lock`` itself)."""
        self.lock.acquire()
        self._job = None

    def _wake(self) -> None:  # called under the buffer's lock: no pipe, no buffer here
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="handoffd-live", daemon=True)
            self._thread.start()
        self._event.set()

    def _loop(self) -> None:
        clock = time.monotonic
        while True:
            self._event.wait()
            # Cleared before the take: a write after the take finds its buffer "not told" and
            # sets the event again; a write between here and the take is taken by it.
            self._event.clear()
            time.sleep(max(_GATHER, self._last + self._interval - clock()))
            more = False
            with self.lock:
                job = self._job
                if job is not None:
                    token, out = job
                    text, more = out.take()
                    self._last = clock()
                    if text:
                        try:
                            self._send(LIVE + pickle.dumps((token, text), protocol=5))
                        except (OSError, ValueError):  # the pipe is gone: so is the daemon
                            return
            if more:
                self._event.set()

    def _forked(self) -> None:
        """A task forked: the child has none of our thread, and a lock it held stays held there.
        The child's prints stay in its own copy of the buffer (not sent) and must not block."""
        self.lock = threading.Lock()
        self._thread = None
        self._event = threading.Event()
        self._job = None
        self._out.lock = threading.Lock()  # the running job's buffer (every job's)
        self._out.wake = None
