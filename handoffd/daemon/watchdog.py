"""A daemon that ends with the process that launched it: ``handoffd start --die-with-parent``.

Benches, tests and ``make demo`` start daemons as subprocesses and kill them in their own teardown;
a launcher killed from outside (SIGKILL, a timeout's kill, a crashed runner) never gets there, and
its daemons ran on for hours. ``PR_SET_PDEATHSIG`` is no cure: it fires when the *thread* that
forked exits, and launchers start daemons from threads that end long before they do (pytest-xdist,
a bench's helpers); it also ties the daemon to whatever wrapper runs it (``py-spy record`` is the
daemon's parent, and outlives the launcher). So the launcher names what to watch:

- ``fd:N``: the read end of a pipe whose only write end the launcher holds (``LauncherPipe``;
  ``subprocess.Popen(pass_fds=[N])`` keeps the number). The kernel closes the write end when the
  launcher ends, however it ends, and the read end then polls readable at end of file. Any wrapper
  that passes descriptors on keeps it working: those that exec the daemon (``taskset``,
  ``valgrind``, a ``runpy`` profiler) and those that run it as their child (``py-spy record``). A
  socket works the same way (its peer's close is the end of file).
- ``pid:N``: a process id, watched through a pidfd (Linux >= 5.3: readable when it exits), else
  polled. Refused if that process started after this one (its pid was reused: the launcher is
  gone already).

The watch is a small thread blocked in ``poll()``: it costs the daemon's loop nothing, and still
acts when the loop is wedged. When the launcher is gone it asks for a graceful leave (what SIGTERM
does); if the process has not ended ``bound`` seconds later, it kills its children's process groups
(the workers lead theirs) and exits with status 1. Without the flag nothing is watched: a daemon a
user starts from a shell never dies with that shell.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import stat
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

# (imported now, not when the exit comes: the main thread may hold the import lock then)
from handoffd.worker._contain import children

log = logging.getLogger("handoffd.node")

FLAG = "--die-with-parent"
KINDS = ("fd", "pid")
# After the drain grace, what the rest of a leave may take (values handed over, LEFT gossiped,
# workers reaped) before the process exits without finishing it.
LEAVE_S = 30.0
POLL_S = 1.0  # between looks at a pid when no pidfd can be opened
EXIT_OVERRUN = 1  # the status of a daemon whose leave overran its bound


class WatchError(ValueError):
    """A --die-with-parent value that cannot be watched; the message says why and what to pass."""


@dataclass(frozen=True)
class Target:
    """What ``--die-with-parent`` names: ``kind`` "fd" (a pipe's read end) or "pid"."""

    kind: str
    number: int

    def __str__(self) -> str:
        return f"{self.kind}:{self.number}"


USAGE = (
    "give fd:N (the read end of a pipe whose write end the launcher keeps, passed to this "
    "process) or pid:N (the launcher's process id), e.g. fd:3 or pid:4242"
)


def parse(text: str) -> Target:
    """``fd:N`` or ``pid:N``; raises WatchError saying what is wrong."""
    kind, sep, number = str(text).strip().partition(":")
    kind = kind.strip().lower()
    number = number.strip()
    if not sep or kind not in KINDS or not number.isascii() or not number.isdigit():
        raise WatchError(f"{text!r}: {USAGE}")
    value = int(number)
    if kind == "pid" and value <= 1:
        raise WatchError(f"{text!r}: process {value} never exits; give the launcher's pid")
    if value > 1 << 31:
        raise WatchError(f"{text!r}: {value} is too large for a {kind}")
    return Target(kind, value)


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first); None if no such
    process (or a zombie: exited, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rfind(b")") + 2 :].decode("ascii", "replace").split()
    if not fields or fields[0] in ("Z", "X"):
        return None
    return fields


def _start_ticks(fields: list[str]) -> int | None:
    """A process's start time (clock ticks since boot: field 22 of /proc/PID/stat)."""
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _alive(pid: int, since: int | None) -> bool:
    """True while ``pid`` runs (not a zombie) and is still the process that started at ``since``."""
    if sys.platform.startswith("linux"):
        fields = _proc_stat(pid)
        if fields is None:
            return False
        return since is None or _start_ticks(fields) == since
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ParentWatch:
    """The daemon's side: validated and opened by ``open_watch`` (before the node starts, so a
    bad value is a usage error), then ``start``-ed once the node runs."""

    def __init__(self, target: Target, fd: int, pid_since: int | None = None) -> None:
        self.target = target
        self.fd = fd  # what poll() watches: the pipe's read end, a pidfd, or -1 (poll the pid)
        self._pid_since = pid_since  # the watched pid's start time (polled pids)
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self.gone = threading.Event()  # set when the launcher's end was seen

    def start(
        self,
        on_gone: Callable[[], None],
        bound: float,
        exit: Callable[[int], None] | None = None,
        doing: str = "leaving the cluster as on SIGTERM",
    ) -> None:
        """Watch from a thread: when the launcher is gone, log that (and ``doing``), call
        ``on_gone`` (from that thread), then ``exit(EXIT_OVERRUN)`` if the process still runs
        ``bound`` seconds later."""
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(
            target=self._run,
            args=(on_gone, bound, exit or hard_exit, doing),
            name="parent-watch",
            daemon=True,  # never holds the process up; its exit timer outlives close()
        )
        self._thread.start()

    def close(self) -> None:
        """Stop watching (the daemon ends for another reason). Once the launcher was seen gone
        the exit timer keeps running: whatever still holds the process up past the leave (a
        thread the interpreter waits for) cannot keep it alive."""
        thread = self._thread
        if thread is not None and not self.gone.is_set():
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
            thread.join(10)
            if not thread.is_alive():
                for fd in (self._wake_r, self._wake_w):
                    with contextlib.suppress(OSError):
                        os.close(fd)
                self._wake_r = self._wake_w = -1
        if self.fd >= 0 and not self.gone.is_set():
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def _run(
        self,
        on_gone: Callable[[], None],
        bound: float,
        exit: Callable[[int], None],
        doing: str,
    ) -> None:
        why = self._wait()
        if why is None:
            return  # closed
        self.gone.set()
        log.warning(
            "the process that launched this one is gone (%s, %s): %s; exiting within %.0f s "
            "whatever happens",
            self.target,
            why,
            doing,
            bound,
        )
        try:
            on_gone()
        except Exception:  # noqa: BLE001 - the exit below still bounds the process
            log.exception("asking for a leave after the launcher's end")
        if self._woken(bound):
            return
        log.error("the leave did not end within %.0f s of the launcher's end: exiting now", bound)
        exit(EXIT_OVERRUN)

    def _woken(self, timeout: float) -> bool:
        """Sleep ``timeout`` seconds unless ``close`` wakes us first (True then)."""
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        try:
            return bool(poller.poll(int(timeout * 1000)))
        except OSError:
            return False

    def _wait(self) -> str | None:
        """Block until the launcher is gone (returns how it was seen) or ``close`` (None)."""
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        if self.fd >= 0:
            poller.register(self.fd, select.POLLIN)
        timeout_ms = None if self.fd >= 0 else int(POLL_S * 1000)
        while True:
            try:
                events = poller.poll(timeout_ms)
            except InterruptedError:
                continue
            for fd, mask in events:
                if fd == self._wake_r:
                    return None
                if mask & select.POLLNVAL:
                    return f"descriptor {fd} was closed under the watch"
                if self.target.kind == "pid":
                    return "it exited"  # a pidfd is readable once the process has ended
                why = self._drain()
                if why is not None:
                    return why
            if self.fd < 0 and not _alive(self.target.number, self._pid_since):
                return "it exited"

    def _drain(self) -> str | None:
        """Read what the launcher wrote (nothing, usually); a reason once its end is closed."""
        try:
            while True:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    return "its end of the pipe closed"
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                return "its end of the socket closed"
            return f"reading the pipe failed: {exc.strerror}"


def open_watch(target: Target) -> ParentWatch:
    """Check that ``target`` can be watched here and take hold of it; raises WatchError."""
    return _open_fd(target) if target.kind == "fd" else _open_pid(target)


def _open_fd(target: Target) -> ParentWatch:
    fd = target.number
    how = f"subprocess.Popen(..., pass_fds=[{fd}])"
    try:
        info = os.fstat(fd)
        flags = _fd_flags(fd)
    except OSError:
        raise WatchError(
            f"{target}: no file descriptor {fd} is open in this process; the launcher must pass "
            f"its pipe's read end under that number ({how})"
        ) from None
    if not (stat.S_ISFIFO(info.st_mode) or stat.S_ISSOCK(info.st_mode)):
        raise WatchError(
            f"{target}: descriptor {fd} is not a pipe or a socket, so it never shows the "
            "launcher's end; pass the read end of a pipe (os.pipe()) whose write end only the "
            "launcher keeps"
        )
    if flags is not None and flags & os.O_ACCMODE == os.O_WRONLY:
        raise WatchError(f"{target}: descriptor {fd} is a pipe's write end; pass its read end")
    os.set_inheritable(fd, False)  # workers and tasks' processes get no copy
    os.set_blocking(fd, False)  # (the launcher writes nothing; a stray byte is read and dropped)
    watch = ParentWatch(target, fd)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if poller.poll(0) and watch._drain() is not None:
        raise WatchError(f"{target}: the launcher is gone already (its end of the pipe is closed)")
    return watch


def _fd_flags(fd: int) -> int | None:
    try:
        import fcntl
    except ImportError:  # not POSIX: the access mode is not checked
        return None
    return int(fcntl.fcntl(fd, fcntl.F_GETFL))


def _open_pid(target: Target) -> ParentWatch:
    pid = target.number
    if pid == os.getpid():
        raise WatchError(f"{target}: that is this daemon itself; give the launcher's pid")
    since: int | None = None
    if sys.platform.startswith("linux"):
        fields = _proc_stat(pid)
        mine = _proc_stat(os.getpid())
        if fields is None:
            raise WatchError(f"{target}: no process {pid} runs (the launcher is gone already)")
        since, own = _start_ticks(fields), _start_ticks(mine or [])
        if since is not None and own is not None and since > own:
            raise WatchError(
                f"{target}: process {pid} started after this daemon, so it is not the launcher "
                "(the launcher is gone and its pid was reused)"
            )
    elif not _alive(pid, None):
        raise WatchError(f"{target}: no process {pid} runs (the launcher is gone already)")
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            fd = int(pidfd_open(pid))
        except ProcessLookupError:
            raise WatchError(
                f"{target}: no process {pid} runs (the launcher is gone already)"
            ) from None
        except OSError:
            pass  # an older kernel (ENOSYS) or a sandbox: the pid is polled instead
        else:
            if since is not None and not _alive(pid, since):  # reused between the look and open
                os.close(fd)
                raise WatchError(f"{target}: process {pid} ended while this daemon started")
            return ParentWatch(target, fd)
    return ParentWatch(target, -1, since)


def hard_exit(code: int) -> None:
    """Kill our children's process groups (each worker leads one, with its task's processes),
    then end this process at once: what the leave should have done, without the leave."""
    for child in children(os.getpid()):
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(OSError):
                kill(child, signal.SIGKILL)
    os._exit(code)  # (each log record was written and flushed as it was logged)


# -- the launcher's side ---------------------------------------------------------------------------

_open_pipes: set[LauncherPipe] = set()


class LauncherPipe:
    """What a launcher holds for ``fd:N``: a pipe whose read end every daemon it starts inherits
    (``pass_fds``, ``args()``), and whose write end stays in this process alone, so its end,
    however it comes, is every such daemon's signal to leave. Python's descriptors are not
    inherited across exec; a process forked from this one (``os.fork``, multiprocessing's fork
    start) closes its copy of the write end at once (``os.register_at_fork``), so it holds no
    daemon up. ``close()`` lets the daemons see the end now."""

    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe()  # both close-on-exec
        _open_pipes.add(self)

    def args(self) -> list[str]:
        """The ``handoffd start`` arguments that watch this pipe."""
        if self._write_fd < 0:
            raise ValueError("the pipe is closed")
        return [FLAG, f"fd:{self.read_fd}"]

    @property
    def pass_fds(self) -> tuple[int]:
        return (self.read_fd,)

    def close(self) -> None:
        _open_pipes.discard(self)
        for fd in (self._write_fd, self.read_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._write_fd = self.read_fd = -1

    def _forget_in_child(self) -> None:
        if self._write_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._write_fd)
            self._write_fd = -1


def _after_fork_in_child() -> None:
    for pipe in list(_open_pipes):
        pipe._forget_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
