"""``cpu_per_call.py --stamps``: where the client's part of a W3 round trip goes, from its side.

Wraps ``LocalClient.send``/``recv`` (the Unix socket a client on the daemon's machine uses) to
stamp, per call: before the send (building the submission: packages, rows, payload, encoding),
the wait (the send's own Python and system call, the sleep, the read and its framing) and after
the reply (decoding, the outcome, the results); and whether the reply was already readable when
the client came to wait for it (a ``poll(0)`` of its own: what a read before ``poll()`` would
find). Wall microseconds of the calling thread, so run with no other load to read them as CPU.
"""

from __future__ import annotations

import statistics
import time
from typing import Any


class ClientStamps:
    def __init__(self) -> None:
        from handoffd.transport import local_socket

        self.reset()
        self._sent = self._got = 0.0
        cls: Any = local_socket.LocalClient
        send, recv, stamps = cls.send, cls.recv, self

        def stamped_send(conn: Any, frames: Any) -> None:
            stamps._sent = stamps._sent or time.perf_counter()  # the call's first send
            send(conn, frames)

        def stamped_recv(conn: Any, timeout: float) -> Any:
            if not conn._ready and not conn._buf:
                stamps.waits += 1
                stamps.ready += bool(conn._poll.poll(0))
            reply = recv(conn, timeout)
            stamps._got = time.perf_counter()  # the call's last read
            return reply

        cls.send, cls.recv = stamped_send, stamped_recv

    def reset(self) -> None:
        """Forget what was stamped (the warm-up's calls)."""
        self.pre: list[float] = []
        self.wait: list[float] = []
        self.post: list[float] = []
        self.ready = 0  # replies readable when the client came to wait
        self.waits = 0

    def call(self, execute: Any) -> Any:
        self._sent = self._got = 0.0
        t0 = time.perf_counter()
        out = execute()
        t1 = time.perf_counter()
        if self._sent and self._got:
            self.pre.append(self._sent - t0)
            self.wait.append(self._got - self._sent)
            self.post.append(t1 - self._got)
        return out

    def report(self) -> str:
        if not self.pre:
            return "stamps: no call went through the local socket (HANDOFFD_LOCAL_SOCKET=0?)"
        parts = [
            f"{name} {statistics.median(values) * 1e6:.1f}"
            for name, values in (
                ("before send", self.pre),
                ("wait", self.wait),
                ("after", self.post),
            )
        ]
        return (
            f"client stamps, median us per call: {', '.join(parts)}; reply readable when the "
            f"client came to wait: {self.ready} of {self.waits}"
        )
