"""A standby's CPU per replicated task: one ``ReplicateLog`` batch decoded by the node's codec,
its frames split and applied to the replica (``StandbyStore.on_log``), per task delta, with the
deltas read as structs (``Codec()``), as checked rows (``Codec(rows=...)``) and kept packed
(``Codec(packed=...)``, the node's: read only at a takeover), alternating, median of ``--reps``
(issue 13).

    .venv/bin/python bench/bench_standby_log.py [--tasks 200] [--reps 15]

The batch is W1's shape: every delta DONE with one attempt and a small value in a packed frame.
"""

from __future__ import annotations

import argparse
import statistics
import time

import msgpack

from handoffd.protocol import codec, columns
from handoffd.protocol import messages as m
from handoffd.protocol.messages_observability import AttemptInfo
from handoffd.replication.standby import StandbyStore


def batch(n: int, seq: int) -> list[object]:
    tasks, values = [], []
    for i in range(n):
        attempt = AttemptInfo(
            1, "node-1", "DONE", 1.7e9 + i, 1.7e9 + i + 1e-3, 1.7e9 + i + 2e-3, 4242, 0, 5, "", "",
            "", "",
        )  # fmt: skip
        tasks.append(
            m.TaskDelta(f"n{i}", "DONE", 1, "node-1", 5, ("tcp://127.0.0.1:1",), 0, 0, 1, i,
                        (attempt,))
        )  # fmt: skip
        values.append(msgpack.packb(i))
    sizes, frames = columns.join_frames(values)
    msg = m.ReplicateLog("run", 0, seq, ("b",), tuple(tasks), "RUNNING", False, None, sizes)
    return codec.Codec().encode(msg, sender="owner", frames=frames)


def per_task(reader: codec.Codec, wires: list[list[object]], n: int) -> float:
    store = StandbyStore("b")
    store.on_snapshot("run", 0, 0, "owner", "tcp://owner:1", ("b",), b"")
    t0 = time.thread_time()
    for wire in wires:
        decoded = reader.decode(wire)
        assert decoded is not None
        msg = decoded.msg
        if type(msg.tasks) is bytes:  # (as the node's ReplicationIO.handle)
            columns.check_frames(msg.frame_sizes, decoded.frames, "ReplicateLog")
            ack = store.on_log(msg, "tcp://owner:1", decoded.frames, "owner", joined=True)
        else:
            frames = columns.split_frames(msg.frame_sizes, decoded.frames, "ReplicateLog")
            ack = store.on_log(msg, "tcp://owner:1", frames, "owner")
        assert ack is not None and not ack.need_snapshot
    return (time.thread_time() - t0) / (len(wires) * n) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    wires = [batch(args.tasks, seq) for seq in range(1, args.batches + 1)]
    structs, rows = codec.Codec(), codec.Codec(rows={m.ReplicateLog: "tasks"})
    packed = codec.Codec(packed={m.ReplicateLog: "tasks"})
    a, b, c = [], [], []
    for _ in range(args.reps):
        a.append(per_task(structs, wires, args.tasks))
        b.append(per_task(rows, wires, args.tasks))
        c.append(per_task(packed, wires, args.tasks))
    print(f"structs: {statistics.median(a):.2f} us per delta (min {min(a):.2f})")
    print(f"rows:    {statistics.median(b):.2f} us per delta (min {min(b):.2f})")
    print(f"packed:  {statistics.median(c):.2f} us per delta (min {min(c):.2f})")


if __name__ == "__main__":
    main()
