"""Starting and reaping a WorkerPool's processes, never blocking the caller's loop.

A worker is a ``spawn``-ed process connected by one duplex socket pipe. Reaping goes through the
process sentinel, watched by the loop; a process that closed its pipe but lingers is killed after
``EXIT_GRACE``. Killing a worker kills its process group (the worker leads one, see
``_process.main``), so the children its task forked go with it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess

from handoffd.worker import _cancels, _pipe, _process, _watch

# After EOF on a worker's pipe, how long its process may linger before we kill it.
EXIT_GRACE = 1.0
# Socket buffers of a worker's pipe, each way: a job with a 1 MiB input, or a 1 MiB value, is
# written whole without waiting for the other side to read it (the kernel caps this at wmem_max).
PIPE_BUFFER = 4 << 20


RUNNING, EXITED, REAPED = "running", "exited", "reaped"


def state(process: BaseProcess) -> str:
    """Whether the worker runs, has exited (a zombie: its pid still names only it and its group)
    or was reaped. Unlike ``process.exitcode``, looking does not reap it."""
    if process.pid is None:
        return REAPED
    try:
        found = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return REAPED
    return RUNNING if found is None else EXITED


def kill_group(process: BaseProcess) -> None:
    """SIGKILL the worker, its descendants and every process left in its process group, unless it
    was reaped (its pid may name another process then). The descendants go first, while the worker
    (their subreaper) still holds them: a process its task moved to a session of its own is found
    that way, not through the group."""
    now = state(process)
    if now == REAPED:
        return
    pid = process.pid
    assert pid is not None
    if now == RUNNING:
        for child in _watch.descendants(pid, _watch.parent_map()):
            try:
                os.kill(child, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # no group of that id (the worker never got to setpgid): kill it alone
    if now == RUNNING:
        process.kill()


class Processes:
    """The pool's process side: start workers, reap them, kill what is left at close."""

    def __init__(self, ctx: SpawnContext, loop: asyncio.AbstractEventLoop) -> None:
        self._ctx = ctx
        self._loop = loop
        self.exiting: dict[BaseProcess, asyncio.TimerHandle | None] = {}  # being reaped
        self.closed = False

    def start(
        self, name: str, devices: str | None, setup: tuple[str, int, str, float]
    ) -> tuple[BaseProcess, Connection, _cancels.Count | None]:
        """Spawn one worker; ``devices`` is its CUDA_VISIBLE_DEVICES for life (None: inherit ours).
        ``setup`` is (node name for its title, our pid for its parent-death check, the node's
        code dir, seconds between live sends of a job's output or 0). Returns the process, our
        end of its pipe and the count of cancels it reads (``_cancels``; None: it looks always)."""
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        cancels = _cancels.Count.create()
        process = self._ctx.Process(
            target=_process.main,
            args=(child_conn, devices, setup, cancels.for_worker() if cancels else None),
            name=name,
            daemon=True,  # multiprocessing kills it at interpreter exit if close() never ran
        )
        for conn in (parent_conn, child_conn):
            _pipe.widen(conn.fileno(), PIPE_BUFFER)
        if devices is None:
            process.start()
        else:
            # The fresh interpreter must have its device set in its environment from its first
            # instruction (a library reading CUDA_VISIBLE_DEVICES at import, in the re-imported
            # main module, sees it too); spawn passes our environment at exec. The loop thread is
            # the only one that changes it, and only here, around the exec.
            saved = os.environ.get("CUDA_VISIBLE_DEVICES")
            os.environ["CUDA_VISIBLE_DEVICES"] = devices
            try:
                process.start()
            finally:
                if saved is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = saved
        child_conn.close()
        return process, parent_conn, cancels

    def when_exited(self, process: BaseProcess, then: Callable[[int | None], None] | None) -> None:
        """Reap ``process`` without blocking, then call ``then(exitcode)``."""
        loop = self._loop
        if state(process) != RUNNING:
            kill_group(process)  # it died on its own: what its task left in its group goes too
            process.join()
            code = process.exitcode
            process.close()
            if then is not None:
                then(code)
            return

        def exited() -> None:
            loop.remove_reader(process.sentinel)
            timer = self.exiting.pop(process, None)
            if timer is not None:
                timer.cancel()
            kill_group(process)  # it died on its own: what its task left in its group goes too
            process.join()
            code = process.exitcode
            process.close()
            if then is not None and not self.closed:
                then(code)

        def linger() -> None:
            # EOF without exit: the user closed our pipe or hangs in shutdown. Make sure it ends.
            self.exiting[process] = None
            kill_group(process)

        self.exiting[process] = loop.call_later(EXIT_GRACE, linger)
        loop.add_reader(process.sentinel, exited)

    async def close(self, alive: list[BaseProcess]) -> None:
        """Kill ``alive`` and everything being reaped, and wait (polling) until all are gone."""
        self.closed = True
        for process in alive:
            kill_group(process)
            self.exiting.setdefault(process, None)
        procs = list(self.exiting)
        for proc in procs:
            timer = self.exiting.pop(proc)
            if timer is not None:
                timer.cancel()
            self._loop.remove_reader(proc.sentinel)
            kill_group(proc)
        for proc in procs:
            # After SIGKILL a process is gone within milliseconds; poll instead of blocking the loop.
            for _ in range(1000):
                if proc.exitcode is not None:
                    break
                await asyncio.sleep(0.005)
            proc.join(timeout=5)
            proc.close()
