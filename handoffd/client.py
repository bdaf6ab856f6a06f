"""Client and Run: the synchronous API users call (``handoffd.connect()``).

A Client talks to one daemon's control endpoint (request/reply over a ZeroMQ DEALER). The daemon
that receives a submission owns the run. Waiting is a long poll (``WaitRun``), so a finished run is
noticed at once without polling churn, and its answer (``RunOutcome``) carries the results the owner
holds, so ``Run.wait()`` + ``results()`` is usually one round trip. ``execute`` is one exchange for a
short run: ``SubmitAndWait`` is answered with the outcome and the results, which the owner then frees
(no release request); what the outcome does not carry is fetched as before (``FetchResults``). The client remembers every address the
cluster told it about, so when its daemon dies it reconnects to another and follows the run
(the connection plumbing and failover: ``handoffd.client_conn``).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from handoffd import client_moves, client_results, client_upload, envvars, errors
from handoffd.client_conn import ClientPlumbing
from handoffd.client_run import (
    POLL,
    WAIT_BYTES,
    Run,
    RunStatus,
    run_status,
    submitted_ids,
    unknown_run,
)
from handoffd.client_threads import ThreadConnections
from handoffd.config import DEFAULT_HOST, DEFAULT_PORT
from handoffd.protocol import codec
from handoffd.protocol import messages as m
from handoffd.protocol.messages_observability import (
    GetNodeInfo,
    GetTaskHistory,
    NodeInfoReply,
)
from handoffd.protocol.messages_submit import as_sent, sent_payloads
from handoffd.scheduler.history import document as history_document
from handoffd.transport import local_socket
from handoffd.transport.base import MEMORY_SCHEME
from handoffd.transport.client import Connection, ControlClient

if TYPE_CHECKING:
    from handoffd.dag import DAG
    from handoffd.spec import Policy
    from handoffd.transport.keys import CurveKeys
    from handoffd.transport.memory import MemoryNetwork

_POLL = POLL
_CHUNK = 256  # results fetched per request
_EXECUTE_BYTES = 64 << 20  # result bytes execute() takes inline in the run's outcome
_WAIT_BYTES = WAIT_BYTES
_SUBMIT_TIMEOUT = 30.0  # seconds at least a submission waits for its answer
_CLOSE_DRAIN = 0.5  # seconds close() waits at most for the reply to an unawaited request
# While a client knows one address only, the cluster is listed again (for failover) at most this
# often, at a submission: the nodes that join are learned within this of their joining.
_ALONE_RELIST = 1.0
_packages: Any = None  # handoffd.packages, once a submission loaded it
_one: Any = None  # handoffd.client_one, once an execute loaded it


@dataclass(frozen=True)
class NodeInfo:
    capacity: dict[str, float]
    free: dict[str, float]
    status: str
    address: str
    # kind -> where the capacity figure came from ("flag", "affinity", "cgroup v1 ...", "NVML")
    sources: dict[str, str] = field(default_factory=dict)
    gpus: tuple[str, ...] = ()  # "ID NAME" of each GPU the node hands out (NAME when known)


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


def resolve_addresses(address: str | Sequence[str] | None) -> list[str]:
    """``resolve_address`` of each of several addresses: a list, or one string with commas."""
    if address is None:
        address = envvars.get("ADDRESS") or None
    parts: list[str | None]
    if address is None or isinstance(address, str):
        parts = [a.strip() for a in (address or "").split(",") if a.strip()] or [None]
    else:
        parts = list(address)
    if not parts:
        raise errors.HandoffError("no daemon address given: expected HOST:PORT[,HOST:PORT...]")
    return [resolve_address(a) for a in parts]


def _missing_package(reply: Any) -> bool:
    return isinstance(reply, m.RunRejected) and reply.error.validation_kind == "missing_package"


class Client(ClientPlumbing):
    """A connection to a handoffd cluster through one daemon (failing over to others it knows)."""

    def __init__(
        self,
        address: str | Sequence[str] | None = None,
        *,
        key_file: str | None = None,
        timeout: float = 5.0,
        allow_local_users: bool = False,
        insecure: bool = False,
    ) -> None:
        if (
            type(timeout) not in (int, float)
            or not math.isfinite(timeout)  # (inf: no reply bound the socket can wait for)
            or timeout <= 0
        ):
            raise ValueError(
                f"connect(timeout={timeout!r}): the seconds to wait for each reply from the "
                "daemon must be a positive, finite number (e.g. timeout=30.0); a task's own "
                "limit is execute(timeout=...), a wait's run.wait(timeout)"
            )
        # Several addresses ("a:1,b:2" or a list): the first is home, the others where
        # requests and submissions go when it cannot serve (handoffd.client_moves).
        addresses = resolve_addresses(address)
        self._threads = ThreadConnections(addresses[0])
        self._learned = threading.Lock()  # guards _known and _unreachable
        self._key_file = key_file or envvars.get("KEY_FILE")
        self._curve: CurveKeys | None = None
        self._local_key: str | None = None
        self._network: MemoryNetwork | None = None
        if self.address.startswith(MEMORY_SCHEME):
            # A node on an in-process network: every address it names lives on that network.
            from handoffd.transport.memory import find_network

            try:
                self._network, self._threads.home = find_network(self.address)
                addresses = [self.address, *(find_network(a)[1] for a in addresses[1:])]
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
        # A result bigger than this is refused, not read (handoffd.client_results).
        self.max_result_bytes = client_results.default_limit()
        self._name = f"client-{uuid.uuid4().hex[:12]}"
        self._ids = itertools.count(1)
        self._known: list[str] = list(dict.fromkeys(addresses))
        self._unreachable: dict[str, float] = {}  # address -> when a connect last failed
        self._stored: set[tuple[str, str]] = set()  # (address, sha): code packages it holds
        self._alone_listed: float | None = None  # when a submission last listed the nodes
        # Per DAG this client ran or submitted (a weak reference whose callback, the dict's own
        # pop, drops the entry with the DAG: no Python frame per set or per DAG dropped, as
        # WeakKeyDictionary runs): its results (execute) or its Run (submit), for get(ref).
        self._ran: dict[weakref.ref[Any], dict[str, Any] | Run] = {}
        for address in self._known:  # the first that answers (ConnectionError: none did)
            try:
                self._connect(address)
                break
            except errors.AuthenticationError:
                raise
            except errors.ConnectionError:
                if address == self._known[-1]:
                    raise

    # -- plumbing (the rest is in handoffd.client_conn) ---------------------------------------

    def _dial(self, address: str, timeout: float) -> Connection:
        if self._network is not None:
            from handoffd.transport.memory_client import MemoryControlClient

            return MemoryControlClient(self._network, address, connect_timeout=timeout)
        if self._curve is not None and local_socket.enabled():
            # A daemon on this machine: its Unix socket, read by its loop and by this thread
            # (no ZeroMQ I/O thread on either side); any refusal leaves it to ZeroMQ below.
            try:
                return local_socket.LocalClient(
                    address, self._curve.secret, connect_timeout=timeout
                )
            except OSError:
                pass
        return ControlClient(
            address, curve=self._curve, connect_timeout=timeout, local_key=self._local_key
        )

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
            if member.status == m.ALIVE:
                self._learn(member.address)
        return out

    def submit(
        self,
        dag: DAG,
        *,
        max_retries: int = 3,
        timeout: float | None = None,
        policy: Policy = "binpack",
        outputs: Iterable[str] | None = None,
        working_dir: str | None = None,
        py_modules: Iterable[str | ModuleType] | None = None,
        priority: int = 0,
    ) -> Run:
        """Submit a DAG; returns at once with a Run owned by the daemon we are connected to.
        ``max_retries``: times a failing function is run again; ``timeout``: seconds for the
        whole run (None: no deadline); ``policy``: placement; ``outputs``: the function ids whose
        values the client wants (default: every non-inline function); ``priority`` is added to
        every function's own (higher starts first on a busy node).

        Code: the modules imported from under the current directory (and a dag.py's, for
        ``handoffctl submit``) are shipped with the run; ``working_dir`` ships a directory and
        ``py_modules`` packages or modules (paths, modules or names), each on ``sys.path`` in the
        workers running this run's tasks (``handoffd.packages``)."""
        run = self._submit(
            dag, False, max_retries, timeout, policy, outputs, working_dir, py_modules, priority
        )
        self._ran[weakref.ref(dag, self._ran.pop)] = run
        return run

    def execute(
        self,
        dag: DAG,
        *,
        max_retries: int = 3,
        timeout: float | None = None,
        policy: Policy = "binpack",
        outputs: Iterable[str] | None = None,
        working_dir: str | None = None,
        py_modules: Iterable[str | ModuleType] | None = None,
        priority: int = 0,
    ) -> dict[str, Any]:
        """Submit, wait, and return {function id: value} for every non-inline function (or the
        ``outputs``); raise the run's error (TaskFailed, RunCancelled, Timeout, ...). Options as
        for ``submit``."""
        global _one
        done: Any = None
        if outputs is None and working_dir is None and py_modules is None:
            one = _one
            if one is None:  # loaded at the first execute (it loads the DAG and the pickler)
                from handoffd import client_one as one

                _one = one
            # A plain one-function DAG in one go (handoffd.client_one); None: not one of those
            done = one.execute(
                self,
                dag,
                max_retries,
                timeout,
                policy,
                priority,
                (_POLL, _EXECUTE_BYTES, _SUBMIT_TIMEOUT),
            )
            if type(done) is dict:
                self._ran[weakref.ref(dag, self._ran.pop)] = done
                return done
        run = done or self._submit(
            dag, True, max_retries, timeout, policy, outputs, working_dir, py_modules, priority
        )
        if run._last is None or not run._last.done:
            # Still running after the first wait, or the owner died (we follow the run).
            run._wait_until(run._deadline, timeout)
        status = run._last
        assert status is not None
        if status.error is not None:
            from handoffd.arguments import as_consumer_failure

            raise as_consumer_failure(status.error, dag.hook_consumers)
        results = run.results()
        if not run._released:
            run._release_nowait()
        self._ran[weakref.ref(dag, self._ran.pop)] = results
        return results

    async def execute_async(self, dag: Any, **options: Any) -> dict[str, Any]:
        """``execute`` for asyncio callers: awaits the results without blocking the event loop
        (the exchange runs in a worker thread, on that thread's own connection)."""
        import asyncio  # here: a client that never awaits does not load asyncio

        return await asyncio.to_thread(self.execute, dag, **options)

    async def submit_async(self, dag: Any, **options: Any) -> Run:
        """``submit`` for asyncio callers; await ``run.wait_async()``/``run.results_async()``."""
        import asyncio  # here: a client that never awaits does not load asyncio

        return await asyncio.to_thread(self.submit, dag, **options)

    def stream(self, dag: Any, *, max_in_flight: int = 1000, **options: Any) -> Any:
        """Start a streaming pipeline (``handoffd.stream.pipeline.Pipeline``): its stages'
        replicas are placed in the cluster now; ``push`` items, read ``results()`` in push order.
        Use it as a context manager (the block's end stops the replicas)."""
        from handoffd.stream.pipeline import Pipeline

        return Pipeline(self, dag, max_in_flight=max_in_flight, **options)

    def get(self, ref: Any) -> Any:
        """The value of a ``handoffd.Ref`` (or a list of values for a list of Refs): from the
        results of the last ``execute`` of its DAG by this client, else from the Run of its last
        ``submit`` (waiting for it), else the DAG is executed now."""
        from handoffd.decorator import Ref

        if isinstance(ref, (list, tuple)):
            return [self.get(one) for one in ref]
        if not isinstance(ref, Ref):
            raise TypeError(
                f"client.get expects a handoffd.Ref (what a decorated call returns inside a "
                f"`with handoffd.DAG()` block), got {type(ref).__name__}"
            )
        ran = self._ran.get(weakref.ref(ref.dag))
        if ran is None:
            ran = self.execute(ref.dag)
        if isinstance(ran, Run):
            return ran.result(ref.id)
        if ref.id not in ran:
            raise errors.HandoffError(
                f"{ref!r} has no value in its DAG's last results: it is an inline function, or "
                f"outputs= left it out; execute the DAG again with it among the outputs"
            )
        return ran[ref.id]

    def _submit(
        self,
        dag: Any,
        wait: bool,
        max_retries: int = 3,
        timeout: float | None = None,
        policy: str = "binpack",
        outputs: Iterable[str] | None = None,
        working_dir: str | None = None,
        py_modules: Iterable[str | ModuleType] | None = None,
        priority: int = 0,
    ) -> Run:
        global _packages
        code_packages = _packages
        if code_packages is None:
            # Loaded at the first submission (zipfile, hashlib, sysconfig), then kept: ``from
            # handoffd import packages`` in the body ran importlib's Python fromlist code per call.
            from handoffd import packages as code_packages

            _packages = code_packages
        from handoffd.dag import DAG
        from handoffd.dag_columns import submission

        if not isinstance(dag, DAG):
            raise errors.ValidationError(
                "invalid_dag", None, f"expected a handoffd.DAG, got {type(dag).__name__}"
            )
        listed = outputs if outputs is None or isinstance(outputs, str) else tuple(outputs)
        roots = [os.getcwd(), getattr(dag, "_source_dir", None) or ""]
        shipped = code_packages.build(working_dir, py_modules, roots, cwd=True)
        shas = tuple(p.sha for p in shipped)
        # The owner checks the same rules again (handoffd.validation): it never trusts a client.
        tasks, payloads, function_ids = submission(dag, policy, max_retries, listed, shas, priority)
        output_ids = None if listed is None else tuple(listed)  # (a str was refused)
        if not self._known[1:]:
            self._learn_alone()
        run_id = os.urandom(8).hex()  # as uuid4().hex[:16] was: 64 random bits, no UUID object
        run = Run(self, run_id, "", function_ids, output_ids)
        if wait:  # (its outcome may come as one block: ``outcome_block``)
            run._block_ids = submitted_ids(tasks, output_ids)
        run._hook_consumers = dict(dag.hook_consumers)
        run._deadline = None if timeout is None else time.monotonic() + timeout
        options = (max_retries, policy, output_ids, shas)
        if not wait:

            def attempt() -> Any:
                for resend in (False, True):
                    request = m.SubmitRun(next(self._ids), run_id, tasks, *options)
                    daemon_max = self._daemon_max()
                    reply, _ = self._request(
                        as_sent(request, daemon_max),
                        sent_payloads(tasks, payloads, daemon_max)
                        + client_upload.package_frames(self, shipped, resend),
                        timeout=max(self.timeout, _SUBMIT_TIMEOUT),
                    )
                    if not _missing_package(reply) or resend:
                        break
                if isinstance(reply, m.RunRejected):
                    raise client_moves.rejection(self, reply)
                return reply

            # The same submission (same run id) goes to another node if this one cannot take it.
            reply = client_moves.submit_anywhere(self, run_id, attempt)
            if isinstance(reply, m.RunMoved):  # a retry found the run already taken
                self._learn(reply.owner_address)
            else:
                self._stored.update((self.address, sha) for sha in shas)
            run.owner = reply.owner
            return run
        # One exchange: the owner answers with the outcome (after a RunAccepted if the run is
        # still going once its standbys hold it). If the owner dies before it accepted the run
        # we were promised nothing: ConnectionError, as for submit(); after, we follow the run.
        poll = _POLL if timeout is None else max(0.0, min(_POLL, timeout))

        def exchange() -> Run:
            nonlocal run
            for resend in (False, True):
                run._missing_package = False
                run = self._submit_and_wait(run, tasks, payloads, shipped, resend, poll, options)
                if not run._missing_package:
                    break
            return run

        moved = client_moves.submit_anywhere(self, run_id, exchange)
        if isinstance(moved, m.RunMoved):  # a retry found the run already taken: follow it
            self._learn(moved.owner_address)
            run.owner = moved.owner
        return run

    def _learn_alone(self) -> None:
        """Learn the cluster's addresses for failover while only one is known: at most once per
        ``_ALONE_RELIST`` seconds, so a one-node cluster's ``execute`` is one round trip, not a
        ``ListNodes`` before each submission; a node that joined since is still learned."""
        now = time.monotonic()
        listed = self._alone_listed
        if listed is not None and now - listed < _ALONE_RELIST:
            return
        self._alone_listed = now
        try:
            self.nodes()
        except errors.HandoffError:
            pass

    def _submit_and_wait(
        self,
        run: Run,
        tasks: Any,
        payloads: list[bytes],
        shipped: list[Any],
        resend: bool,
        poll: float,
        options: tuple[Any, ...],
    ) -> Run:
        max_retries, policy, output_ids, shas = options
        run_id = run.id
        request_id = next(self._ids)
        request = m.SubmitAndWait(
            request_id,
            run_id,
            tasks,
            max_retries,
            policy,
            output_ids,
            poll,
            _EXECUTE_BYTES,
            True,
            shas,
        )
        daemon_max = self._daemon_max()  # (a daemon below 6 gets whole payloads: sent_payloads)
        frames = sent_payloads(tasks, payloads, daemon_max)
        frames = frames + client_upload.package_frames(self, shipped, resend)
        client_upload.send(
            self, codec.encode(as_sent(request, daemon_max), sender=self._name, frames=frames)
        )
        limit = time.monotonic() + poll + max(self.timeout, _SUBMIT_TIMEOUT)
        return self._submitted(run, request_id, shas, resend, limit)

    def _submitted(
        self,
        run: Run,
        request_id: int,
        shas: tuple[str, ...],
        resend: bool,
        limit: float,
        first: list[Any] | None = None,
    ) -> Run:
        """The replies to a sent submission until its outcome (or a move, a rejection, no
        answer by ``limit``, a monotonic time); ``first``: a reply already read."""
        while True:
            try:
                reply, frames = self._receive(request_id, limit - time.monotonic(), first)
                first = None
            except errors.ConnectionError:
                if not run.owner:
                    raise
                return run  # accepted: the caller follows the run (owner death, or no answer)
            if isinstance(reply, m.RunRejected):
                if _missing_package(reply) and not resend:
                    run._missing_package = True
                    return run
                raise client_moves.rejection(self, reply)
            if isinstance(reply, m.RunMoved):  # a retried submission: the run is already owned
                self._learn(reply.owner_address)
                run.owner = reply.owner
                return run  # the caller follows it
            if shas:
                address = self.address
                stored = self._stored
                for sha in shas:
                    stored.add((address, sha))
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
        status = self._status(run_id, 0.0, grace=0.0, changing_ok=True)
        if status.state == "UNKNOWN":
            raise errors.UnknownRun(unknown_run(run_id, self._known))
        # Function ids come from the finished run's placement (now it may list only a few).
        run = Run(self, run_id, status.owner, None, None)
        run._last = status
        return run

    def runs(self) -> list[m.RunSummary]:
        reply, _ = self._failover_request(lambda rid: m.ListRuns(rid))
        return list(reply.runs)

    def node_info(self) -> NodeInfoReply:
        """The connected daemon's name, version, start time, HTTP port and the runs it owns."""
        reply, _ = self._failover_request(lambda rid: GetNodeInfo(rid))
        return reply  # type: ignore[no-any-return]

    def task_history(self, run_id: str) -> dict[str, Any]:
        """The run's task history as ``handoffctl tasks --json`` prints it: {"run_id", "state",
        "owner", "term", "submitted", "started", "finished", "tasks": [...]} (``Run.tasks``)."""
        reply, _ = self._run_request(lambda rid: GetTaskHistory(rid, run_id))
        if reply.state == "UNKNOWN":
            raise errors.HandoffError(f"run {run_id} is not known to the cluster")
        return history_document(reply)

    def _status(
        self, run_id: str, wait: float, grace: float | None = None, changing_ok: bool = False
    ) -> RunStatus:
        """``changing_ok``: a node's status of a run whose owner is changing (the replicated
        state, ``RunStatus.changing``) is the answer; else the run is followed to its owner."""
        reply, _ = self._run_request(
            lambda rid: m.GetRunStatus(rid, run_id, wait),
            timeout=wait + self.timeout,
            grace=grace,
            changing_ok=changing_ok,
        )
        return run_status(reply)

    def close(self) -> None:
        """Close every connection (other threads' too: call it once they are done)."""
        for other in self._threads.others():
            other.close()
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


def connect(
    address: str | Sequence[str] | None = None,
    *,
    key_file: str | None = None,
    timeout: float = 5.0,
    allow_local_users: bool = False,
    insecure: bool = False,
) -> Client:
    """Connect to a daemon: ``address`` argument, else HANDOFFD_ADDRESS, else 127.0.0.1:7788.
    Several addresses (a list, or "HOST:PORT,HOST:PORT"): the first that answers is used, and the
    others (with the members the cluster lists) are where requests and submissions move when it
    cannot serve them (fenced in a minority partition, leaving, stopped or not answering).

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
