"""The per-user runtime directory: the pid files ``handoffd stop`` reads, and the local key.

Everything in it is trusted: ``handoffd stop`` signals the pid a file names, and every keyless
daemon and client of the user authenticates with the local key kept there. The default location is
in the shared temp dir (``/tmp/handoffd-<uid>``), where another local user can create the directory
first, and a directory someone else can write lets them swap any file in it. So the directory is
created 0700 and refused, with what is wrong and how to fix it, when it is a symlink, is owned by
another uid or is group/world writable (its parent as well, unless the parent is sticky, like
``/tmp``, or root's). Files are read from it without following symlinks and checked the same way.
"""

from __future__ import annotations

import os
import stat

from handoffd.errors import HandoffError

ENV = "HANDOFFD_RUNTIME_DIR"


class RuntimeDirError(HandoffError):
    """The runtime directory or a file in it is not private to us (the message says how to fix it)."""


def default_path() -> str:
    """HANDOFFD_RUNTIME_DIR, else ``$XDG_RUNTIME_DIR/handoffd-<uid>``, else ``/tmp/handoffd-<uid>``."""
    path = os.environ.get(ENV)
    if not path:
        base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
        path = os.path.join(base, f"handoffd-{os.geteuid()}")
    return os.path.abspath(path)


def runtime_dir(create: bool = True) -> str:
    """The checked runtime directory (created 0700 if ``create``; else it may not exist yet)."""
    path = default_path()
    if create:
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o700, exist_ok=True)
        try:
            os.mkdir(path, 0o700)  # never widened by the umask; an existing one is checked below
        except FileExistsError:
            pass
        except OSError as exc:
            raise RuntimeDirError(
                f"cannot create the handoffd runtime dir {path}: {exc.strerror}; set {ENV} to a "
                "directory of yours"
            ) from None
    elif not os.path.lexists(path):
        return path
    check_dir(path)
    return path


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def check_dir(path: str) -> None:
    """Raise RuntimeDirError unless ``path`` is a real directory of ours that only we can write."""
    me = os.geteuid()
    fix = f"remove it (as its owner or root) or set {ENV} to a directory of yours with mode 0700"
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise RuntimeDirError(
            f"cannot inspect the handoffd runtime dir {path}: {exc.strerror}"
        ) from None
    if stat.S_ISLNK(st.st_mode):
        raise RuntimeDirError(
            f"the handoffd runtime dir {path} is a symlink (to {os.readlink(path)}); handoffd keeps "
            f"its pid files and local key there and needs a real directory: {fix}"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeDirError(f"the handoffd runtime dir {path} is not a directory: {fix}")
    if st.st_uid != me:
        raise RuntimeDirError(
            f"the handoffd runtime dir {path} is owned by {_owner(st.st_uid)}, not by you "
            f"({_owner(me)}): whoever created it could make handoffd signal any process or trust "
            f"a key of theirs; {fix}"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise RuntimeDirError(
            f"the handoffd runtime dir {path} has mode {mode:04o}: other users can add or replace "
            f"files in it; run `chmod 700 {path}` (or {fix})"
        )
    parent = os.path.dirname(path)
    try:
        pst = os.stat(parent)
    except OSError:
        return
    pmode = stat.S_IMODE(pst.st_mode)
    if pst.st_uid not in (me, 0) or (pmode & 0o022 and not pmode & stat.S_ISVTX):
        # Whoever can write the parent can rename our directory away and put theirs in its place.
        raise RuntimeDirError(
            f"the handoffd runtime dir {path} is inside {parent}, which {_owner(pst.st_uid)} "
            f"(mode {pmode:04o}) can change: another user could swap the directory; set {ENV} to "
            "a directory in one only you (or root) can write"
        )


def open_private(path: str, what: str, *, secret: bool) -> tuple[int, os.stat_result]:
    """Open ``path`` read-only (never through a symlink) and check it is a regular file of ours that
    nobody else can write (``secret``: nor read). Returns (fd, stat); raises FileNotFoundError if
    it is missing, RuntimeDirError if it is not private."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        if os.path.islink(path):
            raise RuntimeDirError(f"{what} {path} is a symlink; remove it") from None
        raise RuntimeDirError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        problem = ""
        if not stat.S_ISREG(st.st_mode):
            problem = "is not a regular file"
        elif st.st_uid != os.geteuid():
            problem = f"is owned by {_owner(st.st_uid)}, not by you ({_owner(os.geteuid())})"
        elif stat.S_IMODE(st.st_mode) & (0o077 if secret else 0o022):
            problem = (
                f"has mode {stat.S_IMODE(st.st_mode):04o}: other users can "
                f"{'read or write' if secret else 'write'} it"
            )
        if problem:
            raise RuntimeDirError(
                f"{what} {path} {problem}; remove it"
                + (f" or run `chmod 600 {path}`" if "mode" in problem else "")
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_private(path: str, what: str, *, secret: bool, limit: int = 1 << 16) -> bytes:
    """The content of ``path`` after ``open_private``'s checks."""
    fd, _ = open_private(path, what, secret=secret)
    with os.fdopen(fd, "rb") as f:
        return f.read(limit)


def write_private(path: str, data: bytes) -> None:
    """Write ``path`` with mode 0600, never through a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its old mode through O_TRUNC
        f.write(data)
