"""A Client's connections, one per thread: what makes one ``Client`` usable from many threads.

A ZeroMQ socket must never be used by two threads at once, and a connection's replies are matched
to requests by id on the one socket: four threads sharing one DEALER read each other's replies
and skipped them as late, so every call timed out (issue 14). So each thread talks to the cluster
through a connection of its own, made on its first request, while what the client learns about the
cluster (the addresses it knows, which failed, which code packages a daemon holds) is shared.
``asyncio`` callers use the same: ``Client.execute_async`` runs ``execute`` in a worker thread.
"""

from __future__ import annotations

import threading
from typing import Any


class ThreadConnections:
    """Per-thread connection state (connection, the address it goes to, a reply not awaited,
    when a reply last came), defaulting to ``home`` in a thread's first use."""

    def __init__(self, home: str) -> None:
        self.home = home  # where a thread's first connection goes
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: set[Any] = set()  # every open connection, for close()

    @property
    def conn(self) -> Any:
        return getattr(self._local, "conn", None)

    @conn.setter
    def conn(self, conn: Any) -> None:
        old = getattr(self._local, "conn", None)
        with self._lock:
            if old is not None:
                self._all.discard(old)
            if conn is not None:
                self._all.add(conn)
        self._local.conn = conn

    @property
    def address(self) -> str:
        return getattr(self._local, "address", self.home)  # type: ignore[no-any-return]

    @address.setter
    def address(self, address: str) -> None:
        self._local.address = address

    @property
    def unanswered(self) -> bool:
        return getattr(self._local, "unanswered", False)  # type: ignore[no-any-return]

    @unanswered.setter
    def unanswered(self, value: bool) -> None:
        self._local.unanswered = value

    @property
    def answered_at(self) -> float | None:
        """When this thread's connection last got a reply (None: never)."""
        return getattr(self._local, "answered_at", None)

    @answered_at.setter
    def answered_at(self, when: float | None) -> None:
        self._local.answered_at = when

    def answered(self, now: float) -> None:
        """This thread's connection got the reply to its last request at ``now``."""
        local = self._local
        local.answered_at = now
        local.unanswered = False

    def others(self) -> list[Any]:
        """Every open connection but this thread's (closed by ``Client.close``: call it once the
        other threads are done with the client)."""
        mine = self.conn
        with self._lock:
            found = [c for c in self._all if c is not mine]
            self._all = {mine} if mine is not None else set()
        return found
