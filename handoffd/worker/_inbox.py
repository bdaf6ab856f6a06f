"""The worker side of its pipe: the parent's messages read with as few system calls as possible.

``Connection.recv_bytes`` reads a message's 4-byte length and then its body (two reads), and a
``poll(0)`` before each look for cancels is one more. ``Inbox`` reads whatever the pipe holds into
its buffer in one ``recv_into`` and cuts ``send_bytes``-framed messages out of it: a message is one
read, a batch of jobs and the cancels behind it are one read together, and looking for a message
that is already buffered costs none. ``waiting`` is the non-blocking look (a ``poll(0)``);
it answers True only for a whole message or one already arriving, which ``next`` then finishes
reading, as ``recv_bytes`` after ``poll`` did. Large messages (``_pipe.LARGE`` or more) come back
as ``bytearray``, read straight into a buffer of their size past what was buffered (as the
parent's ``_pipe.Reader`` does); smaller ones as ``bytes``.
"""

from __future__ import annotations

import select
import socket

from handoffd.worker._pipe import _SHORT, LARGE, _header, _read_rest, cut

CHUNK = 64 * 1024


class Inbox:
    __slots__ = ("sock", "buf", "scratch", "poller")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock  # blocking: ``next`` waits in its reads
        self.buf = bytearray()
        self.scratch = memoryview(bytearray(CHUNK))
        self.poller = select.poll()  # ``waiting``'s look
        self.poller.register(sock.fileno(), select.POLLIN)

    def _read(self, flags: int = 0) -> bool:
        """One read of what the pipe holds into the buffer; False if nothing was there
        (non-blocking only). EOFError once the parent closed its end."""
        try:
            n = self.sock.recv_into(self.scratch, CHUNK, flags)
        except BlockingIOError:
            return False
        if not n:
            raise EOFError
        self.buf += self.scratch[:n]
        return True

    def waiting(self) -> bool:
        """Whether a message is here or arriving (never blocks). The look is a ``poll(0)``, then
        a read of what is there: a read that finds nothing raises BlockingIOError, ~0.5 us of a
        worker's CPU per job more than the poll (nothing is there before most jobs)."""
        return bool(self.buf) or (bool(self.poller.poll(0)) and self._read(socket.MSG_DONTWAIT))

    def next(self) -> bytes | bytearray:
        """The next whole message, blocking until it is here (EOFError if the pipe ends first)."""
        buf = self.buf
        if not buf:
            # An idle worker's wait: the read usually holds exactly one small message (a job, a
            # cancel), taken from the read's scratch as it is, without the buffer, its header
            # look-up or the cut (a W3 job's read).
            scratch = self.scratch
            n = self.sock.recv_into(scratch, CHUNK)
            if not n:
                raise EOFError
            if n > 4 and _SHORT.unpack_from(scratch)[0] == n - 4:
                return bytes(scratch[4:n])
            buf += scratch[:n]
        while True:
            header = _header(buf, 0)
            if header is not None:
                head, size = header
                end = head + size
                if len(buf) >= end:
                    return cut(buf, head, end)
                if size >= LARGE:  # its rest goes straight into a buffer of its own
                    out = bytearray(size)
                    have = len(buf) - head
                    out[:have] = memoryview(buf)[head:]
                    del buf[:]
                    _read_rest(self.sock, out, have)
                    return out
            self._read()
