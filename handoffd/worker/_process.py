"""The child side of a WorkerPool process: receive jobs, run them in order, send each outcome, repeat.

Wire format on the duplex pipe (plain pickle, protocol 5):
  parent -> child: one or more pickles back to back in one message, each either a job
                   (token, payload, inputs, argument_inclusion, env, title) or a cancel (token,);
                   a job with no inputs and no env goes as a SHORT_JOB instead (``_pipe``: packed,
                   not pickled), among the pickles or alone, and consecutive ones of one argument
                   inclusion as one RUN (``_pipe``: one head, the payloads' sizes as a column),
                   or as one HEADED run when they are one-int calls of one function (the
                   payloads' common start once, their ints as a column);
                   when the jobs have large input values (_pipe.LARGE bytes or more), the message
                   starts with OUT_OF_BAND and a 4-byte count, and that many raw messages follow
                   it: the values, pickled out of band (protocol 5 buffers) instead of copied into
                   the jobs' pickles
  child -> parent: b"ready" once at start-up, then lists of replies
                   [(token, status, value, exc_type, message, traceback, duration, output),
                    ...] (output: what the job printed and logged, ``capture``, and did not send
                   live); ``value``: False (none), the value's bytes when under INLINE_VALUE, or
                   True: its bytes follow the list as one raw message; or, for a job that
                   ended well with a value under INLINE_VALUE, printed nothing and had no cancel
                   read while it ran (most jobs), KEPT + (token, duration) packed + the value;
                   and, while a job runs, its new output lines (``_live``: b"L" + pickle((token,
                   text)), at most one per interval, none when it prints nothing)
The child keeps the jobs it was sent ahead in order and, before starting each one, reads whatever the
parent sent meanwhile: a cancel of a job not started drops it and is answered with status SKIPPED
(a cancel of a job already ended is ignored; the parent kills the process of a job that started).
The outcome of each job is sent as soon as it ends, never held behind the next job, in one message
with the SKIPPED replies of the cancels read just before it, so the parent can tell from that message
alone whether the next job it sent has started. That read looks at the pipe only while the parent's
count of cancels sent (``_cancels``, shared memory) is ahead of the cancels read here.
This module is imported in a freshly spawned interpreter, so it must stay light and import nothing that
starts threads or opens sockets (the live output's one thread starts when a task first prints).
"""

from __future__ import annotations

import gc
import io
import os
import pickle
import signal
import socket
import struct
import sys
import time
import traceback
from collections import deque
from collections.abc import Iterator
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from handoffd import values
from handoffd.worker import _cancels, _contain, _inbox, _live, _pipe, capture, code_env, invoke

READY = b"ready"
SHORT_JOB, SHORT_BYTE = _pipe.SHORT_JOB, _pipe.SHORT_BYTE  # a job without inputs, unpickled
RUN, RUN_BYTE = _pipe.RUN, _pipe.RUN_BYTE  # a run of such jobs (one head, columns)
HEADED, HEADED_BYTE = _pipe.HEADED, _pipe.HEADED_BYTE  # a run of one-int calls of one function
OUT_OF_BAND = (
    b"O"  # a job message whose large inputs follow as raw messages (never a pickle's start)
)
OUT_OF_BAND_COUNT = struct.Struct("!I")  # after OUT_OF_BAND: how many raw messages follow
# A protocol 5 pickle's start: PROTO 5, FRAME and the frame's length (a pickle under the
# pickler's frame target, 64 KiB, and with no large bytes is that and one frame)
ONE_FRAME = struct.Struct("<3sQ")
_FRAMED = b"\x80\x05\x95"
ERROR, OK, SKIPPED = 0, 1, 2  # reply status
# The usual outcome, a job that ended well with its value inside, nothing printed and no cancel
# read meanwhile, goes as KEPT, the token and the duration packed, then the value's bytes: no
# pickled reply list to write here and to read in the parent (a pickler and an unpickler a job).
KEPT = b"K"  # (never a pickle's first byte, nor READY's or a live message's)
KEPT_BODY = struct.Struct("!qd")  # after KEPT: token, duration; the value is the rest
KEPT_SIZE = 1 + KEPT_BODY.size
_KEPT_FRAMED = struct.Struct("!icqd")  # the frame's length (send_bytes'), KEPT, token, duration
# Values under this many bytes go inside their reply (a copy that small costs less than a message)
INLINE_VALUE = 8 * 1024
_INTERNAL_FILES = {__file__, invoke.__file__, code_env.__file__}
# The commonest results' pickles made without a pickler (its set-up is most of ``pickle.dumps``
# of a small value): None, an int in [0, 65536) and a float, each exactly the bytes ``pickle.dumps(
# result, 5)`` makes (a frame's opening and the opcode, the number, STOP); checked here, and a
# kind whose bytes differ (another pickle module) is pickled as any other result.
_NONE = pickle.dumps(None, 5)
_BYTE_INTS = tuple(pickle.dumps(i, 5) for i in range(256))
_STOP = b"."
_UINT16, _UINT16_HEAD = struct.Struct("<12sHc").pack, pickle.dumps(256, 5)[:12]
_FLOAT, _FLOAT_HEAD = struct.Struct(">12sdc").pack, pickle.dumps(0.5, 5)[:12]
_INT_END = (  # ints below it are packed (the table's are pickle's own)
    65536
    if all(_UINT16(_UINT16_HEAD, i, _STOP) == pickle.dumps(i, 5) for i in (256, 4097, 65535))
    else 256
)
_FLOAT_KIND = (  # floats are packed when this is ``float``
    float
    if all(_FLOAT(_FLOAT_HEAD, f, _STOP) == pickle.dumps(f, 5) for f in (0.5, -1e300, 3.0))
    else None
)


def one_pickle(data: bytes | bytearray) -> bool:
    """Whether the message is exactly one pickle in one frame: read with ``pickle.loads``, not
    cut from a stream (a stream and its unpickler's look-ups are a good part of a no-op
    job's own work). A frame never holds the start of another pickle, so a first frame that ends
    where the message ends is the whole message."""
    size = len(data)
    if size <= ONE_FRAME.size:
        return False
    start, frame = ONE_FRAME.unpack_from(data)
    return start == _FRAMED and frame == size - ONE_FRAME.size  # type: ignore[no-any-return]


def _user_traceback(exc: BaseException) -> str:
    """The traceback without our own leading frames, so users see their code first."""
    tb: TracebackType | None = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in _INTERNAL_FILES:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _describe(exc: BaseException) -> tuple[str, str, str]:
    try:
        if isinstance(exc, ModuleNotFoundError):
            message = code_env.missing_module_hint(exc)
        else:
            message = str(exc)
    except Exception:
        message = f"<unprintable {type(exc).__name__}>"
    try:
        tb_text = _user_traceback(exc)
    except Exception:
        tb_text = ""
    return type(exc).__qualname__, message, tb_text


def _pickled(result: Any) -> tuple:
    """(ok, value's bytes or None, exc_type, message, traceback) of a job's result that plain
    ``pickle`` did not take: ``values.dumps`` (cloudpickle), or the user's error."""
    try:
        return (True, values.dumps(result), "", "", "")
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


def _run_one(
    payload: bytes, inputs: list[Any], inclusion: str, env: dict[str, str] | None
) -> tuple:
    saved: dict[str, str | None] = {}
    if env:
        for name, value in env.items():
            saved[name] = os.environ.get(name)
            os.environ[name] = value
    try:
        return _pickled(invoke.run(payload, inputs, inclusion))
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from user code are errors too
        exc_type, message, tb_text = _describe(exc)
        return (False, None, exc_type, message, tb_text)
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def main(
    conn: Connection,
    devices: str | None = None,
    setup: tuple[str, int, str, float] = ("", 0, "", 0.0),
    cancels: _cancels.Shared | None = None,
) -> None:
    """Serve jobs until the parent closes the pipe. ``devices``: this process's CUDA_VISIBLE_DEVICES
    for its whole life (None: as inherited); ``setup``: (node name, the parent's pid, the node's
    code dir, seconds between live sends of a job's output: 0 sends it all with the outcome);
    ``cancels``: how many cancels the parent has sent (None: look at the pipe after every job)."""
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices  # set at exec already (see _procs.start)
    node, parent_pid, code_dir, live_interval = setup
    _contain.setup(node, parent_pid)
    code_env.configure(node, code_dir)
    # Ctrl-C reaches the whole process group; the parent decides what to do, not each worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    blocks = capture.JobBlocks()  # each job's output capture (the log handler stays on)
    quiet = capture.Captured()  # every job's buffer in turn when none leaves live (reset per job)
    gc.freeze()  # start-up objects never need scanning again
    conn.send_bytes(READY)
    send = conn.send_bytes
    load, loads, dumps = pickle.load, pickle.loads, pickle.dumps
    clock = time.perf_counter
    pending: deque[tuple] = deque()
    queue, short_jobs = pending.append, _pipe.short_jobs
    queue_run, short_run, headed_run = pending.extend, _pipe.short_run, _pipe.headed_run
    raw = socket.socket(fileno=os.dup(conn.fileno()))  # large inputs, read into their own buffers
    inbox = _inbox.Inbox(raw)  # every read of the parent's messages (not conn's: 2 reads each)
    sendall, framed_one = raw.sendall, _pipe.framed_one  # a reply's write
    # A KEPT reply's write: ``os.write`` parses its arguments in C (``sendall`` in a format
    # string each call); the socket blocks, so it writes the whole reply unless a signal cuts
    # it short, and then ``sendall`` writes the rest.
    write, out_fd = os.write, raw.fileno()
    recv = inbox.next
    live = _live.LiveSender(send, live_interval) if live_interval > 0 else None
    # The parent's count of the cancels it sent, and ours of those read: equal, none waits
    sent: memoryview | tuple[int] = (-1,)  # (without the count: never equal, always look)
    if cancels is not None:
        try:
            sent = cancels.seen()
        except (OSError, ValueError):
            pass
    absorbed = 0

    def absorb(data: bytes | bytearray) -> list[tuple]:
        """Take in one message from the parent (and the raw messages that follow it); returns the
        replies for the jobs it cancels."""
        size = len(data)
        buffers: Iterator[Any] | None = None  # (an out-of-band message's raw messages)
        first = data[:1]
        if first == HEADED:
            at = headed_run(data, 0, queue_run)
            if at == size:  # a run alone (a chain's jobs fed at once: W1's)
                return []
        elif first == RUN:
            at = short_run(data, 0, queue_run)
            if at == size:
                return []
        elif first == SHORT_JOB:
            at = short_jobs(data, 0, queue)
            if at == size:  # jobs alone (a one-task run's)
                return []
        elif one_pickle(data):  # a job or a cancel alone: no stream to cut pickles from
            item = loads(data)
            if len(item) > 1:
                pending.append(item)
                return []
            return cancel(item[0])
        elif first == OUT_OF_BAND:
            (count,) = OUT_OF_BAND_COUNT.unpack_from(data, 1)
            buffers = iter([recv() for _ in range(count)])
            at = 1 + OUT_OF_BAND_COUNT.size
        else:
            at = 0
        stream = None  # (made at the first pickle: a batch of short jobs needs none)
        skipped: list[tuple] = []
        while at < size:
            tag = data[at]
            if tag == SHORT_BYTE:
                at = short_jobs(data, at, queue)
                continue
            if tag == RUN_BYTE:
                at = short_run(data, at, queue_run)
                continue
            if tag == HEADED_BYTE:
                at = headed_run(data, at, queue_run)
                continue
            if stream is None:
                stream = io.BytesIO(data)
            stream.seek(at)
            item = load(stream, buffers=buffers)
            at = stream.tell()
            if len(item) > 1:
                pending.append(item)
                continue
            skipped += cancel(item[0])
        return skipped

    def cancel(token: int) -> list[tuple]:
        """The SKIPPED reply of the job ``token`` if it waits here (dropped), else none."""
        nonlocal absorbed
        absorbed += 1
        for job in pending:
            if job[0] == token:
                pending.remove(job)
                return [(token, SKIPPED, False, "", "", "", 0.0, "")]
        return []

    retitle, prefix = _contain.titling()
    idle_title = prefix + "idle"
    titled = False
    # Each job's output goes into one buffer, the same for every job (the live sender's or
    # ``quiet``); the capture is armed before the first job of a run of jobs that follow one
    # another and disarmed only when the worker waits for more: between two jobs it is checked
    # (a job may have replaced ``sys.stdout`` or the handler, or set the root's level) and the
    # buffer is read and emptied only when the job wrote into it.
    out = live.buffer if live is not None else quiet
    armed = False
    root, level, handler = blocks.root, blocks.level, blocks.handler  # (fixed at its start)
    call_plain, run, end_children = invoke.call_plain, invoke.run, _contain.end_children
    call_literal = invoke.call_literal
    none, byte_ints, int_end, stop = _NONE, _BYTE_INTS, _INT_END, _STOP  # (a result's pickle)
    uint16, uint16_head, pack_float, float_head = _UINT16, _UINT16_HEAD, _FLOAT, _FLOAT_HEAD
    float_kind = _FLOAT_KIND
    # ``end_children``'s first step and ``inbox.waiting``'s, done here: a job that started no
    # process and a pipe with nothing new (most jobs) cost a system call each, not a call more
    children, look = _contain.child_look(), inbox.poller.poll
    try:
        while True:
            if not pending:
                if armed:
                    blocks.disarm()
                    armed = False
                if titled:
                    retitle(idle_title)
                    titled = False
                # Idle: wait for jobs. Cancels of jobs sent ahead that come in later are read
                # right before the running job's outcome is sent (below); the next job then
                # starts at once, without another look at the pipe: a cancel that arrives after
                # that look is for a job the parent will see started (the outcome message does
                # not drop it), and it kills the process. One system call less per job.
                try:
                    skipped = absorb(recv())
                    if skipped:
                        send(dumps(skipped, protocol=5))
                except (EOFError, OSError):
                    return
                if not pending:
                    continue
            token, payload, inputs, inclusion, env, title = pending.popleft()
            if title:
                try:
                    retitle(prefix + title)
                except ValueError:  # a NUL or a lone surrogate (setproctitle refuses them): a
                    # title is for ps only, so it shows escaped, never ends the worker
                    retitle(prefix + ascii(title)[1:-1])
                titled = True
            if live is not None:  # ``live.start(token)`` in line (its buffer is ``out``)
                if out._head_size or out._tail_size or out.dropped:
                    out.reset()
                live._job = (token, out)
            if not (  # ``blocks.armed(out)`` in line: a call less a job
                armed
                and sys.stdout is out
                and sys.stderr is out
                and root.level == level
                and handler in root.handlers
            ):
                blocks.arm(out)
                armed = True
            started = clock()
            if env:  # (a GPU job's devices, set around its call)
                ok, value, exc_type, message, tb_text = _run_one(payload, inputs, inclusion, env)
            else:  # the call and its result, no more frames than that (W1's, W2's jobs)
                try:
                    if type(payload) is int:  # a HEADED run's: its int, ``inputs`` the start
                        result = call_literal(inputs, payload, inclusion)
                    elif inputs:
                        result = run(payload, inputs, inclusion)
                    else:
                        result = call_plain(payload, inclusion)
                except BaseException as exc:  # SystemExit, KeyboardInterrupt: errors too
                    ok, value = False, None
                    exc_type, message, tb_text = _describe(exc)
                else:
                    ok, exc_type, kind = True, "", type(result)
                    if kind is int and 0 <= result < int_end:
                        value = (
                            byte_ints[result] if result < 256 else uint16(uint16_head, result, stop)
                        )
                    elif result is None:
                        value = none
                    elif kind is float_kind:
                        value = pack_float(float_head, result, stop)
                    else:
                        try:
                            value = dumps(result, 5)  # (protocol 5, positional)
                        except BaseException:  # (values.dumps tries pickle again, then cloudpickle)
                            ok, value, exc_type, message, tb_text = _pickled(result)
            if children() >= 0:  # (-1: no child at all, not even a zombie: most jobs)
                end_children()  # what the task started ends with it, before its outcome is sent
            # A value follows as its own raw message: pickling it inside the reply tuple would
            # copy it once more here and once more in the parent (~0.5 ms per MiB each way). A
            # small one rides in the reply: the parent reads one message per job, not two.
            inline = value is not None and len(value) < INLINE_VALUE
            duration = clock() - started
            # ``live.hold()`` in line: no live output of the job after its outcome. The job is
            # taken off first: a live thread started from here on finds none and sends nothing
            # of it; only one that exists already may be sending it now, and its lock is waited
            # for (most workers never start the thread: no lock a job).
            held = False
            if live is not None:
                live._job = None
                if live._thread is not None:
                    live.lock.acquire()
                    held = True
            try:
                # Cancels that came in while the job ran go out in the same message as its
                # outcome: the parent then knows the next job it sent started exactly when its
                # cancel is not in that message (a separate SKIPPED reply read after the outcome
                # made it kill a worker whose next job had been dropped).
                skipped = []
                if inbox.buf or sent[0] != absorbed:  # (else no cancel can be waiting)
                    while inbox.buf or (look(0) and inbox.waiting()):
                        skipped += absorb(recv())
                if out._head or out._tail or out.dropped:  # it wrote something not sent live
                    text = out.text()
                    if live is None:
                        out.reset()
                else:
                    text = ""
                if inline and not skipped and not text:  # (inline: it ended well)
                    size = KEPT_SIZE + len(value)  # type: ignore[arg-type]
                    kept_reply = _KEPT_FRAMED.pack(size, KEPT, token, duration) + value  # type: ignore[operator]
                    wrote = write(out_fd, kept_reply)
                    if wrote < size + 4:
                        sendall(memoryview(kept_reply)[wrote:])
                    continue
                if ok:
                    message = tb_text = ""
                kept = value if inline else value is not None
                reply = (token, OK if ok else ERROR, kept, exc_type, message, tb_text, duration)
                done = dumps([*skipped, (*reply, text)], protocol=5)
                if value is None or inline:
                    sendall(framed_one(done))
                elif len(value) < _pipe.LARGE:
                    raw.sendall(_pipe.framed(done, value))  # one write, one wake-up
                else:
                    send(done)
                    send(value)
            except (EOFError, BrokenPipeError, OSError):
                return
            finally:
                if held:
                    live.lock.release()  # type: ignore[union-attr]
    finally:
        if armed:  # (an error of this loop's own is told on the process's stderr)
            blocks.disarm()
