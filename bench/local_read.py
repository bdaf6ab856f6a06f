"""The owner loop's read of a W1 submission from a client on its host, in process (issue 13).

A W1 run (10,000 no-ops) comes as one ``UploadChunk`` of ~450 KB over the daemon's Unix socket
(``transport.local_socket``). This sends it as ``LocalClient.send`` sends it (``pack``, one
``sendmsg``, from a thread) into a socket pair whose daemon end a ``LocalListener`` reads as its
loop would (``_readable`` each time the socket is readable), and delivers each message as the
node takes an upload's piece: the codec's decode, then ``upload.Uploads.add`` (the one-piece
upload made whole, handed on as it came). Prints the loop thread's CPU (``time.thread_time``:
user + system, the kernel's copies and page faults included) a round and a W1 task, the median
of ``--rounds``; ``--callgrind`` runs one round under ``operator.call`` for
``valgrind --tool=callgrind --collect-atstart=no --toggle-collect=_operator_call``. ``--ab
OTHER/local_socket.py``: that file's listener too, a round of each in turn (A/B pairs in one
process, the same machine's minute for both). Each piece delivered is held until two rounds later,
as the daemon holds one until its upload thread built the run.

    PYTHONPATH=$PWD .venv/bin/python bench/local_read.py --tasks 10000 --rounds 200
"""

from __future__ import annotations

import argparse
import importlib.util
import operator
import os
import select
import socket
import statistics
import sys
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from submit_instr import dag_of  # noqa: E402

from handoffd import upload  # noqa: E402
from handoffd.config import Limits  # noqa: E402
from handoffd.dag_columns import submission  # noqa: E402
from handoffd.protocol import messages as m  # noqa: E402
from handoffd.protocol.codec import Codec  # noqa: E402
from handoffd.protocol.messages_io import UploadChunk  # noqa: E402
from handoffd.protocol.messages_submit import HEADS_SINCE, as_sent, sent_payloads  # noqa: E402
from handoffd.transport import local_socket as ls  # noqa: E402


class _Loop:
    """What ``LocalListener`` asks of its event loop; this bench reads by itself."""

    def add_reader(self, *args: Any) -> None:
        pass

    def remove_reader(self, *args: Any) -> None:
        pass

    def add_writer(self, *args: Any) -> None:
        pass

    def remove_writer(self, *args: Any) -> None:
        pass


def upload_frames(tasks: int, codec: Codec) -> list[Any]:
    """The frames of the ``UploadChunk`` a client sends for a W1 run of ``tasks`` (one piece)."""
    dag = dag_of("w1", tasks)
    sent, payloads, _ = submission(dag, "binpack", 3, None, (), 0)
    request: Any = m.SubmitAndWait(1, "r1", sent, 3, "binpack", None, 1.0, 1 << 20, True, ())
    request = as_sent(request, HEADS_SINCE)
    payloads = sent_payloads(sent, payloads, HEADS_SINCE)
    frames = codec.encode(request, sender="c", frames=payloads)
    data = memoryview(upload.pack(frames))
    if len(data) > upload.CHUNK_BYTES:
        raise SystemExit(f"{len(data)} bytes: more than one piece (use fewer tasks)")
    chunk = UploadChunk(2, "u1", 0, 1, len(data))
    return list(codec.encode(chunk, sender="c", frames=[data]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--ab", help="another tree's transport/local_socket.py, read in turn")
    args = parser.parse_args()
    codec = Codec()
    limits = Limits()
    frames = upload_frames(args.tasks, codec)
    packed = ls.pack(frames)
    packed_bytes = b"".join(bytes(p) for p in packed)
    got: list[Any] = []
    uploads = upload.Uploads(limits)

    def deliver(conn: bytes, message: list[Any]) -> None:  # (the node's ``_on_upload``)
        decoded = codec.decode(message)
        assert decoded is not None and type(decoded.msg) is UploadChunk
        piece = decoded.frames[0]
        error, _, whole = uploads.add(conn, decoded.msg, piece, 0.0)
        assert not error and whole is not None, error
        got.append(whole)

    def setup(module: Any) -> Any:
        listener = module.LocalListener(
            f"bench-local-read-{os.getpid()}-{module.__name__}",
            b"k" * 32,
            _Loop(),  # type: ignore[arg-type]
            deliver,
            lambda: None,
            max_frames=limits.max_frames,
            max_frame=limits.max_frame_bytes,
        )
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setblocking(False)
        for sock in (ours, theirs):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, ls.SEND_BUFFER)
        conn = module._Conn(module.CONN_MARK + b"\0" * 8, ours, b"")
        conn.open = True
        listener._conns[conn.id] = conn
        poll = select.poll()
        poll.register(ours.fileno(), select.POLLIN)
        return listener, conn, theirs, poll

    held: list[Any] = []

    def one_round(side: Any) -> float:
        """One submission sent and read; the reader's CPU seconds in ``_readable``."""
        listener, conn, theirs, poll = side
        got.clear()
        sender = threading.Thread(target=theirs.sendmsg, args=(packed,))
        sender.start()
        used = 0.0
        while not got:
            poll.poll()
            started = time.thread_time()
            listener._readable(conn)
            used += time.thread_time() - started
        sender.join()
        assert len(bytes(got[0].data)) == sum(map(len, packed[1:])) - len(frames[0])
        held.append(got[0])
        del held[:-2]
        return used

    sides = {"this tree": setup(ls)}
    if args.ab:
        spec = importlib.util.spec_from_file_location("other_local_socket", args.ab)
        assert spec is not None and spec.loader is not None
        other = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(other)
        sides[args.ab] = setup(other)
    listener, conn, theirs, _ = sides["this tree"]
    if args.callgrind:
        sender = threading.Thread(target=theirs.sendmsg, args=(packed,))
        sender.start()
        sender.join()  # (all of it in the socket: one round read in this thread only)

        def read() -> None:
            while not got:
                listener._readable(conn)

        operator.call(read)
        print(f"{args.tasks} tasks: read {len(bytes(got[0].data))} bytes")
        return
    used: dict[str, list[float]] = {name: [] for name in sides}
    for side in sides.values():
        one_round(side)  # warm
    for _ in range(args.rounds):
        for name, side in sides.items():
            used[name].append(one_round(side))
    for name, times in used.items():
        times.sort()
        median = statistics.median(times)
        print(
            f"{name}: {args.tasks} tasks, {len(packed_bytes)} bytes: the read's loop CPU"
            f" {median * 1e6:.1f} us a round (median of {args.rounds}; quartiles"
            f" {times[len(times) // 4] * 1e6:.1f} - {times[3 * len(times) // 4] * 1e6:.1f}),"
            f" {median * 1e6 / args.tasks:.4f} us a task"
        )


if __name__ == "__main__":
    main()
