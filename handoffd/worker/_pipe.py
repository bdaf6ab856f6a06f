"""Reading a worker's pipe in the parent: every message ready, in as few system calls as possible.

``multiprocessing.Connection.recv_bytes`` reads a 4-byte length and then the message, two reads per
message, and a readiness check is one more call per message. Once the loop says the pipe is
readable, ``Reader.fill`` takes whatever is there in one non-blocking read (more while reads come
back full) and ``Reader.next`` cuts messages out of it. The framing is Connection's own (the worker
side still uses ``send_bytes``): a signed big-endian 4-byte length, or -1 and an 8-byte length.
"""

from __future__ import annotations

import os
import socket
import struct

CHUNK = 256 * 1024
_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")


class Reader:
    __slots__ = ("sock", "buf", "eof")

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=os.dup(fd))  # the pipe's end stays blocking for writes
        self.buf = bytearray()
        self.eof = False

    def close(self) -> None:
        self.sock.close()

    def fill(self) -> None:
        """Read what is ready without blocking; ``eof`` once the other end closed."""
        try:
            while True:
                chunk = self.sock.recv(CHUNK, socket.MSG_DONTWAIT)
                if not chunk:
                    self.eof = True
                    return
                self.buf += chunk
                if len(chunk) < CHUNK:
                    return
        except BlockingIOError:
            return
        except OSError:
            self.eof = True

    def next(self, wait: bool = False) -> bytes | None:
        """The next whole message, or None if it is not all here (``wait``: block until it is;
        EOFError if the pipe ends first)."""
        buf = self.buf
        while True:
            if len(buf) >= 4:
                (size,) = _SHORT.unpack_from(buf, 0)
                head = 4
                if size == -1 and len(buf) >= 12:
                    (size,) = _LONG.unpack_from(buf, 4)
                    head = 12
                if size >= 0 and len(buf) >= head + size:
                    message = bytes(memoryview(buf)[head : head + size])  # one copy
                    del buf[: head + size]
                    return message
            if not wait:
                return None
            if self.eof:
                raise EOFError
            chunk = self.sock.recv(CHUNK)  # blocking: the worker is writing the rest right now
            if not chunk:
                self.eof = True
                raise EOFError
            buf += chunk
