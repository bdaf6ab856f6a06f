"""One replica of a pipeline stage: the long-running task a pipeline starts in the cluster (the
I/O shell of ``relay.py``).

It runs in a worker process of the node the scheduler placed it on and holds its claim for the
pipeline's life. It runs the stage's ``init`` once, binds a ROUTER for its peers (CURVE, a key made
here), connects to the pipeline's client (CURVE, the client's key from the payload, which
travelled over the cluster's authenticated connections; the pipeline's token proves it to the
client) and joins with its endpoint. Items come from the client (a first stage) or from replicas of
the stages before; outputs go straight to the replicas of the next stages (a DEALER per peer, from
the client's table), a last stage's to the client. A second socket on a thread sends heartbeats to
the client, so a long batch is not taken for a dead replica. With no word from the client for
``orphan_after`` seconds it returns (a client that died leaves no task running).

An edge with ``handoffd.Argument`` hooks: the sender runs ``serialize`` on each value unless the
receiving replica is on its node (and not ``always``); the receiver runs ``deserialize`` on what
came encoded. A hook that fails fails its item at the consuming stage.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import traceback as tb_module
from typing import Any

import zmq

from handoffd import values
from handoffd.protocol import codec
from handoffd.protocol import messages_stream as ms
from handoffd.protocol import messages_streamnet as mn
from handoffd.stream.relay import Failures, Forward, RelayState, ToClient, Work
from handoffd.stream.state import Route
from handoffd.worker import _contain

HEARTBEAT = 0.5  # seconds between heartbeats
Hooks = dict[tuple[str, str], tuple[Any, Any, bool]]  # (consumer, source) -> (ser, deser, always)


def serve(config: dict[str, Any]) -> int:
    """The replica's task: serve ``config["stage"]`` until the pipeline stops; the number of
    items it answered."""
    stage, index = config["stage"], config["replica"]
    name = f"{stage}#{index}"
    ctx = zmq.Context()
    sock = _connect(ctx, config["endpoint"], config["server_key"])
    peers = _Peers(ctx, name)
    beat = threading.Event()
    beater = threading.Thread(target=_heartbeats, args=(ctx, config, beat), daemon=True)
    try:
        state = None
        try:
            if config.get("init") is not None:
                state = config["init"]()
        except Exception as exc:
            sock.linger = 2000  # the failure must reach the client before the socket closes
            _send(sock, name, ms.StreamReplicaFailed(stage, index, type(exc).__qualname__,
                                                     str(exc), tb_module.format_exc()))  # fmt: skip
            raise
        host = local_host(config["endpoint"].rpartition(":")[0].removeprefix("tcp://"))
        route = peers.bind(host, stage, index)
        beater.start()
        _send(sock, name, mn.StreamReplicaJoin(config["token"], route))
        return _Serving(sock, peers, name, config, state, route.node).loop()
    finally:
        beat.set()
        if beater.is_alive():
            beater.join(2 * HEARTBEAT)
        sock.close()  # its linger: 0, or 2 s for an init's failure to reach the client
        peers.close()
        ctx.term()


def _connect(ctx: zmq.Context[Any], endpoint: str, server_key: bytes) -> zmq.Socket[Any]:
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    # no high-water mark: a send over it would block this replica (a peer's table change could
    # then never reach it); the pipeline's max_in_flight bounds what can queue
    sock.sndhwm = 0
    sock.rcvhwm = 0
    public, secret = zmq.curve_keypair()
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_serverkey = server_key
    sock.connect(endpoint)
    return sock


def _send(sock: zmq.Socket[Any], name: str, msg: Any, frames: list[bytes] | None = None) -> None:
    sock.send_multipart(codec.encode(msg, sender=name, frames=frames or []), copy=False)


def _heartbeats(ctx: zmq.Context[Any], config: dict[str, Any], stop: threading.Event) -> None:
    sock = _connect(ctx, config["endpoint"], config["server_key"])
    name = f"{config['stage']}#{config['replica']}/beat"
    try:
        while not stop.wait(HEARTBEAT):
            _send(sock, name, ms.StreamHeartbeat(config["stage"], config["replica"]))
    finally:
        sock.close(linger=0)


class _Peers:
    """This replica's ROUTER (items from peers) and its DEALERs to the peers of the table."""

    def __init__(self, ctx: zmq.Context[Any], name: str) -> None:
        self.ctx, self.name = ctx, name
        self.router: zmq.Socket[Any] | None = None
        self.out: dict[tuple[str, bytes], zmq.Socket[Any]] = {}

    def bind(self, host: str, stage: str, index: int) -> mn.StreamRoute:
        router = self.router = self.ctx.socket(zmq.ROUTER)
        router.linger = 0
        router.sndhwm = 0
        router.rcvhwm = 0
        public, secret = zmq.curve_keypair()
        router.curve_server = True
        router.curve_publickey = public
        router.curve_secretkey = secret
        port = router.bind_to_random_port(f"tcp://{host}")
        return mn.StreamRoute(stage, index, f"tcp://{host}:{port}", public, _contain.node_name())

    def table(self, routes: tuple[Route, ...], consumers: list[str]) -> None:
        """Connect to the replicas of the next stages; close the sockets of ones gone."""
        wanted = {(r.endpoint, r.public_key) for r in routes if r.stage in consumers}
        for peer in list(self.out):
            if peer not in wanted:
                self.out.pop(peer).close(linger=0)  # what was queued for a lost peer is replayed
        for endpoint, key in wanted - set(self.out):
            self.out[(endpoint, key)] = _connect(self.ctx, endpoint, key)

    def send(self, to: Route, msg: Any, frames: list[bytes]) -> None:
        sock = self.out.get((to.endpoint, to.public_key))
        if sock is not None:
            _send(sock, self.name, msg, frames)

    def close(self) -> None:
        for sock in self.out.values():
            sock.close(linger=0)
        if self.router is not None:
            self.router.close(linger=0)


class _Serving:
    def __init__(self, sock: zmq.Socket[Any], peers: _Peers, name: str, config: dict[str, Any],
                 state: Any, node: str) -> None:  # fmt: skip
        self.sock, self.peers, self.name, self.node = sock, peers, name, node
        self.code = config["code"]
        self.batched = config.get("batch_size") is not None
        self.lead = (state,) if config.get("init") is not None else ()
        self.stage = config["stage"]
        self.hooks: Hooks = config.get("hooks") or {}
        self.orphan_after = config.get("orphan_after", 30.0)
        self.relay = RelayState(
            self.stage, tuple(config["args"]), list(config["consumers"]),
            config.get("batch_size"), float(config.get("batch_timeout") or 0.0),
        )  # fmt: skip
        self.answered = 0

    def loop(self) -> int:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        assert self.peers.router is not None
        router = self.peers.router
        poller.register(router, zmq.POLLIN)
        heard = time.monotonic()
        while True:
            now = time.monotonic()
            work = self.relay.ready(now)
            if work is not None:
                self._run(work)
                timeout = 0
            else:
                wait = self.relay.wait(now)
                timeout = int(1000 * min(HEARTBEAT, HEARTBEAT if wait is None else wait)) + 1
            events = dict(poller.poll(timeout))
            if not events:
                if work is None and time.monotonic() - heard > self.orphan_after:
                    return self.answered  # the client is gone
                continue
            now = time.monotonic()
            if self.sock in events:
                heard = now
                while self.sock.poll(0):
                    if self._on_client(self.sock.recv_multipart(copy=True), now):
                        return self.answered
            if router in events:
                while router.poll(0):
                    self._on_frames(router.recv_multipart(copy=True)[1:], now)

    def _on_client(self, frames: list[bytes], now: float) -> bool:
        """A message from the client; True when it says stop."""
        decoded = codec.decode(frames)
        if decoded is None:
            return False
        msg = decoded.msg
        if isinstance(msg, ms.StreamStop):
            return True
        if isinstance(msg, mn.StreamRoutes):
            routes = tuple(Route(r.stage, r.replica, r.endpoint, r.public_key, r.node)
                           for r in msg.routes)  # fmt: skip
            self.peers.table(routes, self.relay.consumers)
            self.relay.routes(msg.epoch, msg.replay_epoch, routes, now)
        elif isinstance(msg, mn.StreamBatch):
            self._on_batch(msg, decoded.frames[0], now)
        elif isinstance(msg, mn.StreamForget):
            self.relay.forget(msg.cids)
        return False

    def _on_frames(self, frames: list[bytes], now: float) -> None:
        decoded = codec.decode(frames)
        if decoded is not None and isinstance(decoded.msg, mn.StreamBatch):
            self._on_batch(decoded.msg, decoded.frames[0], now)

    def _on_batch(self, msg: mn.StreamBatch, frame: bytes, now: float) -> None:
        cids, vals = values.loads(frame)
        if msg.encoded:
            failures: Failures = {}
            hook = self.hooks.get((self.stage, msg.source))
            if hook is not None:
                vals = _apply(hook[1], cids, vals, failures)
            if failures:
                self._to_client(ToClient(msg.epoch, False, [], [], failures))
                keep = [i for i, c in enumerate(cids) if c not in failures]
                cids, vals = [cids[i] for i in keep], [vals[i] for i in keep]
        self.relay.items(msg.epoch, msg.source, cids, vals, now)

    def _run(self, work: Work) -> None:
        start = time.perf_counter()
        arity = len(self.relay.args)
        outputs, failures = run_batch(self.code, work, self.lead, self.batched, arity)
        self.relay.ran(work, time.perf_counter() - start)
        self.answered += len(outputs)
        for out in self.relay.outputs(work, outputs, failures):
            if isinstance(out, ToClient):
                self._to_client(out)
            else:
                self._forward(out)

    def _forward(self, out: Forward) -> None:
        vals = out.values
        hook = self.hooks.get((out.to.stage, self.stage))
        encoded = hook is not None and (hook[2] or out.to.node != self.node or not self.node)
        cids = out.cids
        if encoded:
            assert hook is not None
            failures: Failures = {}
            vals = _apply(hook[0], cids, vals, failures)
            if failures:  # the item fails at the consuming stage, as in a run
                fail = mn.StreamDone(out.epoch, out.to.stage, False)
                _send(self.sock, self.name, fail, [values.dumps(([], [], failures))])
                keep = [i for i, c in enumerate(cids) if c not in failures]
                cids, vals = [cids[i] for i in keep], [vals[i] for i in keep]
        msg = mn.StreamBatch(out.epoch, out.to.stage, self.stage, encoded)
        self.peers.send(out.to, msg, [values.dumps((cids, vals))])

    def _to_client(self, out: ToClient) -> None:
        frame = _dumps_done(out.cids, out.outputs, out.failures)
        _send(self.sock, self.name, mn.StreamDone(out.epoch, self.stage, out.sink), [frame])


def _apply(hook: Any, cids: list[int], vals: list[Any], failures: Failures) -> list[Any]:
    """``hook`` on every value; an item whose hook raised goes into ``failures``."""
    out: list[Any] = []
    for cid, value in zip(cids, vals, strict=True):
        try:
            out.append(hook(value))
        except Exception as exc:
            out.append(None)
            failures[cid] = _failure(exc)
    return out


def _dumps_done(cids: list[int], outputs: list[Any], failures: Failures) -> bytes:
    """(cids, outputs, failures) pickled; an output that cannot be pickled becomes its item's
    failure."""
    try:
        return values.dumps((cids, outputs, failures))
    except Exception:
        kept_cids, kept = [], []
        for cid, output in zip(cids, outputs, strict=True):
            try:
                values.dumps(output)
                kept_cids.append(cid)
                kept.append(output)
            except Exception as exc:
                failures[cid] = (
                    type(exc).__qualname__,
                    f"the stage returned a value that cannot be pickled: {exc}",
                    "",
                )
        return values.dumps((kept_cids, kept, failures))


def _failure(exc: BaseException) -> tuple[str, str, str]:
    return (type(exc).__qualname__, str(exc), tb_module.format_exc())


def run_batch(
    code: Any, work: Work, lead: tuple[Any, ...], batched: bool, arity: int
) -> tuple[list[Any], Failures]:
    """The outputs of a batch of items (each item: its argument, or a tuple of its arguments
    when the stage takes several), and the failures by correlation id."""
    args, cids = work.args, work.cids
    failures: Failures = {}
    if batched:
        try:
            out = list(code(*lead, args))
            if len(out) != len(args):
                raise ValueError(
                    f"a batched stage must return one output per input: got {len(out)} for "
                    f"{len(args)}"
                )
        except Exception as exc:
            failure = _failure(exc)
            return [None] * len(args), dict.fromkeys(cids, failure)
        return out, failures
    outputs: list[Any] = []
    append = outputs.append
    for cid, item in zip(cids, args, strict=True):
        try:
            append(code(*lead, item) if arity == 1 else code(*lead, *item))
        except Exception as exc:
            append(None)
            failures[cid] = _failure(exc)
    return outputs, failures


def local_host(host: str) -> str:
    """The address of this machine that ``host`` reaches us at (loopback for a host on loopback
    or a name such as the in-process transport's); found with a UDP socket's route, sending
    nothing."""
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1"  # an in-process (mem://) or named daemon: this machine
    if ip.is_loopback:
        return "127.0.0.1"
    with socket.socket(
        socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_DGRAM
    ) as s:
        s.connect((host, 9))
        return str(s.getsockname()[0])


__all__ = ["serve", "run_batch", "local_host", "HEARTBEAT"]
