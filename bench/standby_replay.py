"""A standby's CPU per task on W2's replication log, replayed: load-proof where a daemon A/B is not.

    cd /tmp/x && .venv/bin/python THIS_CHECKOUT/bench/standby_replay.py capture FILE
    cd /tmp/x && OTHER/.venv/bin/python THIS_CHECKOUT/bench/standby_replay.py replay FILE [--reps 9]

``capture``: ``bench_owner.py --replicate`` runs W2 (50 x 100, ~80 tasks a log batch as in the
daemons) and every ``ReplicateRun``/``ReplicateLog`` its replication shell sends is kept as the
wire bytes a node's transport would carry. ``replay``: a standby ``ReplicationIO`` (as
``bench_replica.py`` builds it) takes them in ``--reps`` times, each decoded by the node's codec
of that tree (deltas kept packed, read as rows, or structs), and the thread CPU of decode and
``handle`` of the log batches is printed per W2 task. The wire is the same in every tree since
protocol 2, so one capture serves an A/B of two trees (issue 13, helper w2r).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import statistics
import sys
import time
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TASKS = 5000  # W2: 50 x 100


def capture(path: str) -> None:
    import bench_owner

    wires: list[list[bytes]] = []

    def send(self: Any, address: str, msg: Any, frames: Any = None, term: int = 0) -> bool:
        if type(msg).__name__ in ("ReplicateRun", "ReplicateLog"):
            wire = self.codec.encode(msg, sender=self.name, term=term, frames=frames or ())
            wires.append([bytes(f) for f in wire])
        self.sent += 1
        return True

    bench_owner._Port.send = send  # type: ignore[method-assign]
    args = "--replicate --only w2 --cpus 48 --window 48 --report-batch 64 --tick 2e-3 --repeat 1"
    bench_owner.main(args.split())
    with open(path, "wb") as f:
        pickle.dump(wires, f)
    print(f"{len(wires)} messages to {path}")


async def _once(wires: list[list[bytes]], reader: Any) -> tuple[float, int]:
    import bench_replica

    from handoffd.protocol import messages as m

    rio = bench_replica.standby()
    envelope = SimpleNamespace(sender="n0", term=0)
    spent, batches = 0.0, 0
    for wire in wires:
        start = time.thread_time()
        decoded = reader.decode(wire)
        rio.handle(decoded.msg, decoded.frames, envelope)
        if isinstance(decoded.msg, m.ReplicateLog):
            spent += time.thread_time() - start
            batches += 1
            if batches % 16 == 0:
                await asyncio.sleep(0)  # (the batched acks go out, as on a loop)
    return spent, batches


def replay(path: str, reps: int) -> None:
    import bench_replica

    with open(path, "rb") as f:
        wires = pickle.load(f)  # noqa: S301 - our own capture
    reader = bench_replica.node_codec()
    runs = [asyncio.run(_once(wires, reader)) for _ in range(reps)]
    us = sorted(spent / TASKS * 1e6 for spent, _ in runs)
    print(
        f"{runs[0][1]} log batches; standby CPU per W2 task: median {statistics.median(us):.2f} us,"
        f" min {us[0]:.2f} ({reps} reps)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=("capture", "replay"))
    parser.add_argument("file")
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args()
    if args.mode == "capture":
        capture(args.file)
    else:
        replay(args.file, args.reps)


if __name__ == "__main__":
    main()
