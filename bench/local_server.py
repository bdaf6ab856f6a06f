"""The owner's client-facing side of one W3 call, in this process: the local socket's read, the
decode of a ``SubmitAndWait``, the encode of its ``RunOutcome`` and the reply's write (issue 13).

A ``LocalListener`` on a loop stand-in (its reader callbacks called by hand) takes a one-task
``execute``'s request (a ``SubmitAndWait`` of one task and its payload) from a plain socket; the request is decoded by a codec made as the node makes its own, then admitted and
answered as ``node_routing._on_frames`` and ``owner_waits.answer`` do for a one-task run
(``Replies`` around the node's encoder, ``ZmqTransport.reply``'s local branch), and the client's
socket reads the reply. What it leaves out: the scheduler, the executor, the pool, the loop.

    .venv/bin/python bench/local_server.py [--runs 20000] [--profile]
    valgrind --tool=cachegrind --cache-sim=no .venv/bin/python bench/local_server.py --runs N

Instructions a call: the difference of two cachegrind runs' ``I refs`` (``--runs`` 1000 and
3000, say) over the difference of the runs (start-up and imports cancel out).
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import os
import pstats
import socket
import statistics
import threading
import time
from typing import Any

from handoffd import admission, values
from handoffd.config import Limits
from handoffd.daemon.replies import Replies
from handoffd.protocol import codec
from handoffd.protocol import messages as m
from handoffd.transport import local_socket

SECRET = b"k" * 32
ADDRESS = "127.0.0.1:65001"


class Loop:
    """What ``LocalListener`` asks of the loop: readers and writers kept to be called by hand."""

    def __init__(self) -> None:
        self.readers: dict[int, tuple[Any, tuple[Any, ...]]] = {}
        self.writers: dict[int, tuple[Any, tuple[Any, ...]]] = {}

    def add_reader(self, fd: int, cb: Any, *args: Any) -> None:
        self.readers[fd] = (cb, args)

    def remove_reader(self, fd: int) -> None:
        self.readers.pop(fd, None)

    def add_writer(self, fd: int, cb: Any, *args: Any) -> None:
        self.writers[fd] = (cb, args)

    def remove_writer(self, fd: int) -> None:
        self.writers.pop(fd, None)

    def time(self) -> float:
        return time.monotonic()


def noop() -> None:
    return None


def request_frames(request_id: int) -> list[bytes]:
    """A one-task execute's request: the codec's bytes, as the client's one-go template's."""
    body = codec.encode(
        m.SubmitAndWait(
            request_id,
            f"{request_id:016x}",
            (m.TaskMeta("noop", (), {"cpu": 1.0}, "variadic", None, None, False, None, None, 0),),
            0,
            "fail_fast",
            None,
            300.0,
            1 << 20,
            True,
            (),
        ),
        sender="client",
    )
    return [bytes(body[0]), values.dumps((noop, (), {}))]


class Server:
    """The owner's side of the call, each piece the daemon's own."""

    def __init__(self) -> None:
        self.loop = Loop()
        made = {"packed": {m.ReplicateLog: "tasks"}}  # as the node makes its own
        if "repeats" in inspect.signature(codec.Codec).parameters:
            made["repeats"] = m.SubmitAndWait  # type: ignore[assignment]
        self.codec = codec.Codec(Limits(), **made)  # type: ignore[arg-type]
        self.replies = Replies(self._encoder, self._send, threaded=True, **_encode_now(self))
        self.listener = local_socket.LocalListener(
            ADDRESS,
            SECRET,
            self.loop,  # type: ignore[arg-type]
            self._deliver,
            self._drained,
            max_frames=Limits().max_frames + 1,
            max_frame=max(Limits().max_frame_bytes, Limits().max_body_bytes),
        )
        self.value = values.dumps(None)

    def _encoder(self, msg: Any, frames: list[Any] | None) -> Any:
        at = {"sender": "d0", "incarnation": 1, "frames": frames or ()}
        return lambda piece: self.codec.encode(msg, **at, piece=piece)

    def _send(self, conn: bytes, frames: list[Any]) -> None:
        if conn[:1] == local_socket.CONN_MARK:
            self.listener.reply(conn, frames)

    def _drained(self) -> None:
        pass

    def _deliver(self, conn: bytes, frames: list[bytes]) -> None:
        decoded = self.codec.decode(frames)
        assert decoded is not None
        msg = decoded.msg
        assert not admission.check(msg, decoded.envelope.sender, True, None, "d0")
        assert type(msg) is m.SubmitAndWait
        extra = list(decoded.frames)
        assert extra
        outcome = m.RunOutcome(
            msg.request_id,
            msg.run_id,
            "DONE",
            {"DONE": 1},
            {"noop": "d0"},
            "d0",
            1,
            (),
            None,
            ("noop",),
            (),
            True,
        )
        self.replies.reply(conn, outcome, [self.value])


def _encode_now(server: Server) -> dict[str, Any]:
    """The node's direct encode where this build's ``Replies`` takes one (the A/B base's not)."""
    if "encode" not in inspect.signature(Replies).parameters:
        return {}

    def encode(msg: Any, frames: list[Any] | None) -> list[Any]:
        return server.codec.encode(msg, sender="d0", incarnation=1, frames=frames or ())

    return {"encode": encode}


def connect(server: Server) -> socket.socket:
    """A client socket through the listener's accept and key proof (the loop's part by hand)."""
    out: list[Any] = []

    def dial() -> None:
        out.append(local_socket.LocalClient(ADDRESS, SECRET))

    thread = threading.Thread(target=dial)
    thread.start()
    deadline = time.monotonic() + 10
    while thread.is_alive() and time.monotonic() < deadline:
        for cb, args in list(server.loop.readers.values()):
            cb(*args)
        time.sleep(0.001)
    thread.join()
    client: local_socket.LocalClient = out[0]
    sock = client._sock
    sock.setblocking(True)
    return sock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if os.environ.get("HANDOFFD_LOCAL_SOCKET") == "0":
        raise SystemExit("HANDOFFD_LOCAL_SOCKET=0: no local socket to measure")
    server = Server()
    sock = connect(server)
    (conn,) = server.listener._conns.values()
    readable = server.loop.readers[conn.sock.fileno()]
    requests = [b"".join(local_socket.pack(request_frames(i))) for i in range(1, 101)]
    scratch = bytearray(1 << 16)

    at = [0]

    def call() -> None:  # (a new request id each call, as a client's)
        at[0] += 1
        sock.sendall(requests[at[0] % 100])
        readable[0](*readable[1])
        n = sock.recv_into(scratch)
        assert n > 20, n

    for _ in range(200):
        call()
    profile = cProfile.Profile() if args.profile else None
    times = []
    if profile is not None:
        profile.enable()
    for _ in range(args.runs):
        t = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - t)
    if profile is not None:
        profile.disable()
        stats = pstats.Stats(profile)
        print(f"Python calls a call: {stats.total_calls / args.runs:.1f}")  # type: ignore[attr-defined]
        stats.sort_stats("tottime").print_stats(25)
    print(f"{args.runs} calls, median {statistics.median(times) / 1000:.2f} us a call")
    server.listener.close()


if __name__ == "__main__":
    main()
