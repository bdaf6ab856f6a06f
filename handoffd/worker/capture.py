"""A task's output in a worker: what one attempt prints (stdout, stderr) and logs, kept bounded.

While a job runs, ``sys.stdout`` and ``sys.stderr`` write into one ``Captured`` buffer and a handler
on the root logger formats ``logging`` records into it, so the order of prints and log lines is
kept. The text goes back with the job's outcome; the daemon reports it to the run's owner, which
keeps it with the run (``handoffctl logs``, ``Run.logs()``).

Bounded per attempt: the first ``HEAD`` and the last ``LIMIT - HEAD`` characters are kept (the end
of a long output, where an error usually is, matters most) and the cut says how much was dropped.
Python-level writes only: output a C extension or a child process writes to the file descriptors
goes to the daemon's own stdout as before.
"""

from __future__ import annotations

import io
import logging
import sys
from typing import Any

LIMIT = 64 * 1024  # characters kept per attempt
HEAD = 16 * 1024
_FORMAT = "%(levelname)s %(name)s: %(message)s"


class Captured(io.TextIOBase):
    """A text stream keeping the head and the tail of what is written to it."""

    def __init__(self) -> None:
        self._head: list[str] = []
        self._head_size = 0
        self._tail: list[str] = []
        self._tail_size = 0
        self.dropped = 0  # characters cut out between head and tail

    def writable(self) -> bool:
        return True

    def write(self, text: Any) -> int:
        if not isinstance(text, str):
            text = str(text)
        size = len(text)
        room = HEAD - self._head_size
        if room > 0:
            self._head.append(text[:room])
            self._head_size += min(room, size)
            text = text[room:]
        if text:
            self._tail.append(text)
            self._tail_size += len(text)
            keep = LIMIT - HEAD
            if self._tail_size > 2 * keep:  # trim now and then, not per write
                joined = "".join(self._tail)
                self.dropped += len(joined) - keep
                self._tail, self._tail_size = [joined[-keep:]], keep
        return size

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def text(self) -> str:
        tail = "".join(self._tail)
        keep = LIMIT - HEAD
        dropped = self.dropped
        if len(tail) > keep:
            dropped += len(tail) - keep
            tail = tail[-keep:]
        head = "".join(self._head)
        if dropped:
            return f"{head}\n[... {dropped} characters of output truncated ...]\n{tail}"
        return head + tail


class _CaptureLogHandler(logging.Handler):
    def __init__(self, out: Captured) -> None:
        super().__init__(logging.NOTSET)
        self.out = out
        self.setFormatter(logging.Formatter(_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.out.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - a bad record must not fail the task
            self.handleError(record)


class capture:
    """Context manager: stdout, stderr and logging of the block into one bounded buffer."""

    def __enter__(self) -> Captured:
        self.out = Captured()
        self.saved = (sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = self.out  # type: ignore[assignment]
        self.handler = _CaptureLogHandler(self.out)
        root = logging.getLogger()
        self.level = root.level
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(
                logging.INFO
            )  # the user's info lines show, as in a script with basicConfig
        root.addHandler(self.handler)
        return self.out

    def __exit__(self, *exc: object) -> None:
        sys.stdout, sys.stderr = self.saved
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self.level)
