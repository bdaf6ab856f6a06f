"""What a worker process does to contain itself and its task's processes (runs in the worker).

- It leads its own process group, so the pool kills the worker and the children its task forked
  with one ``killpg`` (timeout, cancel, memory, close).
- It dies with the process that started it (``PR_SET_PDEATHSIG``): a daemon killed with SIGKILL
  leaves no worker behind.
- It is a child subreaper (``PR_SET_CHILD_SUBREAPER``): processes its task started, and their
  children orphaned by a parent's death, stay its descendants (they are not re-parented to init), so
  after each task it finds and kills every one of them, even those that left the process group.
- Its process title says the node, and the run and task it runs (``setproctitle``), for ``ps``.

Linux only where it says so; elsewhere each step is skipped. Stays light: imported by every worker.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from functools import partial

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# Rounds of "kill the children, reap them, look again" after a task: each round catches the
# grandchildren re-parented to us when their parent died in the round before.
MAX_ROUNDS = 64
# waitpid's pid -1 (any child) as ctypes passes it to a C int: see child_look
ANY_CHILD = 0xFFFFFFFF

try:
    import setproctitle as _setproctitle
except ImportError:  # optional at run time: titles are only for people reading ps
    _setproctitle = None  # type: ignore[assignment]

_title_prefix = "handoffd-worker"
_node = ""  # the node this worker serves (setup)


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def setup(node: str, parent_pid: int) -> None:
    """Called first thing in a fresh worker."""
    global _title_prefix, _node
    _node = node
    try:
        os.setpgid(0, 0)
    except OSError:
        pass  # already a group leader, or not allowed: the pool then kills the worker alone
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent_pid and os.getppid() != parent_pid:
        os._exit(0)  # the parent died before the death signal was armed
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _title_prefix = f"handoffd-worker {node}" if node else "handoffd-worker"
    set_title("idle")


def node_name() -> str:
    """The name of the node this worker process serves ("" outside a worker)."""
    return _node


def set_title(what: str) -> None:
    if _setproctitle is not None:
        _setproctitle.setproctitle(f"{_title_prefix}: {what}")


def _untitled(title: str) -> None:
    """(no setproctitle: nothing to set)"""


def titling() -> tuple[Callable[[str], None], str]:
    """(set, prefix) for the worker's loop, after ``setup``: ``set(prefix + what)`` does what
    ``set_title(what)`` does, without a Python call and a format per title (two a job)."""
    setter = _setproctitle.setproctitle if _setproctitle is not None else _untitled
    return setter, f"{_title_prefix}: "


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (zombies included), from /proc."""
    return parent_map().get(pid, [])


def parent_map() -> dict[int, list[int]]:
    """ppid -> its children's pids, for every process we can see."""
    out: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        ppid = parse_ppid(stat)
        if ppid is not None:
            out.setdefault(ppid, []).append(int(name))
    return out


def parse_ppid(stat: bytes) -> int | None:
    """The parent pid from a /proc/PID/stat line: "pid (comm) state ppid ...", where comm may hold
    spaces and parentheses (the last ")" ends it)."""
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


def _child_look_os() -> int:
    """``waitpid(-1, WNOHANG)``'s pid: -1 when this process has no child at all (ECHILD), 0 when
    its children all live, else the pid of the one exited child it reaped."""
    try:
        return os.waitpid(-1, os.WNOHANG)[0]
    except ChildProcessError:
        return -1


def child_look() -> Callable[[], int]:
    """The look after each job for what it left running (``end_children``'s first step): the
    compiled ``waitpid`` (``handoffd._core.reap``), else on Linux the same ``waitpid`` called
    through ctypes, else ``_child_look_os``. Most jobs start no process, and there
    ``os.waitpid``'s ECHILD costs more than the call (an OSError whose message ``strerror`` gives
    and the locale decodes: ~5.9k instructions against ~2.9k through ctypes). ``PyDLL``: the GIL
    stays held (the call never blocks with WNOHANG), no errno is saved, and -1 is ECHILD (WNOHANG
    rules out EINTR, and the arguments are valid)."""
    try:
        from handoffd._core.reap import child_look as compiled
    except ImportError:  # (a build without a compiler: the twins below)
        pass
    else:
        return compiled
    return child_look_ctypes()


def child_look_ctypes() -> Callable[[], int]:
    """``child_look`` without the compiled build: the ctypes ``waitpid`` on Linux, else
    ``_child_look_os``."""
    if not sys.platform.startswith("linux"):
        return _child_look_os
    import ctypes

    try:
        waitpid = ctypes.PyDLL(None).waitpid
    except (OSError, AttributeError):
        return _child_look_os
    waitpid.restype = ctypes.c_int
    # The pid -1 as its 32 bits: ctypes passes a Python int as a C int, converting it as an
    # unsigned long first and, for a negative one, again as a long after an OverflowError it
    # raises and clears (~0.5k instructions a call); 0xFFFFFFFF converts at once, to -1.
    return partial(waitpid, ANY_CHILD, None, os.WNOHANG)


def end_children() -> int:
    """Kill and reap every descendant left by the task that just ended; returns how many were
    killed. One system call when there is none (the common case)."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return 0  # no child at all, not even a zombie
    me = os.getpid()
    killed = 0
    for _ in range(MAX_ROUNDS):
        kids = children(me)
        if not kids:
            break
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        for pid in kids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    while True:  # zombies of children that ended on their own before we looked
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    return killed
