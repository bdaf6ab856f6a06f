"""A task's output in a worker: what one attempt prints (stdout, stderr) and logs, kept bounded.

While a job runs, ``sys.stdout`` and ``sys.stderr`` write into one ``Captured`` buffer and a handler
on the root logger formats ``logging`` records into it, so the order of prints and log lines is
kept. In a daemon's workers the text leaves while the task runs (``worker._live`` takes the new
complete lines every half second and sends them to the daemon) and what was not taken goes back with
the job's outcome; the daemon reports it to the run's owner, which keeps it with the run
(``handoffctl logs``, ``Run.logs()``).

Bounded per attempt: the first ``HEAD`` characters (the part that may leave live) and the last
``TAIL`` (the end of a long output, where an error usually is, matters most; it can only leave with
the outcome, as nobody knows in advance where the end is) are kept, and the cut says once, in the
outcome's text, how much was dropped.
Python-level writes only: output a C extension or a child process writes to the file descriptors
goes to the daemon's own stdout as before.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

LIMIT = 64 * 1024  # characters kept per attempt
TAIL = 16 * 1024
HEAD = LIMIT - TAIL
_FORMAT = "%(levelname)s %(name)s: %(message)s"


class Captured(io.TextIOBase):
    """A text stream keeping the head and the tail of what is written to it. ``wake``: called
    (under the buffer's lock, so it must not write here) when the head gets text while nothing was
    waiting to be taken; the live sender's signal."""

    least = logging.NOTSET  # the log handler writes records of this level and up here

    def __init__(self, wake: Callable[[], None] | None = None) -> None:
        # Writes come from any of the task's threads, takes from the live sender's thread.
        self.lock = threading.Lock()
        self._head: list[str] = []  # head text not taken yet
        self._head_size = 0  # characters let into the head, taken or not (at most HEAD)
        self._tail: list[str] = []
        self._tail_size = 0
        self.dropped = 0  # characters cut out between head and tail
        self.wake = wake
        self._told = False  # wake was called and take() has not found the head empty since
        self._aged = False  # the head's text is a partial line a take already left for a turn

    def reset(self) -> Captured:
        """Empty it for the next job, and return it: a worker writes every job into one buffer (a
        new one per job costs its making and an io object's finalizer). Also what a job
        left writing to it (a handler it made on ``sys.stdout``) lands in the job that runs now."""
        with self.lock:
            if self._head_size or self._tail_size or self.dropped:  # (else nothing was written)
                self._head, self._head_size, self._tail, self._tail_size = [], 0, [], 0
                self.dropped = 0
                self._told = self._aged = False
        return self

    def writable(self) -> bool:
        return True

    def write(self, text: Any) -> int:
        if not isinstance(text, str):
            text = str(text)
        size = len(text)
        with self.lock:
            room = HEAD - self._head_size
            if room > 0 and text:
                part = text[:room]
                self._head.append(part)
                self._head_size += len(part)
                text = text[room:]
                if not self._told and self.wake is not None:
                    self._told = True
                    self.wake()
            if text:
                self._tail.append(text)
                self._tail_size += len(text)
                if self._tail_size > 2 * TAIL:  # trim now and then, not per write
                    joined = "".join(self._tail)
                    self.dropped += len(joined) - TAIL
                    self._tail, self._tail_size = [joined[-TAIL:]], TAIL
        return size

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def take(self) -> tuple[str, bool]:
        """The head's text not taken yet, up to its last newline (a trailing partial line is left
        for one more take, so a line written in pieces arrives whole, then goes anyway), and
        whether text is left to take."""
        with self.lock:
            text = "".join(self._head)
            cut = text.rfind("\n") + 1
            if cut == 0 and text and not self._aged:
                self._head, self._aged = [text], True
                return "", True
            if cut == 0:
                cut = len(text)
            rest = text[cut:]
            self._head, self._aged = ([rest], False) if rest else ([], False)
            if not rest:
                self._told = False  # the next write wakes the sender again
            return text[:cut], bool(rest)

    def text(self) -> str:
        """Everything kept and not taken: the rest of the head, the cut (said once), the tail."""
        with self.lock:
            tail = "".join(self._tail)
            dropped = self.dropped
            if len(tail) > TAIL:
                dropped += len(tail) - TAIL
                tail = tail[-TAIL:]
            head = "".join(self._head)
        if dropped:
            newline = "\n" if head and not head.endswith("\n") else ""  # the head may have left
            return f"{head}{newline}[... {dropped} characters of output truncated ...]\n{tail}"
        return head + tail


class _CaptureLogHandler(logging.Handler):
    def __init__(self, out: Captured | _Passing) -> None:
        super().__init__(logging.NOTSET)
        self.out = out
        self.setFormatter(logging.Formatter(_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < self.out.least:  # (between a worker's jobs: WARNING and up)
            return
        try:
            self.out.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - a bad record must not fail the task
            self.handleError(record)


# One log handler per process, pointed at each job's buffer: creating and registering a handler
# per job was ~10 us of a no-op task's ~100 us in a worker.
_handler: _CaptureLogHandler | None = None  # (its ``out``: a Captured or a JobBlocks' _Passing)
_IDLE = Captured()  # where the handler points between jobs (it is not attached then)


def root_at_info() -> None:
    """Put the root logger at the level every captured block gives it (INFO, unless it is set
    lower), for a process that runs jobs only (a worker, at start): a job's block then changes no
    level. Each ``setLevel`` clears every logger's cache under the logging lock: two per job were
    a sixth of a no-op job's Python time in its worker."""
    root = logging.getLogger()
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


class JobBlocks:
    """``capture`` for a process that runs jobs only (a worker), made once at its start: the log
    handler stays on the root logger and the root at INFO (``root_at_info``) between jobs, so a
    job's block only points ``sys.stdout``, ``sys.stderr`` and the handler at its buffer and back
    (adding and removing the handler took the logging lock twice per job).
    ``with blocks.into(out):`` around a job; ``out`` is the job's buffer. Between jobs the
    handler writes what is logged at WARNING or above to the process's stderr
    (as ``logging``'s last resort did while no handler was on the root). A job that removes the
    handler (``logging.basicConfig(force=True)``) or changes the root's level leaves no trace for
    the next one: the next block puts the handler back, and each block restores the level."""

    def __init__(self) -> None:
        global _handler
        root_at_info()
        self.root = logging.getLogger()
        self.level = self.root.level
        self.stdout, self.stderr = sys.stdout, sys.stderr  # what the process writes to between jobs
        self.idle = _Passing(sys.stderr)
        if _handler is None:
            _handler = _CaptureLogHandler(self.idle)
        self.handler = _handler
        self.handler.out = self.idle
        self.root.addHandler(self.handler)
        self.out: Any = self.idle

    def into(self, out: Captured) -> JobBlocks:
        self.out = out
        return self

    def arm(self, out: Captured) -> None:
        """Point everything at ``out`` for a run of jobs into it, until ``disarm``: the worker's
        loop arms once for jobs that follow one another without a wait, and calls ``arm`` again
        only before a job that finds something of it changed by the job before (``armed``)."""
        self.out = out
        self.__enter__()
        if self.root.level != self.level:  # what the job before set
            self.root.setLevel(self.level)

    def armed(self, out: Captured) -> bool:
        """Whether everything still points at ``out`` as ``arm`` left it (a job may have
        replaced ``sys.stdout``, removed the handler or changed the root's level). The worker's
        loop makes the same test in line."""
        return (
            sys.stdout is out
            and sys.stderr is out
            and self.root.level == self.level
            and self.handler in self.root.handlers
        )

    def disarm(self) -> None:
        """The process's own streams and the handler's between-jobs target again."""
        self.__exit__()

    def __enter__(self) -> Captured:
        out, handler = self.out, self.handler
        sys.stdout = sys.stderr = out
        handler.out = out
        if handler not in self.root.handlers:  # the job before removed it
            self.root.addHandler(handler)
        return out  # type: ignore[no-any-return]

    def __exit__(self, *exc: object) -> None:
        sys.stdout, sys.stderr = self.stdout, self.stderr
        self.handler.out = self.idle
        if self.root.level != self.level:  # what the job set
            self.root.setLevel(self.level)


class _Passing:
    """The handler's target between a worker's jobs: straight to a stream."""

    least = logging.WARNING  # as logging's last resort (no handler on the root) wrote

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self.stream.write(text))
        except (OSError, ValueError):  # a closed stderr: nothing to tell anyone
            return 0


class capture:
    """Context manager: stdout, stderr and logging of the block into one bounded buffer
    (``out``: a given one, e.g. the live sender's). Nested blocks write into the innermost one."""

    def __init__(self, out: Captured | None = None) -> None:
        self.out = out if out is not None else Captured()

    def __enter__(self) -> Captured:
        global _handler
        self.saved = (sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = self.out  # type: ignore[assignment]
        if _handler is None:
            _handler = _CaptureLogHandler(self.out)
        self.handler = _handler
        self.outer = _handler.out  # an enclosing block's buffer (or a finished one's)
        _handler.out = self.out
        root = logging.getLogger()
        self.level = root.level
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(
                logging.INFO
            )  # the user's info lines show, as in a script with basicConfig
        self.added = self.handler not in root.handlers
        if self.added:
            root.addHandler(self.handler)
        return self.out

    def __exit__(self, *exc: object) -> None:
        sys.stdout, sys.stderr = self.saved
        root = logging.getLogger()
        if self.added:
            root.removeHandler(self.handler)
        # the enclosing block's buffer again; none kept alive after the outermost block
        self.handler.out = _IDLE if self.added else self.outer
        if root.level != self.level:  # (the block's INFO, or what its job set)
            root.setLevel(self.level)
