"""One replica of a pipeline stage: the long-running task a pipeline starts in the cluster.

It runs in a worker process of the node the scheduler placed it on and holds its claim for the
pipeline's life. It runs the stage's ``init`` once, connects to the pipeline's client (CURVE, the
client's key from the payload, which travelled over the cluster's authenticated connections; the
pipeline's token proves it to the client), then serves batches until told to stop. A second socket
on a thread sends heartbeats, so a long batch is not taken for a dead replica. With no word from
the client for ``orphan_after`` seconds it returns (a client that died leaves no task running).
"""

from __future__ import annotations

import threading
import time
import traceback as tb_module
from typing import Any

import zmq

from handoffd import values
from handoffd.protocol import codec
from handoffd.protocol import messages_stream as ms

HEARTBEAT = 0.5  # seconds between heartbeats


def serve(config: dict[str, Any]) -> int:
    """The replica's task: serve ``config["stage"]`` until the pipeline stops; the number of
    items it answered."""
    stage, index = config["stage"], config["replica"]
    name = f"{stage}#{index}"
    ctx = zmq.Context()
    sock = _connect(ctx, config)
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
        beater.start()
        _send(sock, name, ms.StreamJoin(config["token"], stage, index))
        return _loop(sock, name, config, state)
    finally:
        beat.set()
        if beater.is_alive():
            beater.join(2 * HEARTBEAT)
        sock.close()
        ctx.term()


def _connect(ctx: zmq.Context[Any], config: dict[str, Any]) -> zmq.Socket[Any]:
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    public, secret = zmq.curve_keypair()
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_serverkey = config["server_key"]
    sock.connect(config["endpoint"])
    return sock


def _send(sock: zmq.Socket[Any], name: str, msg: Any, frames: list[bytes] | None = None) -> None:
    sock.send_multipart(codec.encode(msg, sender=name, frames=frames or []), copy=False)


def _heartbeats(ctx: zmq.Context[Any], config: dict[str, Any], stop: threading.Event) -> None:
    sock = _connect(ctx, config)
    name = f"{config['stage']}#{config['replica']}/beat"
    try:
        while not stop.wait(HEARTBEAT):
            _send(sock, name, ms.StreamHeartbeat(config["stage"], config["replica"]))
    finally:
        sock.close(linger=0)


def _loop(sock: zmq.Socket[Any], name: str, config: dict[str, Any], state: Any) -> int:
    code = config["code"]
    batched = config.get("batch_size") is not None
    with_state = config.get("init") is not None
    stage = config["stage"]
    orphan_after = config.get("orphan_after", 30.0)
    heard = time.monotonic()
    answered = 0
    while True:
        if not sock.poll(int(HEARTBEAT * 1000)):
            if time.monotonic() - heard > orphan_after:
                return answered  # the client is gone
            continue
        decoded = codec.decode(sock.recv_multipart(copy=True))
        heard = time.monotonic()
        if decoded is None:
            continue
        msg = decoded.msg
        if isinstance(msg, ms.StreamStop):
            return answered
        if not isinstance(msg, ms.StreamItems):
            continue  # the client's keep-alive
        args = values.loads(decoded.frames[0])
        outputs, failures = _run(code, args, state, with_state, batched, config["arity"])
        answered += len(outputs)
        _send(sock, name, ms.StreamOutputs(msg.batch_id, stage), [_dumps(outputs, failures)])


Failures = dict[int, tuple[str, str, str]]  # position in the batch -> (type, message, traceback)


def _dumps(outputs: list[Any], failures: Failures) -> bytes:
    """(outputs, failures) pickled; an output that cannot be pickled becomes its item's failure."""
    try:
        return values.dumps((outputs, failures))
    except Exception:
        for position, output in enumerate(outputs):
            try:
                values.dumps(output)
            except Exception as exc:
                outputs[position] = None
                failures[position] = (
                    type(exc).__qualname__,
                    f"the stage returned a value that cannot be pickled: {exc}",
                    "",
                )
        return values.dumps((outputs, failures))


def _failure(exc: BaseException) -> tuple[str, str, str]:
    return (type(exc).__qualname__, str(exc), tb_module.format_exc())


def _run(
    code: Any, args: list[Any], state: Any, with_state: bool, batched: bool, arity: int
) -> tuple[list[Any], Failures]:
    """The outputs of a batch of items (each item: its argument, or a tuple of its arguments
    when the stage takes several), and the failures by position."""
    lead = (state,) if with_state else ()
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
            return [None] * len(args), dict.fromkeys(range(len(args)), failure)
        return out, failures
    outputs: list[Any] = []
    append = outputs.append
    for position, item in enumerate(args):
        try:
            append(code(*lead, item) if arity == 1 else code(*lead, *item))
        except Exception as exc:
            append(None)
            failures[position] = _failure(exc)
    return outputs, failures


__all__ = ["serve", "HEARTBEAT"]
