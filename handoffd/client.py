"""Client and Run: the synchronous API users call (``handoffd.connect()``).

A Client talks to one daemon's control endpoint (request/reply over a ZeroMQ DEALER). The daemon
that receives a submission owns the run. Waiting is a long poll (``WaitRun``), so a finished run is
noticed at once without polling churn, and its answer (``RunOutcome``) carries the results the owner
holds, so ``Run.wait()`` + ``results()`` is usually one round trip. ``execute`` is one exchange for a
short run: ``SubmitAndWait`` is answered with the outcome and the results, which the owner then frees
(no release request); what the outcome does not carry is fetched as before (``FetchResults``). The client remembers every address the
cluster told it about, so when its daemon dies it reconnects to another and follows the run.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from handoffd import envvars, errors, values
from handoffd.config import DEFAULT_HOST, DEFAULT_PORT
from handoffd.protocol import codec, versions
from handoffd.protocol import messages as m
from handoffd.protocol.snapshot import error_from_info
from handoffd.transport.base import MEMORY_SCHEME
from handoffd.transport.client import Connection, ControlClient

if TYPE_CHECKING:
    from handoffd.transport.keys import CurveKeys
    from handoffd.transport.memory import MemoryNetwork

TERMINAL = ("DONE", "FAILED", "CANCELLED")
_POLL = 2.0  # seconds per long-poll request
_CHUNK = 256  # results fetched per request
_EXECUTE_BYTES = 64 << 20  # result bytes execute() takes inline in the run's outcome
_WAIT_BYTES = 1 << 20  # ... and Run.wait() (results() may never be called)
_CLOSE_DRAIN = 0.5  # seconds close() waits at most for the reply to an unawaited request
_FOLLOW_GRACE = 30.0  # seconds a Run keeps looking for its owner (a takeover takes ~1-2 s)
_FOLLOW_CONNECT = 1.0  # connect timeout while following a run (a live daemon answers in ms)
_SKIP_UNREACHABLE = 3.0  # seconds an address that failed to connect is skipped by rotation


@dataclass(frozen=True)
class NodeInfo:
    capacity: dict[str, float]
    free: dict[str, float]
    status: str
    address: str
    # kind -> where the capacity figure came from ("flag", "affinity", "cgroup v1 ...", "NVML")
    sources: dict[str, str] = field(default_factory=dict)
    gpus: tuple[str, ...] = ()  # "ID NAME" of each GPU the node hands out (NAME when known)


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    state: str  # RUNNING | DONE | FAILED | CANCELLED | UNKNOWN
    counts: dict[str, int]
    placement: dict[str, str]
    owner: str
    term: int
    standbys: tuple[str, ...]
    error: errors.HandoffError | None = field(default=None, compare=False)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL


def resolve_address(address: str | None) -> str:
    address = address or envvars.get("ADDRESS") or f"{DEFAULT_HOST}:{DEFAULT_PORT}"
    if address.startswith(MEMORY_SCHEME):
        return address  # a node on an in-process network (handoffd.testing's clusters)
    if address.startswith("tcp://"):
        address = address[len("tcp://") :]
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise errors.HandoffError(
            f"bad daemon address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:7788"
        )
    return address


def _run_status(reply: m.RunStatusReply | m.RunOutcome) -> RunStatus:
    error = error_from_info(reply.error) if reply.error is not None else None
    return RunStatus(
        reply.run_id,
        reply.state,
        dict(reply.counts),
        dict(reply.placement),
        reply.owner,
        reply.term,
        tuple(reply.standbys),
        error,
    )


class Client:
    """A connection to a handoffd cluster through one daemon (failing over to others it knows)."""

    def __init__(
        self,
        address: str | None = None,
        *,
        key_file: str | None = None,
        timeout: float = 5.0,
        allow_local_users: bool = False,
        insecure: bool = False,
    ) -> None:
        self.address = resolve_address(address)
        self._key_file = key_file or envvars.get("KEY_FILE")
        self._curve: CurveKeys | None = None
        self._local_key: str | None = None
        self._network: MemoryNetwork | None = None
        if self.address.startswith(MEMORY_SCHEME):
            # A node on an in-process network: every address it names lives on that network.
            from handoffd.transport.memory import find_network

            try:
                self._network, self.address = find_network(self.address)
            except ValueError as exc:
                raise errors.ConnectionError(str(exc)) from None
        else:
            from handoffd.transport.auth import client_curve

            # The cluster key; else this user's local key (a keyless daemon of ours holds the
            # same); no key only when told (allow_local_users): see handoffd/transport/auth.py.
            auth = client_curve(
                self.address,
                key_file=self._key_file,
                insecure=insecure,
                allow_local_users=allow_local_users,
            )
            self._curve = auth.curve
            self._local_key = auth.local_key
        self.timeout = timeout
        self._name = f"client-{uuid.uuid4().hex[:12]}"
        self._ids = itertools.count(1)
        self._known: list[str] = [self.address]
        self._unreachable: dict[str, float] = {}  # address -> when a connect last failed
        self._conn: Connection | None = None
        self._unanswered = False  # a request went out without waiting for its reply
        self._connect(self.address)

    # -- plumbing ------------------------------------------------------------------------------

    def _connect(self, address: str, timeout: float | None = None) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._unanswered = False
        try:
            self._conn = self._dial(address, timeout or self.timeout)
        except errors.ConnectionError:
            self._unreachable[address] = time.monotonic()
            raise
        self._unreachable.pop(address, None)
        self.address = address

    def _dial(self, address: str, timeout: float) -> Connection:
        if self._network is not None:
            from handoffd.transport.memory_client import MemoryControlClient

            return MemoryControlClient(self._network, address, connect_timeout=timeout)
        return ControlClient(
            address, curve=self._curve, connect_timeout=timeout, local_key=self._local_key
        )

    def _connection(self) -> Connection:
        """The current connection; after a failover that reached nobody there is none, so
        connect again (ConnectionError if the daemon is still unreachable)."""
        if self._conn is None:
            self._connect(self.address)
        assert self._conn is not None
        return self._conn

    def _request(
        self, msg: Any, frames: Iterable[bytes] = (), timeout: float | None = None
    ) -> tuple[Any, list[bytes]]:
        self._connection().send(codec.encode(msg, sender=self._name, frames=list(frames)))
        return self._receive(msg.request_id, timeout or self.timeout)

    def _receive(self, request_id: int, timeout: float) -> tuple[Any, list[bytes]]:
        """The next reply to ``request_id`` (others are late replies: skipped)."""
        assert self._conn is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            reply = self._conn.recv(max(remaining, 0.0)) if remaining > 0 else None
            if reply is None:
                raise errors.ConnectionError(
                    f"the handoffd daemon at {self.address} did not answer within "
                    f"{timeout:.1f}s; is it running? (`handoffd start`)"
                )
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
            self._unanswered = False  # anything sent before this request has left too
            if isinstance(got, m.ErrorReply):
                raise errors.HandoffError(f"{got.code}: {got.message}")
            return got, decoded.frames  # a list of its own already

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
        self, make: Any, timeout: float | None = None, grace: float = _FOLLOW_GRACE
    ) -> tuple[Any, list[bytes]]:
        """A request about one run, sent to whichever node owns it now: follows ``RunMoved``
        redirects, fails over when the daemon dies, and while no node it asks knows the run (an
        owner's takeover in progress) keeps asking every known node for up to ``grace`` seconds."""
        deadline = time.monotonic() + grace
        asked = 0
        while True:
            try:
                reply, frames = self._failover_request(make, timeout=timeout)
                if isinstance(reply, m.RunMoved):
                    if reply.owner_address not in self._known:
                        self._known.append(reply.owner_address)
                    self._connect(reply.owner_address, _FOLLOW_CONNECT)
                    continue
            except errors.ConnectionError:  # the daemon, or the owner it named, is unreachable
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)
                self._rotate()
                continue
            lost = (
                isinstance(reply, (m.RunStatusReply, m.RunOutcome)) and reply.state == "UNKNOWN"
            ) or (isinstance(reply, m.Results) and reply.missing)
            asked += 1
            if lost and (asked < len(self._known) or time.monotonic() < deadline):
                if asked >= len(self._known):
                    time.sleep(0.1)
                self._rotate()
                continue
            return reply, frames

    # -- API -------------------------------------------------------------------------------------

    def nodes(self) -> dict[str, NodeInfo]:
        """Every node this daemon knows: {name: NodeInfo(capacity, free, status, address)}."""
        reply, _ = self._failover_request(lambda rid: m.ListNodes(rid))
        out: dict[str, NodeInfo] = {}
        for member in reply.members:
            out[member.name] = NodeInfo(
                dict(member.capacity),
                dict(member.free),
                m.STATUS_NAMES[member.status],
                member.address,
                dict(member.sources),
                tuple(member.gpus),
            )
            if member.status == m.ALIVE and member.address not in self._known:
                self._known.append(member.address)
        return out

    def submit(
        self,
        dag: Any,
        *,
        max_retries: int = 3,
        timeout: float | None = None,
        policy: str = "binpack",
        outputs: Iterable[str] | None = None,
        priority: int = 0,
    ) -> Run:
        """Submit a DAG; returns at once with a Run owned by the daemon we are connected to.
        ``priority`` is added to every function's own (higher starts first on a busy node)."""
        return self._submit(dag, False, max_retries, timeout, policy, outputs, priority)

    def execute(self, dag: Any, **options: Any) -> dict[str, Any]:
        """Submit, wait, and return {function id: value} for every non-inline function."""
        timeout = options.get("timeout")
        run = self._submit(dag, True, **options)
        if run._last is None or not run._last.done:
            # Still running after the first wait, or the owner died (we follow the run).
            run._wait_until(run._deadline, timeout)
        status = run._last
        assert status is not None
        if status.error is not None:
            raise status.error
        results = run.results()
        if not run._released:
            run._release_nowait()
        return results

    def _submit(
        self,
        dag: Any,
        wait: bool,
        max_retries: int = 3,
        timeout: float | None = None,
        policy: str = "binpack",
        outputs: Iterable[str] | None = None,
        priority: int = 0,
    ) -> Run:
        from handoffd.dag import DAG

        if not isinstance(dag, DAG):
            raise errors.ValidationError(
                "invalid_dag", None, f"expected a handoffd.DAG, got {type(dag).__name__}"
            )
        listed = outputs if outputs is None or isinstance(outputs, str) else tuple(outputs)
        # The owner checks the same rules again (handoffd.validation): it never trusts a client.
        rows, payloads = dag.wire_tasks(
            policy=policy, max_retries=max_retries, outputs=listed, allow_empty=False
        )
        output_ids = None if listed is None else tuple(listed)  # (a str was refused)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise errors.ValidationError(
                "invalid_option", None, f"priority must be an integer, got {priority!r}"
            )
        if priority:  # the run's priority adds to each function's own (TaskMeta.priority)
            rows = [(*row[:9], row[9] + priority) for row in rows]
        if not self._known[1:]:
            try:
                self.nodes()  # learn the cluster's addresses for failover
            except errors.HandoffError:
                pass
        # The rows are TaskMeta's fields: the codec checks and packs them as they are.
        tasks = codec.Rows(rows)
        run_id = uuid.uuid4().hex[:16]
        run = Run(self, run_id, "", [r[0] for r in rows if not r[6]], output_ids)
        run._deadline = None if timeout is None else time.monotonic() + timeout
        if not wait:
            reply, _ = self._request(
                m.SubmitRun(next(self._ids), run_id, tasks, max_retries, policy, output_ids),
                payloads,
                timeout=max(self.timeout, 30.0),
            )
            if isinstance(reply, m.RunRejected):
                raise error_from_info(reply.error)
            run.owner = reply.owner
            return run
        # One exchange: the owner answers with the outcome (after a RunAccepted if the run is
        # still going once its standbys hold it). If the owner dies before it accepted the run
        # we were promised nothing: ConnectionError, as for submit(); after, we follow the run.
        poll = _POLL if timeout is None else max(0.0, min(_POLL, timeout))
        request_id = next(self._ids)
        request = m.SubmitAndWait(
            request_id, run_id, tasks, max_retries, policy, output_ids, poll, _EXECUTE_BYTES, True
        )
        self._connection().send(codec.encode(request, sender=self._name, frames=payloads))
        limit = time.monotonic() + poll + max(self.timeout, 30.0)
        while True:
            try:
                reply, frames = self._receive(request_id, limit - time.monotonic())
            except errors.ConnectionError:
                if not run.owner:
                    raise
                return run  # accepted: the caller follows the run (owner death, or no answer)
            if isinstance(reply, m.RunRejected):
                raise error_from_info(reply.error)
            if isinstance(reply, m.RunAccepted):
                run.owner = reply.owner
                continue
            run.owner = run.owner or reply.owner
            run._take(reply, frames)
            return run

    def run(self, run_id: str) -> Run:
        """A handle on an existing run (for ``handoffctl status``/``results``)."""
        if not self._known[1:]:
            try:
                self.nodes()  # learn the cluster's addresses: the run may be owned elsewhere
            except errors.HandoffError:
                pass
        status = self._status(run_id, 0.0, grace=0.0)
        # Function ids come from the finished run's placement (now it may list only a few).
        run = Run(self, run_id, status.owner, None, None)
        run._last = status
        run._exists = status.state != "UNKNOWN"
        return run

    def runs(self) -> list[m.RunSummary]:
        reply, _ = self._failover_request(lambda rid: m.ListRuns(rid))
        return list(reply.runs)

    def _status(self, run_id: str, wait: float, grace: float = _FOLLOW_GRACE) -> RunStatus:
        reply, _ = self._run_request(
            lambda rid: m.GetRunStatus(rid, run_id, wait), timeout=wait + self.timeout, grace=grace
        )
        return _run_status(reply)

    def close(self) -> None:
        if self._conn is not None:
            if self._unanswered:
                # A request sent without waiting (execute's release) may still be queued: give it
                # a moment to leave, since closing drops whatever is unsent (LINGER=0).
                self._unanswered = False
                self._conn.recv(_CLOSE_DRAIN)
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Run:
    """A submitted run. Methods block; values are fetched from wherever they live."""

    def __init__(
        self,
        client: Client,
        run_id: str,
        owner: str,
        function_ids: list[str] | None,
        outputs: tuple[str, ...] | None,
    ) -> None:
        self._client = client
        self.id = run_id
        self.owner = owner
        self._ids = function_ids
        self._outputs = outputs
        self._deadline: float | None = None
        self._last: RunStatus | None = None
        self._exists = True  # known to exist: while no node knows it, an owner is taking over
        self._values: dict[str, bytes] = {}  # serialised results an outcome carried
        self._released = False  # the owner freed the results after sending them all to us

    def status(self) -> RunStatus:
        grace = _FOLLOW_GRACE if self._exists else 0.0
        self._last = self._client._status(self.id, 0.0, grace=grace)
        return self._last

    def wait(self, timeout: float | None = None) -> RunStatus:
        """Block until the run ends; raise its error (TaskFailed, RunCancelled, ...) if it failed."""
        deadline = time.monotonic() + timeout if timeout is not None else self._deadline
        return self._wait_until(deadline, timeout)

    def _wait_until(self, deadline: float | None, timeout: float | None) -> RunStatus:
        while True:
            wait = _POLL
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    raise errors.Timeout(
                        f"run {self.id} did not finish within {timeout}s (it goes on)"
                    )
            reply, frames = self._client._run_request(
                lambda rid, w=wait: m.WaitRun(rid, self.id, w, _WAIT_BYTES, False),
                timeout=wait + self._client.timeout,
            )
            self._take(reply, frames)
            status = self._last
            assert status is not None
            if status.state == "UNKNOWN":
                raise errors.HandoffError(
                    f"run {self.id} is not known to the cluster (results may have been freed)"
                )
            if status.done:
                if status.error is not None:
                    raise status.error
                return status

    def _take(self, reply: m.RunOutcome, frames: list[bytes]) -> None:
        """Keep an outcome: the status, and the results it carried."""
        self._last = _run_status(reply)
        self._values.update(zip(reply.task_ids, frames, strict=False))
        self._released = self._released or reply.released

    def results(self) -> dict[str, Any]:
        """{function id: value} of every non-inline function (or the submission's ``outputs``)."""
        status = self._last if self._last is not None and self._last.done else self.wait()
        ids = list(self._outputs) if self._outputs is not None else self._ids
        if ids is None:
            ids = list(status.placement)
        return self._collect(ids)

    def result(self, function_id: str) -> Any:
        if self._last is None or not self._last.done:
            self.wait()
        return self._collect([function_id])[function_id]

    def _collect(self, ids: list[str]) -> dict[str, Any]:
        """Values from the outcome we hold, the rest fetched, in ``ids`` order."""
        held = self._values
        loads = values.loads
        missing = [i for i in ids if i not in held]
        if not missing:  # the usual case: the outcome carried every value
            return {i: loads(held[i]) for i in ids}
        fetched = self._fetch(missing)
        return {i: loads(held[i]) if i in held else fetched[i] for i in ids}

    def placement(self) -> dict[str, str]:
        """{function id: node name} of the final attempts."""
        return dict(self.status().placement)

    def cancel(self) -> None:
        self._client._run_request(lambda rid: m.CancelRun(rid, self.id))

    def release(self) -> None:
        """Tell the owner the results were collected, so every node frees them now."""
        try:
            self._client._run_request(lambda rid: m.FreeRunRequest(rid, self.id), grace=0.0)
        except errors.HandoffError:
            pass

    def _release_nowait(self) -> None:
        """``release`` without waiting for the answer (``execute``'s last step, one round trip
        less per run): the owner frees the values when it reads the request, and its reply is
        skipped as a late one by our next request (or drained by ``close``). If the request is
        lost (the owner just died), result retention frees them."""
        client = self._client
        if client._conn is None:
            return
        request = m.FreeRunRequest(next(client._ids), self.id)
        try:
            client._conn.send(codec.encode(request, sender=client._name))
        except errors.ConnectionError:
            return
        client._unanswered = True

    def _fetch(self, ids: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = tuple(ids[start : start + _CHUNK])
            reply, frames = self._client._run_request(
                lambda rid, c=chunk: m.FetchResults(rid, self.id, c),
                timeout=max(self._client.timeout, 60.0),
                grace=10.0,
            )
            if reply.missing:
                raise errors.HandoffError(
                    f"results of {list(reply.missing)[:5]} of run {self.id} are not available "
                    "(unknown function id, or freed after retention)"
                )
            for task_id, frame in zip(reply.task_ids, frames, strict=False):
                out[task_id] = values.loads(frame)
        return out

    def __repr__(self) -> str:
        return f"Run({self.id!r}, owner={self.owner!r})"


def connect(
    address: str | None = None,
    *,
    key_file: str | None = None,
    timeout: float = 5.0,
    allow_local_users: bool = False,
    insecure: bool = False,
) -> Client:
    """Connect to a daemon: ``address`` argument, else HANDOFFD_ADDRESS, else 127.0.0.1:7788.

    Authentication: ``key_file`` (else HANDOFFD_KEY_FILE) for a cluster with a key (``insecure``
    accepts a key file other users can read, with a warning); without one, this user's local key,
    which the keyless daemons of this user hold too. ``allow_local_users=True`` (or
    HANDOFFD_ALLOW_LOCAL_USERS=1) connects without authentication, to a daemon started with
    ``--allow-local-users`` or a keyless ``--insecure`` one; nothing then proves who answers."""
    return Client(
        address,
        key_file=key_file,
        timeout=timeout,
        allow_local_users=allow_local_users,
        insecure=insecure,
    )
