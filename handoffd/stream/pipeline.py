"""``client.stream(dag)``: a streaming pipeline's client side (the I/O shell of ``state.py``).

Design note: the stages' replicas are one run of long-running tasks (``replica.serve``), placed by
the owner's scheduler by cost (policy ``spread``, so a stage's replicas go to different nodes when
they fit), each holding its claim for the pipeline's life; a replica lost with its node is a lost
attempt, which the owner re-places, and the new replica joins again. Every replica connects to
this client's ROUTER (bound on the address the daemon sees us at, CURVE with a key made for this
pipeline): it joins with the endpoint its peers reach it at, gets the table of live replicas,
sends heartbeats. Items go client -> first stages' replicas -> ... -> last stages' replicas ->
client: the stages between pass them to each other directly, never through here. One thread owns
the socket and the state machine's sends; ``push`` and ``results`` talk to it under one lock.
Values are pickled here and in the replicas' workers only.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import zmq

from handoffd import validation, values
from handoffd.arguments import Argument, DeserializeHook, SerializeHook, dep_id
from handoffd.dag import DAG, Function
from handoffd.errors import TaskFailed, Timeout, ValidationError
from handoffd.protocol import codec
from handoffd.protocol import messages_stream as ms
from handoffd.protocol import messages_streamnet as mn
from handoffd.stream.replica import Hooks, local_host, serve
from handoffd.stream.state import (
    ForgetItems,
    PipelineFailed,
    PipelineState,
    Route,
    SendItems,
    SendRoutes,
    Stage,
    StopReplica,
    consumers_of,
)

TICK = 0.005  # seconds between the loop's timer checks (batch timeouts, dead replicas)
KEEPALIVE = 1.0  # seconds between the client's keep-alives to idle replicas
RUN_CHECK = 5.0  # seconds without an output before results() asks whether the run still goes


def compile_stream(dag: DAG) -> tuple[list[str], list[Stage], dict[str, Function], Hooks]:
    """The pipeline's inputs, stages (topological order), stage functions and the hooks of its
    edges ((consumer, source) -> (serialize, deserialize, always), from ``handoffd.Argument``s);
    ValidationError for a DAG that is not a pipeline."""
    if not isinstance(dag, DAG):
        raise ValidationError(
            "invalid_dag", None, f"expected a handoffd.DAG, got {type(dag).__name__}"
        )
    inputs = [fn.id for fn in dag if fn.type == "input"]
    if not inputs:
        raise ValidationError(
            "invalid_stream", None,
            "a pipeline needs at least one Function(id=..., type='input') to push items into",
        )  # fmt: skip
    functions: dict[str, Function] = {}
    hooks: Hooks = {}
    for fn in dag:
        if fn.type == "input":
            if fn.args:
                raise ValidationError("invalid_stream", fn.id, "an input function takes no args")
            continue
        if fn.type != "regular":
            raise ValidationError(
                "invalid_stream", fn.id,
                f"type {fn.type!r} is not supported in a pipeline; use 'input' or 'regular'",
            )  # fmt: skip
        if not callable(fn.code):
            raise ValidationError("invalid_code", fn.id, "a stage's code must be a callable")
        for arg in fn.args:
            if isinstance(arg, Argument):
                arg.check(fn.id)
                if arg.hooked:
                    hooks[(fn.id, arg.id)] = (
                        SerializeHook(arg.serialize, arg.id, fn.id),  # type: ignore[arg-type]
                        DeserializeHook(arg.deserialize, arg.id, fn.id),  # type: ignore[arg-type]
                        arg.always,
                    )
        ids = [dep_id(a) for a in fn.args]
        if not ids or not all(isinstance(a, str) and a in dag for a in ids):
            raise ValidationError(
                "invalid_stream", fn.id,
                f"a stage's args must name inputs or other stages of the DAG, got {fn.args!r}",
            )  # fmt: skip
        if fn.parallelism < 1 or (fn.batch_size is not None and fn.batch_size < 1):
            raise ValidationError(
                "invalid_option", fn.id, "parallelism and batch_size must be integers >= 1"
            )
        if fn.init is not None and not callable(fn.init):
            raise ValidationError("invalid_option", fn.id, "init must be a callable or None")
        functions[fn.id] = fn
    if not functions:
        raise ValidationError("invalid_stream", None, "a pipeline needs at least one stage")
    links: dict[str, validation.Links] = {
        fid: ([dep_id(a) for a in fn.args], None, None, False) for fid, fn in functions.items()
    }
    for fid in inputs:
        links[fid] = ((), None, None, False)
    order = validation.check_graph(links, pins=False)
    stages = [
        Stage(fid, tuple(dep_id(a) for a in functions[fid].args), functions[fid].batch_size,
              float(functions[fid].batch_timeout or 0.0))
        for fid in order if fid in functions
    ]  # fmt: skip
    consumers_of(inputs, stages)
    return inputs, stages, functions, hooks


class Pipeline:
    """A running pipeline: ``push`` items, read ``results()`` in push order; ``close()`` (or the
    ``with`` block's end) stops the replicas and frees their claims."""

    def __init__(
        self,
        client: Any,
        dag: DAG,
        *,
        max_in_flight: int = 1000,
        start_timeout: float = 60.0,
        dead_after: float = 5.0,
        max_retries: int = 5,
    ) -> None:
        if max_in_flight < 1:
            raise ValidationError("invalid_option", None, "max_in_flight must be >= 1")
        self.inputs, stages, functions, self._hooks = compile_stream(dag)
        self.max_in_flight = max_in_flight
        self._state = PipelineState(self.inputs, stages, dead_after=dead_after)
        self._lock = threading.Condition()
        self._failure: BaseException | None = None
        self._closed = False
        self._woken = False  # a wake signal is pending for the loop thread
        self._next_output = 0
        self._ctx: zmq.Context[Any] = zmq.Context()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.linger = 0
        # no high-water mark: a ROUTER drops what is over it silently (an item lost without a
        # table change would never be replayed); max_in_flight bounds what can queue
        self._router.sndhwm = 0
        self._router.rcvhwm = 0
        public, secret = zmq.curve_keypair()
        self._router.curve_server = True
        self._router.curve_publickey = public
        self._router.curve_secretkey = secret
        host = local_host(client.address.rpartition(":")[0])
        port = self._router.bind_to_random_port(f"tcp://{host}")
        self._wake_in = self._ctx.socket(zmq.PAIR)
        self._wake_out = self._ctx.socket(zmq.PAIR)
        wake = f"inproc://handoffd-stream-{secrets.token_hex(8)}"
        self._wake_out.bind(wake)
        self._wake_in.connect(wake)
        self._token = secrets.token_hex(16)
        replicas = handoffd_dag(stages, functions, {
            "endpoint": f"tcp://{host}:{port}", "server_key": public, "token": self._token,
            "hooks": self._hooks,
        })  # fmt: skip
        self.sent_items = 0  # item values this client sent, and outputs it received: the
        self.received_items = 0  # stages between pass theirs to each other, not through here
        self._expected = {s.id: functions[s.id].parallelism for s in stages}
        self._thread = threading.Thread(target=self._loop, name="handoffd-stream", daemon=True)
        self._thread.start()
        try:
            self.run = client.submit(replicas, policy="spread", max_retries=max_retries)
            self._wait_started(start_timeout)
        except BaseException:
            self.close(wait=0.0)
            raise

    # -- the user's side -------------------------------------------------------------------------

    def push(self, item: Any) -> int:
        """Push one item (``{input_id: value}`` when the pipeline has several inputs); blocks while
        ``max_in_flight`` items are unfinished. Returns the item's correlation id."""
        if len(self.inputs) == 1 and not (isinstance(item, dict) and set(item) == set(self.inputs)):
            inputs = {self.inputs[0]: item}
        elif isinstance(item, dict) and set(item) == set(self.inputs):
            inputs = item
        else:
            raise ValidationError(
                "invalid_item", None,
                f"this pipeline has inputs {self.inputs}: push a dict with exactly those keys",
            )  # fmt: skip
        with self._lock:
            while self._state.unfinished >= self.max_in_flight and self._failure is None:
                self._lock.wait(0.5)
            self._raise_failure()
            if self._closed:
                raise PipelineFailed("the pipeline is closed")
            cid = self._state.push(inputs)
            if not self._woken:
                self._signal()
        return cid

    def results(self, timeout: float | None = None) -> Iterator[Any]:
        """Outputs in push order (a failed item: ``handoffd.ItemFailed``) until every item pushed
        so far was yielded. ``timeout``: seconds to wait for any one output."""
        deadline: float | None = None
        while True:
            ready: list[Any] = []
            stalled = False
            with self._lock:
                if self._next_output >= self._state.pushed:
                    return
                now = time.monotonic()
                if deadline is None and timeout is not None:
                    deadline = now + timeout
                quiet_until = now + RUN_CHECK
                outputs = self._state.outputs
                while self._next_output not in outputs:
                    self._raise_failure()
                    now = time.monotonic()
                    if deadline is not None and now >= deadline:
                        raise Timeout(f"no output for item {self._next_output} within {timeout}s")
                    if now >= quiet_until:
                        stalled = True
                        break
                    self._lock.wait(0.5 if deadline is None else min(0.5, deadline - now))
                while self._next_output in outputs:  # every output ready in order, at once
                    ready.append(outputs.pop(self._next_output))
                    self._next_output += 1
            if stalled:
                self._check_run()  # no output for a while: is the replicas' run still going?
                continue
            deadline = None
            yield from ready

    def _check_run(self) -> None:
        """Raise PipelineFailed if the replicas' run ended while the pipeline is open (its
        replicas failed more often than their retries, or it was cancelled)."""
        status = self.run.status()
        if status.done and not self._closed:
            with self._lock:
                self._failure = PipelineFailed(
                    f"the pipeline's replicas (run {self.run.id}) ended {status.state}"
                    + (f": {status.error}" if status.error is not None else "")
                )
                self._lock.notify_all()
            raise self._failure

    def stats(self) -> dict[str, Any]:
        with self._lock:
            state = self._state
            return {
                "pushed": state.pushed,
                "finished": state.finished,
                "replayed": state.replayed,
                "epoch": state.epoch,
                "sent_items": self.sent_items,
                "received_items": self.received_items,
                "replicas": {s: state.stage_replicas(s) for s in state.stages},
            }

    def close(self, wait: float = 30.0) -> None:
        """Stop the replicas (their tasks end, freeing their claims) and the pipeline's socket."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lock.notify_all()
        self._wake()
        self._thread.join(10)
        run = getattr(self, "run", None)
        if run is not None and wait > 0:
            try:
                run.wait(wait)
            except Exception:  # noqa: BLE001 - stopping: a replica's failure is already known
                pass
        for sock in (self._router, self._wake_in, self._wake_out):
            sock.close(linger=0)
        self._ctx.term()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop thread ---------------------------------------------------------------------------

    def _wake(self) -> None:
        """Wake the loop thread (one signal pending at most: the loop takes everything queued)."""
        with self._lock:
            if not self._woken:
                self._signal()

    def _signal(self) -> None:
        """(Under the lock.)"""
        self._woken = True
        try:
            self._wake_in.send(b"", zmq.NOBLOCK)
        except zmq.Again:  # signals are pending: the loop wakes anyway
            pass

    def _wait_started(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        check = time.monotonic() + RUN_CHECK
        while True:
            with self._lock:
                self._raise_failure()
                state = self._state
                if all(state.stage_replicas(s) >= n for s, n in self._expected.items()):
                    return
                have = {s: state.stage_replicas(s) for s in self._expected}
                late = time.monotonic() > deadline
                if not late:
                    self._lock.wait(0.2)
            if late:
                try:
                    status = self.run.status()
                    seen = f"; the run is {status.state} {status.counts}, placed {status.placement}"
                except Exception as exc:  # noqa: BLE001 - only for the message
                    seen = f"; its status is unknown ({exc})"
                raise Timeout(
                    f"the pipeline's replicas did not all start within {timeout}s (joined: "
                    f"{have}, wanted: {self._expected}){seen}; is there room in the cluster "
                    f"for every replica's cost?"
                )
            if time.monotonic() >= check:  # a replica that fails at once ends the run
                check = time.monotonic() + RUN_CHECK
                self._check_run()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_out, zmq.POLLIN)
        last_keepalive = time.monotonic()
        try:
            while True:
                events = dict(poller.poll(int(TICK * 1000)))
                if self._wake_out in events:
                    with self._lock:
                        self._woken = False
                    while self._wake_out.poll(0):
                        self._wake_out.recv()
                received = []
                if self._router in events:
                    while self._router.poll(0):
                        received.append(self._router.recv_multipart(copy=True))
                now = time.monotonic()
                with self._lock:
                    for frames in received:
                        self._on_frames(frames, now)
                    self._state.tick(now)
                    sends = self._state.take()
                    closed = self._closed
                    self._lock.notify_all()
                failed = self._perform(sends)
                if failed:
                    with self._lock:
                        for stage, failures in failed:
                            self._state.done(stage, False, [], [], failures)
                        self._lock.notify_all()
                if closed:
                    self._stop_replicas()
                    return
                if now - last_keepalive > KEEPALIVE:
                    last_keepalive = now
                    with self._lock:
                        identities = [r.identity for r in self._state.replicas.values()]
                    for identity in identities:
                        self._send(identity, ms.StreamHeartbeat("", -1))
        except Exception as exc:  # noqa: BLE001 - the loop's end must reach the user
            with self._lock:
                self._failure = exc
                self._lock.notify_all()

    def _perform(self, sends: list[Any]) -> list[tuple[str, dict[int, tuple[str, str, str]]]]:
        """Send what the state machine asked for; the items whose input's serialize hook failed
        (by stage)."""
        failed = []
        for send in sends:
            if isinstance(send, SendItems):
                cids, vals = send.cids, send.values
                hook = self._hooks.get((send.stage, send.source))
                if hook is not None:  # this client is on no node: the value always leaves it
                    failures, cids, vals = _serialize_all(hook[0], cids, vals)
                    if failures:
                        failed.append((send.stage, failures))
                self.sent_items += len(cids)
                msg = mn.StreamBatch(send.epoch, send.stage, send.source, hook is not None)
                self._send(send.identity, msg, [values.dumps((cids, vals))])
            elif isinstance(send, SendRoutes):
                routes = tuple(
                    mn.StreamRoute(r.stage, r.replica, r.endpoint, r.public_key, r.node)
                    for r in send.routes
                )
                table = mn.StreamRoutes(send.epoch, send.replay_epoch, routes)
                for identity in send.identities:
                    self._send(identity, table)
            elif isinstance(send, StopReplica):
                self._send(send.identity, ms.StreamStop("replaced"))
            elif isinstance(send, ForgetItems):
                forget = mn.StreamForget(tuple(send.cids))
                for identity in send.identities:
                    self._send(identity, forget)
        return failed

    def _stop_replicas(self) -> None:
        for replica in list(self._state.replicas.values()):
            self._send(replica.identity, ms.StreamStop("closed"))
        time.sleep(0.05)  # let the stops leave before the socket closes (LINGER=0)

    def _send(self, identity: bytes, msg: Any, frames: list[bytes] | None = None) -> None:
        self._router.send_multipart(
            [identity, *codec.encode(msg, sender="pipeline", frames=frames or [])], copy=False
        )

    def _on_frames(self, frames: list[bytes], now: float) -> None:
        identity, rest = frames[0], frames[1:]
        decoded = codec.decode(rest)
        if decoded is None:
            return
        msg = decoded.msg
        state = self._state
        if isinstance(msg, mn.StreamDone):
            cids, outputs, failures = values.loads(decoded.frames[0])
            self.received_items += len(cids)
            state.done(msg.stage, msg.sink, cids, outputs, failures)
        elif isinstance(msg, ms.StreamHeartbeat):
            state.heard(msg.stage, msg.replica, now)
        elif isinstance(msg, mn.StreamReplicaJoin):
            r = msg.route
            if secrets.compare_digest(msg.token, self._token) and r.stage in state.stages:
                route = Route(r.stage, r.replica, r.endpoint, r.public_key, r.node)
                state.joined(identity, route, now)
        elif isinstance(msg, ms.StreamReplicaFailed):
            self._failure = PipelineFailed(
                f"stage {msg.stage!r} replica {msg.replica}: init failed: "
                f"{msg.exc_type}: {msg.message}",
            )
            self._failure.__cause__ = TaskFailed(
                msg.stage, 1, msg.exc_type, msg.message, msg.traceback
            )


def handoffd_dag(stages: list[Stage], functions: dict[str, Function], link: dict[str, Any]) -> DAG:
    """The run of the pipeline's replicas: ``parallelism`` long-running tasks per stage."""
    dag = DAG()
    for stage in stages:
        fn = functions[stage.id]
        for index in range(fn.parallelism):
            config = dict(link, stage=stage.id, replica=index, code=fn.code, init=fn.init,
                          batch_size=fn.batch_size, batch_timeout=stage.batch_timeout,
                          args=stage.args, consumers=stage.consumers)  # fmt: skip
            dag.add_function(
                Function(id=f"{stage.id}#{index}", code=serve, extra_args=[config],
                         cost=fn.cost, node=fn.node, priority=fn.priority)
            )  # fmt: skip
    return dag


def _serialize_all(
    hook: Any, cids: list[int], vals: list[Any]
) -> tuple[dict[int, tuple[str, str, str]], list[int], list[Any]]:
    """``hook`` on every value: (the failures by item, the items that passed and their bytes)."""
    failures: dict[int, tuple[str, str, str]] = {}
    kept_cids, kept = [], []
    for cid, value in zip(cids, vals, strict=True):
        try:
            kept.append(hook(value))
            kept_cids.append(cid)
        except Exception as exc:
            failures[cid] = (type(exc).__qualname__, str(exc), "")
    return failures, kept_cids, kept


__all__ = ["Pipeline", "compile_stream"]
