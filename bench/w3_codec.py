"""The codec's and the local socket's share of a W3 call, in process (issue 13, W3): per call, the
owner's cut of the request from a read (``local_frames.whole``), its decode (a repeated
``SubmitAndWait``: ``protocol.repeats``), its reply's write (``ReplyRepeats``) and the join of
the reply's two frames (``local_frames.small``), as a one-task execute's request and reply are.

    valgrind --tool=callgrind .venv/bin/python bench/w3_codec.py 2000
    valgrind --tool=callgrind .venv/bin/python bench/w3_codec.py 12000

(total(12000) - total(2000)) / 10000: instructions a call (the loop's own Python counted in; the
client's side of the same frames is ``local_frames`` again and ``client_one``'s, in
``bench/client_instr.py``).
"""

from __future__ import annotations

import sys

from handoffd.protocol import messages as m
from handoffd.protocol.codec import Codec
from handoffd.protocol.repeats import ReplyRepeats
from handoffd.transport import local_socket


def submit(request_id: int, run_id: str) -> m.SubmitAndWait:
    row = m.TaskMeta("one", (), {"cpu": 1.0}, "variadic", None, None, False, None, None, 0)
    return m.SubmitAndWait(
        request_id, run_id, (row,), 3, "binpack", None, 0.05, 1 << 20, True, ("a" * 64,)
    )


def outcome(request_id: int, run_id: str) -> m.RunOutcome:
    return m.RunOutcome(
        request_id, run_id, "DONE", {"DONE": 1}, {"one": "d0"}, "d0", 1, ("d1",), None,
        ("one",), (), True,
    )  # fmt: skip


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    node = Codec(repeats=m.SubmitAndWait)  # as daemon.node makes it
    client = Codec()
    payload = b"p" * 60
    reads = []  # (a read's scratch holding one request, its length)
    for i in range(200):
        body = client.encode(submit(i % 60000, f"{i:016x}"), sender="client-1")[0]
        wire = b"".join(bytes(p) for p in local_socket.pack([body, payload]))
        reads.append((memoryview(bytearray(wire + b"\0" * 64)), len(wire)))
    outs = [outcome(i % 60000, f"{i:016x}") for i in range(200)]
    writer = ReplyRepeats(m.RunOutcome, node.stats)
    writer.learn(outs[0], 0, node.encode(outs[0], sender="d0")[0])
    node.decode([client.encode(submit(0, "0" * 16), sender="client-1")[0], payload])
    value = b"v" * 20
    for i in range(n):
        scratch, size = reads[i % 200]
        decoded = node.decode(local_socket._whole(scratch, size))
        body = writer.write(outs[i % 200], 0)
        assert decoded is not None and body is not None
        local_socket._small([body, value])
    print(
        f"{n} calls: {node._repeats.hits} requests read as repeats, {writer.hits} replies written"
    )  # type: ignore[union-attr]


if __name__ == "__main__":
    main()
