"""Whether some files may have changed, asked of the kernel rather than by a stat of each
(Linux inotify; issue 13, W3).

A one-task ``execute`` ships the caller's modules under its working directory, rebuilt when one
changed (``packages.cwd_package``), so each call proved them unchanged by a stat of each against
its last stamp: in CPython a stat builds a nine-field ``stat_result`` with three times as float
and as nanoseconds, the biggest single part of the client's instructions per call. A ``Watch``
holds an inotify instance with a watch on each file (written, attributes or link count changed,
moved, deleted) and on each directory from the root down to the files (an entry created, deleted
or renamed: a file replaced by a rename, a directory of the path moved or replaced), and an open
``/proc/self/mountinfo`` (readable as exceptional when the mount table changes: a file system
mounted over a directory of the path). ``quiet()`` is one ``poll`` with no wait over both: True
while no event came since the watch was made.

Its events are never read: any event ends the watch's use, the caller checks by stat as before
and makes a new watch, made before that stat so no change falls between the two. The kernel
queues an event before the writer's system call returns, so a change made before ``quiet()`` is
asked is seen. It holds only for what the kernel sees: files on a local file system (a network
file system's other hosts raise no event), so ``watch`` makes none for a file whose file system
is not one of ``LOCAL_TYPES``, and none where inotify is missing or its limits are reached: the
caller stats each file then, as before.

The descriptor is closed when the ``Watch`` is collected, never explicitly: a thread that holds
it may be polling it, and a closed descriptor's number may be another file's by then.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Iterable
from typing import Any

# inotify(7)
IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
FILE_EVENTS = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVE_SELF | IN_DELETE_SELF
DIR_EVENTS = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MOVE_SELF | IN_DELETE_SELF
# File systems whose every change passes through this kernel (network ones do not).
LOCAL_TYPES = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "overlay", "zfs", "f2fs", "bcachefs"}
)

BUSY = 1.0  # seconds: a watch ended this soon after it was made watches a busy directory
# Files and directories one watch may hold: past it, the stats (inotify watches are a per-user
# budget, shared with editors and file managers).
MAX_WATCHES = 256
made = 0  # watches made (tests prove the caller uses them)
_libc: Any = None  # ctypes' libc once loaded; False: no inotify here


def _inotify() -> Any:
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                libc.inotify_init1.argtypes = [ctypes.c_int]
                libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
                _libc = libc
            except (OSError, AttributeError):
                pass
    return _libc


def _mounts() -> list[tuple[str, str]]:
    """(mount point, file system type) of each mount, from /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            head, _, tail = line.partition(" - ")
            fields = head.split()
            if len(fields) < 5 or not tail:
                continue
            point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
            point = point.replace("\\012", "\n")
            out.append((point, tail.split()[0]))
    return out


def _local(paths: Iterable[str], mounts: list[tuple[str, str]]) -> bool:
    """Whether each path lies on a file system of ``LOCAL_TYPES`` (its longest mount point)."""
    for path in paths:
        best, kind = -1, ""
        for point, fs in mounts:  # (the last of equal points is the one on top)
            inside = point == "/" or path == point or path.startswith(point + "/")
            if inside and len(point) >= best:
                best, kind = len(point), fs
        if kind not in LOCAL_TYPES:
            return False
    return True


class Watch:
    """An inotify instance over some files and their directories; see the module's note."""

    def __init__(self, fd: int, mounts: Any) -> None:
        self._fd = fd
        self._mounts = mounts  # /proc/self/mountinfo, kept open for its poll
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self._poll.register(mounts.fileno(), select.POLLPRI | select.POLLERR)
        # A mount change is reported by one poll only (the kernel notes it as seen), unlike
        # the inotify events, which stay until read: kept here for every later caller.
        self._changed = False
        self.made_at = time.monotonic()

    def busy(self) -> bool:
        """Whether this watch ended (or would) within ``BUSY`` seconds of being made: its
        directories' entries churn (files made and removed beside the modules), where a new
        watch each call would cost more than the stats it saves."""
        return time.monotonic() - self.made_at < BUSY

    def quiet(self) -> bool:
        """Nothing watched changed since the watch was made (no event, no mount change)."""
        if self._poll.poll(0):
            self._changed = True
            return False
        return not self._changed

    def __del__(self) -> None:
        try:
            os.close(self._fd)
        finally:
            self._mounts.close()


def watch(root: str, files: Iterable[str]) -> Watch | None:
    """A ``Watch`` over ``files`` (real paths under the real directory ``root``, which ends in
    a separator, or "" for "/") and every directory from ``root`` down to each, or None when
    one cannot be made (no inotify, a limit reached, over ``MAX_WATCHES``, a file gone, one not
    on a local file system, a path not under ``root``): check by stat then."""
    libc = _inotify()
    files = list(files)
    if not libc or not files:
        return None
    top = root[:-1] if root else "/"
    dirs = {top}
    for f in files:
        if not f.startswith(root or "/"):
            return None
        d = os.path.dirname(f)
        while len(d) > len(top):
            dirs.add(d)
            d = os.path.dirname(d)
    if len(files) + len(dirs) > MAX_WATCHES:
        return None
    try:
        mounts = open("/proc/self/mountinfo", "rb")  # noqa: SIM115 (the Watch closes it)
    except OSError:
        return None
    try:
        if not _local([*files, *dirs], _mounts()):
            mounts.close()
            return None
    except OSError:
        mounts.close()
        return None
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        mounts.close()
        return None
    made_watch = Watch(fd, mounts)  # (closes fd and mounts when dropped)
    fsencode = os.fsencode
    for d in dirs:
        if libc.inotify_add_watch(fd, fsencode(d), DIR_EVENTS | IN_ONLYDIR | IN_DONT_FOLLOW) < 0:
            return None
    for f in files:
        if libc.inotify_add_watch(fd, fsencode(f), FILE_EVENTS | IN_DONT_FOLLOW) < 0:
            return None
    global made
    made += 1
    return made_watch
