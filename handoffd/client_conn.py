"""The Client's connection plumbing: one connection per thread to one daemon, requests matched to
replies by id, and failing over to another daemon the client knows when its daemon stops answering
(``Client`` in ``handoffd.client`` builds on this; ``Run`` in ``handoffd.client_run`` asks through it).

What the client learns about the cluster (the addresses it knows, which just failed) is shared by
its threads; each thread's connection is its own (``handoffd.client_threads``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from handoffd import client_upload, errors
from handoffd.client_run import FOLLOW_GRACE
from handoffd.client_threads import ThreadConnections
from handoffd.protocol import codec, versions
from handoffd.protocol import messages as m
from handoffd.protocol.messages_code import TaskOutputReply
from handoffd.protocol.messages_io import UploadChunk, UploadTaken
from handoffd.protocol.messages_observability import TaskHistoryReply
from handoffd.protocol.messages_submit import SubmitColumns
from handoffd.transport.client import Connection

_FOLLOW_GRACE = FOLLOW_GRACE
# A run some node says exists is followed this long at most (a takeover that never ends: its
# standbys are cut off, or every one gave it up).
_FOLLOW_LIMIT = 300.0
_FOLLOW_CONNECT = 1.0  # connect timeout while following a run (a live daemon answers in ms)
_SKIP_UNREACHABLE = 3.0  # seconds an address that failed to connect is skipped by rotation
# ErrorReply codes of a daemon that takes no request about runs now but another node may: a
# minority partition's node (daemon/fencing.py) asked about a run it owns and has not finished.
MOVE_CODES = ("fenced",)
_LIST_TIMEOUT = 2.0  # seconds for the member list of a node that refused us
# The messages of an ``execute``'s exchange: their converters are built when the client connects
# (``codec.compile_records``), not in its first call (a big DAG's first execute built the
# submission's and the upload's, ~3 ms of the call before a byte was sent).
_EXCHANGE = (
    SubmitColumns,
    UploadChunk,
    UploadTaken,
    m.SubmitAndWait,
    m.RunAccepted,
    m.RunOutcome,
    m.WaitRun,
    m.FreeRunRequest,
)


class RefusedHere(errors.ConnectionError):
    """This daemon said it cannot serve the request now (fenced in a minority partition, leaving)
    and did not act on it: the same request may go to another node (``handoffd.client_moves``)."""


class ClientPlumbing:
    """Requests to the cluster through this thread's connection, with failover. ``Client`` sets
    the attributes below in its ``__init__`` and says how to dial an address (``_dial``)."""

    timeout: float
    max_result_bytes: int  # a result bigger is refused (client_results)
    _threads: ThreadConnections
    _learned: threading.Lock  # guards _known and _unreachable
    _known: list[str]
    _unreachable: dict[str, float]  # address -> when a connect last failed
    _ids: Iterator[int]
    _name: str

    def _dial(self, address: str, timeout: float) -> Connection:
        raise NotImplementedError  # Client._dial: a ZeroMQ or an in-process connection

    # -- per-thread connection state (client_threads) -------------------------------------------

    @property
    def address(self) -> str:
        """The daemon this thread's connection goes to."""
        return self._threads.address

    @address.setter
    def address(self, address: str) -> None:
        self._threads.address = address

    @property
    def _conn(self) -> Connection | None:
        return self._threads.conn  # type: ignore[no-any-return]

    @_conn.setter
    def _conn(self, conn: Connection | None) -> None:
        self._threads.conn = conn

    @property
    def _unanswered(self) -> bool:
        """This thread sent a request without waiting for its reply."""
        return self._threads.unanswered

    @_unanswered.setter
    def _unanswered(self, value: bool) -> None:
        self._threads.unanswered = value

    def _learn(self, address: str) -> None:
        with self._learned:
            if address not in self._known:
                self._known.append(address)

    def _learn_members(self) -> None:
        """Learn every member the current node lists but those that left: a node that refused
        us (fenced) may see the others SUSPECT or DEAD from its side of a partition."""
        try:
            reply, _ = self._request(m.ListNodes(next(self._ids)), timeout=_LIST_TIMEOUT)
        except errors.HandoffError:
            return
        for member in reply.members:
            if member.status != m.LEFT:
                self._learn(member.address)

    # -- plumbing ------------------------------------------------------------------------------

    def _connect(self, address: str, timeout: float | None = None) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._unanswered = False
        try:
            self._conn = self._dial(address, timeout or self.timeout)
        except errors.ConnectionError:
            with self._learned:
                self._unreachable[address] = time.monotonic()
            raise
        with self._learned:
            self._unreachable.pop(address, None)
        self.address = address
        self._threads.answered_at = None
        codec.compile_records(_EXCHANGE)  # (built once a process: later connects look them up)

    def _daemon_max(self) -> int:
        """The top of the protocol range this thread's daemon answered with (0 before any
        answer on this connection: a new connection may go to another, older, daemon)."""
        return getattr(self._conn, "daemon_max", 0)

    def _connection(self) -> Connection:
        """The current connection; after a failover that reached nobody there is none, so
        connect again (ConnectionError if the daemon is still unreachable)."""
        conn = self._conn
        if conn is None:
            self._connect(self.address)
            conn = self._conn
            assert conn is not None
        return conn

    def _request(
        self, msg: Any, frames: Iterable[bytes] = (), timeout: float | None = None
    ) -> tuple[Any, list[bytes]]:
        client_upload.send(self, codec.encode(msg, sender=self._name, frames=list(frames)))
        return self._receive(msg.request_id, timeout or self.timeout)

    def _receive(
        self, request_id: int, timeout: float, first: list[Any] | None = None
    ) -> tuple[Any, list[bytes]]:
        """The next reply to ``request_id`` (others are late replies: skipped); ``first``: a
        reply already read from the connection (``client_one``), taken before reading more."""
        conn = self._conn
        assert conn is not None
        threads = self._threads
        deadline = time.monotonic() + timeout
        remaining = timeout
        reply: list[Any] | None
        while True:
            if first is not None:
                reply, first = first, None
            else:
                reply = conn.recv(remaining) if remaining > 0 else None
            if reply is None:
                raise errors.ConnectionError(self._silence(timeout))
            now = time.monotonic()
            threads.answered_at = now
            remaining = deadline - now
            decoded = codec.decode(reply)
            if decoded is None:
                continue
            got = decoded.msg
            if type(got) is codec.Mismatch:
                # The daemon speaks a protocol range we do not: it answered in the frozen format
                # every version reads. Say so now; asking another node would not help.
                raise versions.client_error(self.address, got.lo, got.hi)
            if getattr(got, "request_id", None) != request_id:
                continue  # a late reply to an earlier request
            # What this connection's daemon speaks: the newest forms it reads (``_daemon_max``)
            conn.daemon_max = decoded.envelope.max_version  # type: ignore[attr-defined]
            threads.unanswered = False  # anything sent before this request has left too
            if isinstance(got, m.ErrorReply):
                if got.code in MOVE_CODES:  # it serves nobody now: another node may
                    raise RefusedHere(f"the handoffd daemon at {self.address}: {got.message}")
                raise errors.HandoffError(f"{got.code}: {got.message}")
            return got, decoded.frames  # a list of its own already

    def _silence(self, timeout: float) -> str:
        """What a request without an answer means: a daemon that never answered may not run;
        one that answered earlier requests is busy, or lost this one."""
        answered = self._threads.answered_at
        if answered is None:
            return (
                f"the handoffd daemon at {self.address} did not answer within {timeout:.1f}s; "
                "is it running? (`handoffd start`)"
            )
        return (
            f"the handoffd daemon at {self.address} answered this connection "
            f"{time.monotonic() - answered:.1f}s ago but not this request within {timeout:.1f}s "
            "(it is overloaded, or the request was lost); try again or raise the client's "
            "timeout"
        )

    def _failover_request(
        self, make: Any, frames: Iterable[bytes] = (), timeout: float | None = None
    ) -> tuple[Any, list[bytes]]:
        """Send to the current daemon; if it is gone, try every other known address once."""
        frames = list(frames)
        try:
            return self._request(make(next(self._ids)), frames, timeout)
        except errors.AuthenticationError:
            raise
        except errors.ConnectionError as first:
            for address in [a for a in self._known if a != self.address]:
                try:
                    self._connect(address, _FOLLOW_CONNECT)
                    return self._request(make(next(self._ids)), frames, timeout)
                except errors.AuthenticationError:
                    raise
                except errors.ConnectionError:
                    continue
            raise first

    def _rotate(self) -> None:
        """Connect to the next known address after the current one (skipping unreachable ones)."""
        start = self._known.index(self.address) if self.address in self._known else -1
        now = time.monotonic()
        for step in range(1, len(self._known) + 1):
            address = self._known[(start + step) % len(self._known)]
            if now - self._unreachable.get(address, -1e9) < _SKIP_UNREACHABLE:
                continue  # it just failed (a dead owner): don't wait on it again
            try:
                self._connect(address, _FOLLOW_CONNECT)
                return
            except errors.AuthenticationError:
                raise
            except errors.ConnectionError:
                continue

    def _run_request(
        self,
        make: Any,
        timeout: float | None = None,
        grace: float | None = None,
        changing_ok: bool = False,
    ) -> tuple[Any, list[bytes]]:
        """A request about one run, sent to whichever node owns it now: follows ``RunMoved``
        redirects, fails over when the daemon dies, and while no node it asks knows the run (an
        owner's takeover in progress) keeps asking every known node for up to ``grace`` seconds
        (default ``_FOLLOW_GRACE``). Once a node says the run exists (a redirect; "unknown here,
        but it exists": a replica, a takeover under way; an owner named by a redirect that does
        not answer) it keeps following it until ``_FOLLOW_GRACE`` after the last such sign,
        however small ``grace`` is, and at most ``_FOLLOW_LIMIT`` in all. So an unknown id is
        answered at once, a run whose owner died is followed to its new owner however long the
        takeover takes (minutes for a big run on a loaded machine), and a run that nodes know
        but none takes over is a ``ConnectionError`` saying so. A status of the run as last
        replicated (``RunStatusReply.changing``: its owner is changing) is an answer only with
        ``changing_ok``; otherwise it is one more sign that the run exists."""
        grace = _FOLLOW_GRACE if grace is None else grace
        started = time.monotonic()
        seen: float | None = None  # when a node last said the run exists
        redirected = False  # the request went to the owner a node named (RunMoved)
        asked = failures = 0

        def deadline() -> float:
            if seen is None:
                return started + grace
            return max(started + grace, min(seen + _FOLLOW_GRACE, started + _FOLLOW_LIMIT))

        while True:
            try:
                reply, frames = self._failover_request(make, timeout=timeout)
                if isinstance(reply, m.RunMoved):
                    # Counted once: a node's note of an owner that since forgot the run (a live
                    # owner answering plain UNKNOWN) must not hold the client; nodes that hold
                    # the run say so (``known``).
                    seen = time.monotonic() if seen is None else seen
                    redirected = True
                    self._learn(reply.owner_address)
                    self._connect(reply.owner_address, _FOLLOW_CONNECT)
                    continue
            except errors.ConnectionError as exc:  # the daemon, or the owner it named, is
                failures += 1  # unreachable, or cannot serve now (fenced)
                if redirected:  # an owner the others do not know dead yet: the run is moving
                    seen = time.monotonic()
                redirected = False
                if isinstance(exc, RefusedHere):
                    self._learn_members()
                if time.monotonic() >= deadline() and failures >= len(self._known):
                    raise
                time.sleep(0.1)
                self._rotate()
                continue
            redirected = False
            unknown = (
                isinstance(
                    reply, (m.RunStatusReply, m.RunOutcome, TaskOutputReply, TaskHistoryReply)
                )
                and reply.state == "UNKNOWN"
            ) or (getattr(reply, "changing", False) and not changing_ok)
            known = getattr(reply, "known", False)
            if known:  # not here, but this node knows the run exists
                seen = time.monotonic()
            lost = unknown or (isinstance(reply, m.Results) and reply.missing)
            asked += 1
            if lost and (asked < len(self._known) or time.monotonic() < deadline()):
                if asked >= len(self._known):
                    time.sleep(0.1)
                self._rotate()
                continue
            if unknown and known:
                raise errors.ConnectionError(
                    f"run {getattr(reply, 'run_id', '')} exists (nodes hold it as standbys or "
                    f"know of it) but no node took it over in {time.monotonic() - started:.0f}s: "
                    "its owner and every standby that could take it over are gone or cut off; "
                    "restart them or heal the partition and ask again"
                )
            return reply, frames

    def _ask_node(
        self, address: str, make: Any, timeout: float | None = None, keep: bool = True
    ) -> Any:
        """One request to the daemon at ``address`` (``handoffctl nodes``/``runs``/``drain``/
        ``stop NODE`` ask each member in turn); the next request goes to the daemon we were
        connected to, on the connection we had to it (kept aside, not closed: a new one would
        not know the daemon's protocol range, and its next submission would go as records);
        ``keep`` False: closed, the next request dials it anew (a run's follower asking the
        others while its own daemon is silent). ConnectionError if ``address`` does not answer."""
        home = self.address
        kept = self._conn if keep and address != home else None
        if kept is not None:
            self._conn = None  # (``_connect`` closes the current connection)
        try:
            self._connect(address, timeout)
            reply, _ = self._request(make(next(self._ids)), timeout=timeout)
        finally:
            if self._conn is not None and self.address != home:
                self._conn.close()
                self._conn = None
            if kept is not None:
                if self._conn is not None:  # (a request that failed over home made its own)
                    kept.close()
                else:
                    self._conn = kept
            self.address = home
        if isinstance(reply, m.ErrorReply):
            raise errors.HandoffError(f"{address}: {reply.message}")
        return reply
