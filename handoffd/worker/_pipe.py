"""A worker's pipe: reading it in the parent in as few system calls and copies as possible, and the
raw large messages both sides exchange.

``multiprocessing.Connection.recv_bytes`` reads a 4-byte length and then the message, two reads per
message, and a readiness check is one more call per message. Once the loop says the pipe is
readable, ``Reader.fill`` takes whatever is there in one non-blocking read (more while reads come
back full) and ``Reader.next`` cuts messages out of it. The framing is Connection's own (both sides
still send with ``send_bytes``): a signed big-endian 4-byte length, or -1 and an 8-byte length.

Large messages (``LARGE`` bytes or more: values, and job inputs sent out of band) are not gathered
in the buffer: ``fill`` stops reading once the buffer ends inside one, and ``next`` reads its rest
straight into a bytearray of its size (the kernel's copy and the few bytes ``fill`` had already read
are the only copies; through the buffer it was three). They come back as ``bytearray``; smaller
messages as ``bytes``. ``_inbox.Inbox`` is the same for the worker's blocking reads.

Huge messages (``THREAD_BYTES`` or more: a big task result) are read by a thread of their own into
an anonymous mmap of their size, which comes back as the message: read on the loop, even in slices,
a 1.1 GiB result held the daemon's loop for seconds (growing the bytearray copied it again and again,
and the kernel's copy faulted in every page while holding the GIL's turn). The thread holds no GIL
while it waits in ``recv_into``; the caller stops watching the pipe meanwhile (``reading``) and is
told on the loop when it is whole (``wake``).
"""

from __future__ import annotations

import _thread
import mmap
import os
import pickle
import socket
import struct
import threading
from array import array
from collections import deque
from collections.abc import Callable
from itertools import accumulate, repeat
from typing import TYPE_CHECKING, Any

from handoffd.worker import _cancels
from handoffd.worker._heads import headed

if TYPE_CHECKING:  # the worker side imports this module and runs no event loop
    import asyncio

CHUNK = 256 * 1024
LARGE = 64 * 1024  # messages of this size or more are read into a buffer of their own
# At most this much of a large message is read per wake-up of the loop: a 600 MiB value read
# whole held the daemon's event loop ~0.4 s (the pipe stays readable, so the loop comes back).
SLICE = 16 << 20
# Messages this large are read off the loop by a thread of their own (a Reader with ``wake``); one
# SLICE read on the loop cost up to ~0.12 s on a loaded machine (page faults of the fresh memory).
THREAD_BYTES = 8 << 20
_SHORT = struct.Struct("!i")
FRAME = _SHORT  # (a small message's frame: its length, what ``Writer.send_framed`` takes)
_LONG = struct.Struct("!Q")
# A job with no inputs and no env of its own (a no-op's, a one-task run's) goes as SHORT_JOB, its
# head packed (token, whether its inclusion is "as_list", the title's and the payload's sizes),
# the title (UTF-8) and the payload: no pickle to write here and none to read in the worker. Any
# other job is a pickle (``pickle_job``); both may share one message.
SHORT_JOB = b"J"  # (never a pickle's first byte)
SHORT_HEAD = struct.Struct("!qBII")
_SHORT_JOB_HEAD = 1 + SHORT_HEAD.size
SHORT_BYTE = SHORT_JOB[0]
# A run of such jobs sent together (a chain's jobs fed at once: W1's) goes as one RUN: one head
# (the first job's token, the tokens being consecutive, the count, "as_list" for all, the titles'
# size), the payloads' sizes as a column of native uint32s (the pipe never leaves this machine),
# the titles joined by NUL in one UTF-8 string, and the payloads back to back. One head, one
# encode and one join a run, not one of each a job, in the parent; one unpack, one decode and
# C-level slices in the worker, not a round of ``short_jobs``' loop a job.
RUN = b"R"  # (never a pickle's first byte, nor SHORT_JOB's or OUT_OF_BAND's)
RUN_HEAD = struct.Struct("!qIBI")
_RUN_START = 1 + RUN_HEAD.size
RUN_BYTE = RUN[0]
_NO_INPUTS = ()  # every job of a run has none (the worker only tests it)
# A run whose payloads are one-int calls of one function (``values.dumps_call``'s commonest form,
# W1's ``f(i)``: the code part and the literals' opening, the int's 4 bytes, the same close) goes
# as a HEADED run: the head (a RUN's, and the start's size), the titles, the start once (~0.5 kB
# for W1) and the ints' bytes as a column. Every payload is the start, its 4 bytes and the close,
# so the message is the payloads exactly; the worker decodes the function once a run and calls it
# on each int (``invoke.call_literal``), with no payload bytes, compare or decode a job.
HEADED = b"H"  # (never a pickle's first byte, nor RUN's, SHORT_JOB's or OUT_OF_BAND's)
HEADED_HEAD = struct.Struct("!qIBII")
_HEADED_START = 1 + HEADED_HEAD.size
HEADED_BYTE = HEADED[0]


def framed_one(data: bytes) -> bytes:
    """One message (under 2 GiB) framed as ``send_bytes`` frames it: the worker's reply, sent with
    one ``sendall`` (``send_bytes`` is three Python calls and checks more, ~1 us a reply)."""
    return _SHORT.pack(len(data)) + data


def framed(*messages: bytes) -> bytes:
    """``messages`` framed as ``send_bytes`` frames each (all under 2 GiB), in one buffer: the
    worker writes a small value with its reply in one system call and one wake-up of the parent."""
    return b"".join(part for data in messages for part in (_SHORT.pack(len(data)), data))


def _header(buf: bytearray, at: int) -> tuple[int, int] | None:
    """(header length, message size) of the message starting at ``at``; None if incomplete."""
    if len(buf) < at + 4:
        return None
    (size,) = _SHORT.unpack_from(buf, at)
    if size != -1:
        return 4, size
    if len(buf) < at + 12:
        return None
    return 12, _LONG.unpack_from(buf, at + 4)[0]


def cut(buf: bytearray, head: int, end: int) -> bytes | bytearray:
    """The whole message at ``buf[head:end]`` (its header before ``head``), cut off the front of
    ``buf``: a large one (``LARGE`` or more) as a ``bytearray`` slice, a smaller one as ``bytes``
    (one copy)."""
    if end - head >= LARGE:
        message: bytes | bytearray = buf[head:end]
    else:
        message = bytes(memoryview(buf)[head:end])
    del buf[:end]
    return message


def _read_rest(sock: socket.socket, out: bytearray, have: int) -> None:
    """Fill ``out[have:]`` from a blocking socket; EOFError if the pipe ends first."""
    view = memoryview(out)
    while have < len(out):
        n = sock.recv_into(view[have:], 0, socket.MSG_WAITALL)
        if not n:
            raise EOFError
        have += n


class Reader:
    __slots__ = (
        "sock",
        "buf",
        "eof",
        "edge",
        "scratch",
        "large",
        "have",
        "size",
        "pending",
        "wake",
        "thread",
        "failed",
        "whole",
    )

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=os.dup(fd))  # the pipe's end stays blocking for writes
        self.buf = bytearray()
        self.eof = False
        self.edge = 0  # offset in buf of the first message fill() has not seen whole
        # Reads land here first: recv(CHUNK) allocated (and the kernel faulted in) a fresh
        # 256 KiB object on every call, ~25 us per wake-up for a reply of a few dozen bytes.
        self.scratch = memoryview(bytearray(CHUNK))
        # a large message read in part (``have`` bytes); an mmap while a thread reads a huge one
        self.large: bytearray | mmap.mmap | None = None
        self.have = 0
        self.size = 0  # its size: ``large`` grows to it as it comes
        self.pending: list[Any] = []  # replies read whose values are still coming (_replies)
        # Called from the reading thread once a huge message is whole (or the pipe failed): the
        # owner of the loop schedules its next read. None: huge messages are read in slices.
        self.wake: Callable[[], object] | None = None
        # Set by the thread reading a huge message once it is over (None: no such read).
        self.thread: threading.Event | None = None
        self.failed = False  # the thread's read hit EOF or an error
        # A read into an empty buffer that was one whole small message, the usual reply: kept
        # as it is, ahead of ``buf`` (``next`` gives it first), not appended and cut.
        self.whole: bytes | None = None

    @property
    def reading(self) -> bool:
        """Whether a thread is reading a huge message now (the pipe is not to be watched)."""
        return self.thread is not None and not self.thread.is_set()

    def close(self) -> None:
        if self.thread is not None:
            try:
                self.sock.shutdown(socket.SHUT_RD)  # ends the thread's blocking read
            except OSError:
                pass
        self.sock.close()

    def fill(self) -> None:
        """Read what is ready without blocking (up to the start of a large message still
        arriving); ``eof`` once the other end closed."""
        if self.large is not None:
            return  # the pipe holds the rest of that message: ``next`` reads it
        try:
            scratch, recv_into, buf = self.scratch, self.sock.recv_into, self.buf
            while True:
                n = recv_into(scratch, CHUNK, socket.MSG_DONTWAIT)
                if not n:
                    self.eof = True
                    return
                if (
                    4 < n < LARGE
                    and not buf
                    and self.whole is None
                    and _SHORT.unpack_from(scratch)[0] == n - 4
                ):
                    self.whole = bytes(scratch[4:n])  # (a short read: nothing more was there)
                    return
                buf += scratch[:n]
                if n < CHUNK or self._in_large():
                    return
        except BlockingIOError:
            return
        except OSError:
            self.eof = True

    def _in_large(self) -> bool:
        """Whether the buffer ends inside a large message (``next`` reads its rest directly)."""
        buf, at = self.buf, self.edge
        while True:
            header = _header(buf, at)
            if header is None:
                self.edge = at
                return False
            end = at + header[0] + header[1]
            if end > len(buf):
                self.edge = at
                return header[1] >= LARGE
            at = end

    def next(self, wait: bool = False) -> bytes | bytearray | mmap.mmap | None:
        """The next whole message, or None if it is not all here (``wait``: block until it is;
        EOFError if the pipe ends first)."""
        whole = self.whole
        if whole is not None:
            self.whole = None
            return whole
        buf = self.buf
        if self.large is not None:
            return self._more(wait)
        if not buf and not wait:  # (the look after a read's last message: nothing to cut)
            return None
        if len(buf) >= 4:  # (a whole small message at the front, most replies of a batch)
            size = _SHORT.unpack_from(buf)[0]
            end = 4 + size
            if 0 <= size < LARGE and end <= len(buf):  # ``_header`` and ``cut`` in line
                small = bytes(memoryview(buf)[4:end])
                del buf[:end]
                edge = self.edge - end
                self.edge = edge if edge > 0 else 0
                return small
        while True:
            header = _header(buf, 0)
            if header is not None:
                head, size = header
                end = head + size
                if len(buf) >= end:
                    message = cut(buf, head, end)
                    self.edge = max(0, self.edge - end)
                    return message
                if size >= THREAD_BYTES and self.wake is not None and not wait:
                    self._read_off_loop(head, size)
                    return None
                if size >= LARGE:
                    # Its rest goes straight into a buffer of its own: the worker is writing it
                    # right now (it writes a message whole; fill() stopped reading at it).
                    # Grown as it comes, not made whole at once: bytearray(600 MiB) zeroes
                    # it on the loop, ~0.3 s; a growing one is remapped, not copied.
                    out = bytearray(memoryview(buf)[head:])
                    del buf[:]
                    self.edge = 0
                    self.large, self.have, self.size = out, len(out), size
                    return self._more(wait)
            if not wait:
                return None
            if self.eof:
                raise EOFError
            # Blocking: the worker is writing the rest right now. Into the scratch buffer, as in
            # fill(): recv(CHUNK) allocated a fresh 256 KiB object per call.
            n = self.sock.recv_into(self.scratch, CHUNK)
            if not n:
                self.eof = True
                raise EOFError
            buf += self.scratch[:n]

    def _read_off_loop(self, head: int, size: int) -> None:
        """Start a thread reading the rest of a huge message into an mmap of its size (no
        zero-filling pass: its pages are faulted in by the kernel's copy, in the thread)."""
        buf = self.buf
        out = mmap.mmap(-1, size)
        have = len(buf) - head
        out[:have] = memoryview(buf)[head:]
        del buf[:]
        self.edge = 0
        self.large, self.have, self.size = out, have, size
        self.failed = False
        self.thread = threading.Event()
        # Not threading.Thread.start(): it waits until the new thread runs, up to ~0.1 s on
        # the loop on a loaded machine (py-spy).
        _thread.start_new_thread(self._read_huge, (out, have, self.thread))

    def _read_huge(self, out: mmap.mmap, have: int, over: threading.Event) -> None:
        try:
            with memoryview(out) as view:
                while have < len(out):
                    n = self.sock.recv_into(view[have:], 0, socket.MSG_WAITALL)
                    if not n:
                        raise EOFError
                    have += n
        except (EOFError, OSError, ValueError):  # (ValueError: closed under us)
            self.failed = True
        over.set()  # (before ``wake``: the thread is still alive then)
        wake = self.wake
        if wake is not None:
            try:
                wake()
            except RuntimeError:  # the loop is closed: nobody waits for it any more
                pass

    def _huge(self, wait: bool) -> mmap.mmap | None:
        """The huge message the thread read, once it is whole (None while it reads)."""
        thread = self.thread
        assert thread is not None
        if not thread.is_set():
            if not wait:
                return None
            thread.wait()
        self.thread = None
        out = self.large
        self.large, self.have = None, 0
        if self.failed:
            self.eof = True
            raise EOFError
        assert isinstance(out, mmap.mmap)
        return out

    def _more(self, wait: bool) -> bytearray | mmap.mmap | None:
        """Read more of the large message under way: up to ``SLICE`` bytes without blocking
        (None if it is still not whole), or all of it when ``wait``."""
        if self.thread is not None:
            return self._huge(wait)
        out, have, size = self.large, self.have, self.size
        assert isinstance(out, bytearray)
        stop = size if wait else min(size, have + SLICE)
        if len(out) < stop:
            out.extend(bytes(stop - len(out)))
        try:
            if wait:
                _read_rest(self.sock, out, have)
                have = size
            else:
                with memoryview(out) as view:
                    while have < stop:
                        n = self.sock.recv_into(view[have:stop], 0, socket.MSG_DONTWAIT)
                        if not n:
                            raise EOFError
                        have += n
        except BlockingIOError:
            pass
        except (EOFError, OSError):
            self.eof = True
            self.large = None
            raise EOFError from None
        if have < size:
            self.have = have
            return None
        self.large, self.have = None, 0
        return out


def widen(fd: int, size: int) -> None:
    """Give one end of a worker's pipe ``size`` bytes of socket buffer each way."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return  # not a socket (another platform's pipe): its default buffers do
    try:
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, size)
    except OSError:
        pass
    finally:
        sock.detach()  # the fd stays the Connection's


def pickle_job(token: int, job: Any) -> tuple[bytes, list[pickle.PickleBuffer]]:
    """A job as the worker reads it, and its large input values, which travel out of band (the
    pickle refers to them) as raw messages instead of being copied into the pickle. Payloads may
    come as memoryviews (a large frame as received): they go as bytes (the worker caches them by
    value)."""
    payload = job.payload if type(job.payload) is bytes else bytes(job.payload)
    if not job.inputs and not job.env:
        title = job.title.encode("utf-8", "surrogatepass")
        as_list = job.argument_inclusion == "as_list"
        head = SHORT_HEAD.pack(token, as_list, len(title), len(payload))
        return b"".join((SHORT_JOB, head, title, payload)), []
    buffers: list[pickle.PickleBuffer] = []
    inputs = _out_of_band(job.inputs) if job.inputs else job.inputs
    data = pickle.dumps(
        (token, payload, inputs, job.argument_inclusion, job.env, job.title),
        protocol=5,
        buffer_callback=buffers.append,
    )
    return data, buffers


def short_jobs(data: bytes | bytearray, at: int, into: Callable[[tuple], object]) -> int:
    """The jobs (each as ``pickle_job``'s pickle loads: token, payload, inputs, argument
    inclusion, env, title) of the SHORT_JOB at ``data[at]`` and of those right after it, handed
    to ``into`` in order; returns where the message ends or an item of another kind starts.
    Payloads come back as bytes (a large message's bytearray too: payloads are cache keys). One
    frame for a batch of jobs (a no-op job's own Python is a few hundred opcodes: a call and the
    caller's loop a job were a tenth of them)."""
    size, unpack = len(data), SHORT_HEAD.unpack_from
    while True:
        token, as_list, title_size, payload_size = unpack(data, at + 1)
        middle = at + _SHORT_JOB_HEAD + title_size
        at = middle + payload_size
        if at > size:
            raise ValueError(f"a job cut short: {at - size} bytes missing")
        payload = data[middle:at]
        if type(payload) is not bytes:
            payload = bytes(payload)
        title = data[middle - title_size : middle].decode("utf-8", "surrogatepass")
        into((token, payload, [], "as_list" if as_list else "variadic", None, title))
        if at == size or data[at] != SHORT_BYTE:
            return at


# (the compiled test itself, no wrapper's frame a run; a name of this module's so a test can
# have the pool send every run plain)
_headed = headed


def run_message(
    first: int, as_list: bool, titles: list[str], payloads: list[bytes]
) -> bytes | None:
    """The RUN of the jobs with tokens ``first``, ``first + 1``, ... (no inputs, no env, one
    argument inclusion), their titles and payloads (bytes) in order, HEADED when the payloads are
    one-int calls of one start (``_heads.headed``: one compiled look at each payload in
    place, ``values.one_int_run``'s answer); None when a title holds a NUL (it could not be told
    from the separator: the caller sends those jobs one by one)."""
    text = "\0".join(titles)
    if text.count("\0") != len(titles) - 1:
        return None
    encoded = text.encode("utf-8", "surrogatepass")
    found = _headed(payloads)
    if found is not None:
        start, ints = found
        head = HEADED_HEAD.pack(first, len(payloads), as_list, len(encoded), len(start))
        return b"".join((HEADED, head, encoded, start, ints))
    parts = [
        RUN,
        RUN_HEAD.pack(first, len(payloads), as_list, len(encoded)),
        array("I", map(len, payloads)).tobytes(),
        encoded,
    ]
    parts += payloads
    return b"".join(parts)


def short_run(data: bytes | bytearray, at: int, extend: Callable[[Any], object]) -> int:
    """The jobs of the RUN at ``data[at]`` (each as ``short_jobs`` hands one over), handed to
    ``extend`` as one iterable, in order; returns where the run ends. ValueError when the run is
    cut short or its titles do not match its count (nothing is handed over then)."""
    first, count, as_list, titles_size = RUN_HEAD.unpack_from(data, at + 1)
    at += _RUN_START
    sizes_end = at + 4 * count
    titles_end = sizes_end + titles_size
    if titles_end > len(data):
        raise ValueError("a run cut short in its head")
    if type(data) is not bytes:
        data = bytes(data)  # (a large message's bytearray: payloads are cache keys, as bytes)
    sizes = memoryview(data)[at:sizes_end].cast("I")
    ends = list(accumulate(sizes, initial=titles_end))
    sizes.release()
    end = ends[-1]
    if end > len(data):
        raise ValueError(f"a run cut short: {end - len(data)} bytes missing")
    titles = data[sizes_end:titles_end].decode("utf-8", "surrogatepass").split("\0")
    if len(titles) != count:
        raise ValueError(f"a run of {count} jobs with {len(titles)} titles")
    payloads = map(data.__getitem__, map(slice, ends, ends[1:]))
    inclusion = "as_list" if as_list else "variadic"
    extend(
        zip(
            range(first, first + count),
            payloads,
            repeat(_NO_INPUTS),
            repeat(inclusion),
            repeat(None),
            titles,
        )
    )
    return end


def headed_run(data: bytes | bytearray, at: int, extend: Callable[[Any], object]) -> int:
    """The jobs of the HEADED run at ``data[at]``, handed to ``extend`` as one iterable, in order:
    each (token, its int, the run's start, inclusion, None, title), which the worker calls as
    ``invoke.call_literal`` (its payload is the start, the int's 4 bytes and the close); returns
    where the run ends. ValueError when the run is cut short or its titles do not match its count
    (nothing is handed over then)."""
    first, count, as_list, titles_size, start_size = HEADED_HEAD.unpack_from(data, at + 1)
    at += _HEADED_START
    titles_end = at + titles_size
    start_end = titles_end + start_size
    end = start_end + 4 * count
    if end > len(data):
        raise ValueError(f"a run cut short: {end - len(data)} bytes missing")
    titles = bytes(data[at:titles_end]).decode("utf-8", "surrogatepass").split("\0")
    if len(titles) != count:
        raise ValueError(f"a run of {count} jobs with {len(titles)} titles")
    start = bytes(data[titles_end:start_end])
    literals = struct.unpack_from(f"<{count}i", data, start_end)  # (a pickle's BININT)
    inclusion = "as_list" if as_list else "variadic"
    extend(
        zip(
            range(first, first + count),
            literals,
            repeat(start),
            repeat(inclusion),
            repeat(None),
            titles,
        )
    )
    return end


def _out_of_band(inputs: list[Any]) -> list[Any]:
    """``inputs`` with each value of LARGE bytes or more wrapped for out-of-band pickling
    (the same list when there is none)."""
    out: list[Any] | None = None
    for index, item in enumerate(inputs):
        tag = item[0]
        if tag == "value" and len(item[1]) >= LARGE:
            new: tuple[Any, ...] = ("value", pickle.PickleBuffer(item[1]))
        elif tag == "inline" and len(item) > 3:
            nested = _out_of_band(item[3]) if item[3] else item[3]
            if nested is item[3] and type(item[1]) is bytes:
                continue
            new = (tag, bytes(item[1]), item[2], nested)
        else:
            continue
        if out is None:
            out = list(inputs)
        out[index] = new
    return inputs if out is None else out


class Writer:
    """The parent's sends on a worker's pipe, in Connection's framing, without blocking the loop.

    ``send_bytes`` on the blocking pipe held the daemon's loop for as long as the worker took to
    read a large input (600 MiB: ~1.1 s, py-spy). Here what the socket does not take at once
    waits, in order, and the loop's writer callback on the pipe writes more when it is writable
    (added while anything waits, removed once nothing does)."""

    __slots__ = (
        "sock",
        "fd",
        "loop",
        "queue",
        "watching",
        "queued",
        "written",
        "mark_at",
        "cancels",
    )

    def __init__(
        self,
        fd: int,
        loop: asyncio.AbstractEventLoop | None = None,
        cancels: _cancels.Count | None = None,
    ) -> None:
        self.fd = fd
        self.cancels = cancels  # the count the worker reads (``_cancels``), or None
        self.sock = socket.socket(fileno=os.dup(fd))  # sends here use MSG_DONTWAIT
        self.loop = loop
        self.queue: deque[memoryview] = deque()
        self.watching = False  # the loop's writer callback is on
        self.queued = self.written = 0  # bytes ever queued, ever written
        self.mark_at = 0  # ``queued`` when ``mark`` was called

    def send(self, data: Any) -> None:
        """Queue one message and write what the pipe takes now. OSError (the worker died)
        propagates, as from ``send_bytes``."""
        if not self.queue and type(data) is bytes and len(data) < LARGE:
            # The job path with nothing waiting: one write of the framed bytes, no views or
            # queue (only what the pipe did not take waits, as below).
            self.send_framed(_SHORT.pack(len(data)) + data)
            return
        view = memoryview(data).cast("B")
        size = view.nbytes
        header = _SHORT.pack(size) if size <= 0x7FFFFFFF else _SHORT.pack(-1) + _LONG.pack(size)
        if size < LARGE:  # one write, as send_bytes does for small messages (the job path)
            self.queue.append(memoryview(header + view.tobytes()))
        else:
            self.queue.append(memoryview(header))
            self.queue.append(view)
        self.queued += len(header) + size
        if not self.flush() and not self.watching and self.loop is not None:
            self.watching = True
            self.loop.add_writer(self.fd, self._writable)

    def send_framed(self, whole: bytes) -> None:
        """``send`` of one message under ``LARGE`` bytes that its caller framed (``FRAME``'s
        length in front of it: a lone job's, ``Feeds._send_alone``), without framing it again."""
        size = len(whole)
        self.queued += size
        if self.queue:  # (behind what waits, in order)
            self.queue.append(memoryview(whole))
            if not self.flush() and not self.watching and self.loop is not None:
                self.watching = True
                self.loop.add_writer(self.fd, self._writable)
            return
        try:
            n = self.sock.send(whole, socket.MSG_DONTWAIT)
        except BlockingIOError:
            n = 0
        self.written += n
        if n < size:
            self.queue.append(memoryview(whole)[n:])
            if not self.watching and self.loop is not None:
                self.watching = True
                self.loop.add_writer(self.fd, self._writable)

    def cancel(self, token: int) -> None:
        """Send the worker a cancel of the job ``token``, counted first (``_cancels``: the
        worker looks at its pipe for cancels only while it has read fewer than were counted)."""
        if self.cancels is not None:
            self.cancels.add()
        self.send(pickle.dumps((token,), protocol=5))

    def flush(self) -> bool:
        """Write queued bytes until the pipe is full (at most SLICE per call, so one wake-up
        stays short); True when nothing is left."""
        queue, send, budget = self.queue, self.sock.send, SLICE
        while queue and budget > 0:
            view = queue[0]
            try:
                n = send(view[:budget], socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False
            budget -= n
            self.written += n
            if n == view.nbytes:
                queue.popleft()
            else:
                queue[0] = view[n:]
        return not queue

    def mark(self) -> None:
        """Remember where the messages sent so far end (a job's, with its large inputs)."""
        self.mark_at = self.queued

    @property
    def short_of_mark(self) -> bool:
        """Whether the pipe never took all of the messages up to ``mark`` (the worker died
        first: it cannot have started that job)."""
        return self.written < self.mark_at

    def _writable(self) -> None:
        try:
            done = self.flush()
        except OSError:  # the worker died: EOF on its pipe reports it
            self.queue.clear()
            done = True
        if done:
            self._unwatch()

    def _unwatch(self) -> None:
        if self.watching and self.loop is not None:
            self.watching = False
            self.loop.remove_writer(self.fd)

    def close(self) -> None:
        self._unwatch()
        self.queue.clear()
        self.sock.close()
        if self.cancels is not None:
            self.cancels.close()
            self.cancels = None
