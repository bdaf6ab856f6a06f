"""The worker's look after each job for a process the job left (``handoffd.worker._contain``'s
``child_look``): ``waitpid(-1, NULL, WNOHANG)`` called straight. Through ctypes the same call
cost a ``functools.partial``, the arguments' conversions and libffi's set-up a job, several
times the system call's own user-space work; the pure-Python twins stay in ``_contain`` (the
ctypes call, and ``os.waitpid``) for a build without a compiler."""

from posix.wait cimport WNOHANG, waitpid


def child_look() -> int:
    """``waitpid(-1, WNOHANG)``'s pid: -1 when this process has no child at all (ECHILD; WNOHANG
    rules out EINTR and the arguments are valid), 0 when its children all live, else the pid of
    the one exited child it reaped. The GIL stays held: the call never blocks."""
    return waitpid(-1, NULL, WNOHANG)
