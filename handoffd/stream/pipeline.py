"""``client.stream(dag)``: a streaming pipeline's client side (the I/O shell of ``state.py``).

Design note: the stages' replicas are one run of long-running tasks (``replica.serve``), placed by
the owner's scheduler by cost (policy ``spread``, so a stage's replicas go to different nodes when
they fit), each holding its claim for the pipeline's life; a replica lost with its node is a lost
attempt, which the owner re-places, and the new replica joins again. Items flow through this
client: a ROUTER socket bound on the address the daemon sees us at (CURVE with a key made for this
pipeline) that every replica connects to. One thread owns the socket and the state machine's
sends; ``push`` and ``results`` talk to it under one lock. Values are pickled here and in the
replicas' workers only.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import zmq

from handoffd import validation, values
from handoffd.dag import DAG, Function
from handoffd.errors import TaskFailed, Timeout, ValidationError
from handoffd.protocol import codec
from handoffd.protocol import messages_stream as ms
from handoffd.stream.replica import serve
from handoffd.stream.state import PipelineFailed, PipelineState, Stage

TICK = 0.005  # seconds between the loop's timer checks (batch timeouts, dead replicas)
KEEPALIVE = 1.0  # seconds between the client's keep-alives to idle replicas
RUN_CHECK = 5.0  # seconds without an output before results() asks whether the run still goes


def compile_stream(dag: DAG) -> tuple[list[str], list[Stage], dict[str, Function]]:
    """The pipeline's inputs, stages (topological order) and stage functions; ValidationError
    for a DAG that is not a pipeline."""
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
        if not fn.args or not all(isinstance(a, str) and a in dag for a in fn.args):
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
        fid: (fn.args, None, None, False) for fid, fn in functions.items()
    }
    for fid in inputs:
        links[fid] = ((), None, None, False)
    order = validation.check_graph(links, pins=False)
    stages = [
        Stage(fid, tuple(functions[fid].args), functions[fid].batch_size,
              float(functions[fid].batch_timeout or 0.0))
        for fid in order if fid in functions
    ]  # fmt: skip
    return inputs, stages, functions


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
        self.inputs, stages, functions = compile_stream(dag)
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
        public, secret = zmq.curve_keypair()
        self._router.curve_server = True
        self._router.curve_publickey = public
        self._router.curve_secretkey = secret
        host = _local_host(client.address)
        port = self._router.bind_to_random_port(f"tcp://{host}")
        self._wake_in = self._ctx.socket(zmq.PAIR)
        self._wake_out = self._ctx.socket(zmq.PAIR)
        wake = f"inproc://handoffd-stream-{secrets.token_hex(8)}"
        self._wake_out.bind(wake)
        self._wake_in.connect(wake)
        self._token = secrets.token_hex(16)
        replicas = handoffd_dag(stages, functions, {
            "endpoint": f"tcp://{host}:{port}", "server_key": public, "token": self._token,
        })  # fmt: skip
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
            cid = self._state.push(inputs, time.monotonic())
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
                    batches = self._state.take(now)
                    closed = self._closed
                    self._lock.notify_all()
                for batch in batches:
                    msg = ms.StreamItems(batch.batch_id, batch.stage)
                    self._send(batch.identity, msg, [values.dumps(batch.args)])
                if closed:
                    self._stop_replicas()
                    return
                if now - last_keepalive > KEEPALIVE:
                    last_keepalive = now
                    for replica in list(self._state.replicas.values()):
                        self._send(replica.identity, ms.StreamHeartbeat("", -1))
        except Exception as exc:  # noqa: BLE001 - the loop's end must reach the user
            with self._lock:
                self._failure = exc
                self._lock.notify_all()

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
        if isinstance(msg, ms.StreamOutputs):
            index = self._replica_index(identity)
            if index is not None:
                outputs, failures = values.loads(decoded.frames[0])
                state.answered(msg.stage, index, msg.batch_id, outputs, failures, now)
        elif isinstance(msg, ms.StreamHeartbeat):
            state.heard(msg.stage, msg.replica, now)
        elif isinstance(msg, ms.StreamJoin):
            if secrets.compare_digest(msg.token, self._token) and msg.stage in state.stages:
                state.joined(msg.stage, msg.replica, identity, now)
        elif isinstance(msg, ms.StreamReplicaFailed):
            self._failure = PipelineFailed(
                f"stage {msg.stage!r} replica {msg.replica}: init failed: "
                f"{msg.exc_type}: {msg.message}",
            )
            self._failure.__cause__ = TaskFailed(
                msg.stage, 1, msg.exc_type, msg.message, msg.traceback
            )

    def _replica_index(self, identity: bytes) -> int | None:
        for replica in self._state.replicas.values():
            if replica.identity == identity:
                return replica.index
        return None


def handoffd_dag(stages: list[Stage], functions: dict[str, Function], link: dict[str, Any]) -> DAG:
    """The run of the pipeline's replicas: ``parallelism`` long-running tasks per stage."""
    dag = DAG()
    for stage in stages:
        fn = functions[stage.id]
        for index in range(fn.parallelism):
            config = dict(link, stage=stage.id, replica=index, code=fn.code, init=fn.init,
                          batch_size=fn.batch_size, arity=len(stage.args))  # fmt: skip
            dag.add_function(
                Function(id=f"{stage.id}#{index}", code=serve, extra_args=[config],
                         cost=fn.cost, node=fn.node, priority=fn.priority)
            )  # fmt: skip
    return dag


def _local_host(address: str) -> str:
    """The address of this machine the daemon at ``address`` reaches us at (loopback for a
    daemon on loopback or in this process); found with a UDP socket's route, sending nothing."""
    host = address.rpartition(":")[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1"  # an in-process (mem://) or named daemon: replicas run on this machine
    if ip.is_loopback:
        return "127.0.0.1"
    with socket.socket(
        socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_DGRAM
    ) as s:
        s.connect((host, 9))
        return str(s.getsockname()[0])


__all__ = ["Pipeline", "compile_stream"]
