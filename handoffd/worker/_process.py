"""The child side of a WorkerPool process: receive a job, run it, send the outcome, repeat.

Wire format on the duplex pipe (plain pickle, protocol 5, one message per job each way):
  parent -> child: (token, payload, inputs, argument_inclusion, env)
  child -> parent: b"ready" once at start-up, then per job
                   (token, ok, has_value, exc_type, message, traceback, duration)
                   followed, when has_value, by the value's bytes as one raw message
This module is imported in a freshly spawned interpreter, so it must stay light and import nothing that
starts threads or opens sockets.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import time
import traceback
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from handoffd import invoke, values

READY = b"ready"
_INTERNAL_FILES = {__file__, invoke.__file__}


def _user_traceback(exc: BaseException) -> str:
    """The traceback without our own leading frames, so users see their code first."""
    tb: TracebackType | None = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in _INTERNAL_FILES:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _describe(exc: BaseException) -> tuple[str, str, str]:
    try:
        message = str(exc)
    except Exception:
        message = f"<unprintable {type(exc).__name__}>"
    try:
        tb_text = _user_traceback(exc)
    except Exception:
        tb_text = ""
    return type(exc).__qualname__, message, tb_text


def _run_one(
    payload: bytes, inputs: list[Any], inclusion: str, env: dict[str, str] | None
) -> tuple:
    saved: dict[str, str | None] = {}
    if env:
        for name, value in env.items():
            saved[name] = os.environ.get(name)
            os.environ[name] = value
    try:
        result = invoke.call(payload, invoke.resolve(inputs), inclusion)
        try:
            data = values.dumps(result)
        except BaseException as exc:  # an unpicklable result is the user's error
            exc_type, message, _ = _describe(exc)
            return (
                False,
                None,
                exc_type,
                f"the function returned a value that cannot be pickled "
                f"({type(result).__name__}): {message}",
                "",
            )
        return (True, data, "", "", "")
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from user code are errors too
        exc_type, message, tb_text = _describe(exc)
        return (False, None, exc_type, message, tb_text)
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def main(conn: Connection) -> None:
    """Serve jobs until the parent closes the pipe."""
    # Ctrl-C reaches the whole process group; the parent decides what to do, not each worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.freeze()  # start-up objects never need scanning again
    conn.send_bytes(READY)
    recv, send = conn.recv_bytes, conn.send_bytes
    loads, dumps = pickle.loads, pickle.dumps
    clock = time.perf_counter
    while True:
        try:
            data = recv()
        except (EOFError, OSError):
            return
        token, payload, inputs, inclusion, env = loads(data)
        started = clock()
        ok, value, exc_type, message, tb_text = _run_one(payload, inputs, inclusion, env)
        # The value follows as its own raw message: pickling it inside the reply tuple would copy
        # it once more here and once more in the parent (~0.5 ms per MiB each way).
        reply = (token, ok, value is not None, exc_type, message, tb_text, clock() - started)
        try:
            send(dumps(reply, protocol=5))
            if value is not None:
                send(value)
        except (BrokenPipeError, OSError):
            return
