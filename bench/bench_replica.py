"""Standby-side cost of replication: CPU per ReplicateRun snapshot and per ReplicateLog batch on the
standby, the bytes its replicas keep, and what a takeover then pays to rebuild the run.

Drives ``ReplicationIO.handle`` (the standby's real path: log batches decoded by the node's codec,
the frames split or checked, the ``StandbyStore``, the ack) with real snapshots from an ``OwnerScheduler``; its port drops what the
standby sends (acks). Works on older trees too (``PYTHONPATH``: a stand-in node before the ports).

    .venv/bin/python bench/bench_replica.py [--tasks 10000] [--small 500] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import statistics
import time
import tracemalloc
from types import SimpleNamespace
from typing import Any

import msgpack

from handoffd.protocol import messages as m
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.spec import RunOptions, TaskSpec

try:  # the shells behind ports (handoffd.daemon)
    from handoffd.daemon.ports import NodePort
    from handoffd.daemon.replication import ReplicationIO
except ImportError:  # an older tree: the shell took the whole node
    NodePort = None  # type: ignore[assignment,misc]
    from handoffd.replication_io import ReplicationIO  # type: ignore[no-redef]

try:  # snapshots and errors as codec structs (protocol 2)
    from handoffd.protocol.snapshot import encode_run_data as _pack

    _NO_ERROR: Any = None
except ImportError:  # an older tree: the snapshot was a msgpack map, the error packed bytes

    def _pack(data: Any) -> bytes:
        return msgpack.packb(data, use_bin_type=True)  # type: ignore[no-any-return]

    _NO_ERROR = b""


def snapshot_frame(run_id: str, tasks: int) -> bytes:
    """A packed run snapshot as the owner sends it (histories stripped)."""
    sched = OwnerScheduler("a", now=0.0)
    sched.handle(ev.NodeUpdate("b", "b:1", True, {"cpu": 1.0}, {"cpu": 1.0}, 1), 0.0)
    specs = tuple(
        TaskSpec(id=f"t{i}", deps=(), cost={"cpu": 1.0}, payload=b"p" * 40) for i in range(tasks)
    )
    sched.handle(ev.RunSubmitted(run_id, specs, RunOptions()), 0.0)
    data = sched.snapshot(run_id)
    for rec in data["tasks"].values():
        rec["history"] = []
    return _pack(data)


def log_batches(tasks: int, per_batch: int) -> list[tuple[m.ReplicateLog, list[bytes]]]:
    """W1-like log: every task goes RUNNING, then DONE with an inline value, ``per_batch`` deltas a
    batch (wire round trip, so the standby gets decoded messages as from the transport)."""
    out = []
    seq = 0
    deltas: list[tuple[m.TaskDelta, bytes | None]] = []
    for i in range(tasks):
        deltas.append((m.TaskDelta(f"t{i}", "RUNNING", 1, "b", 0, (), 0, 0, 0, -1), None))
        deltas.append((m.TaskDelta(f"t{i}", "DONE", 1, "b", 5, ("b",), 0, 0, 1, 0), b"\x91\x00"))
    for start in range(0, len(deltas), per_batch):
        chunk = deltas[start : start + per_batch]
        frames: list[bytes] = []
        tds = []
        for d, value in chunk:
            if value is not None:
                d = dataclasses.replace(d, frame=len(frames))
                frames.append(value)
            tds.append(d)
        seq += 1
        out.append(
            (m.ReplicateLog("big", 0, seq, ("s",), tuple(tds), "RUNNING", False, _NO_ERROR), frames)
        )
    return out


def node_codec() -> Any:
    """The codec a node reads log batches with: deltas kept packed (w2r), as rows (xport), or
    structs on older trees."""
    from handoffd.protocol import codec

    for kind in ("packed", "rows"):
        try:
            return codec.Codec(**{kind: {m.ReplicateLog: "tasks"}})
        except TypeError:
            continue
    return codec.Codec()


def encoded(batches: list[tuple[m.ReplicateLog, list[bytes]]]) -> list[list[Any]]:
    """Each batch as the owner sends it: the body, then its values joined as the owner joins them."""
    from handoffd.protocol import codec, columns

    out = []
    for msg, frames in batches:
        join = getattr(columns, "join_frames", None)
        if join is not None and hasattr(msg, "frame_sizes"):
            sizes, frames = join(frames)
            msg = dataclasses.replace(msg, frame_sizes=sizes)
        out.append(codec.Codec().encode(msg, sender="a", frames=frames))
    return out


def standby() -> ReplicationIO:
    if NodePort is not None:
        loop = asyncio.get_running_loop()
        port = NodePort(
            name="s",
            address="s:1",
            now=time.monotonic,
            send=lambda *a, **k: True,
            reply=lambda *a, **k: None,
            address_of=lambda name: f"{name}:1",
            call_later=loop.call_later,
            call_soon=loop.call_soon,
            member=lambda name: None,
            members=list,
        )
        return ReplicationIO(port, OwnerScheduler("s", now=0.0), replicas=1, grace=0.1)
    scheduler = SimpleNamespace(on_change=None)
    executor = SimpleNamespace(learn_owner=lambda *a: None, run_owners={})
    node = SimpleNamespace(
        name="s",
        address="s:1",
        owner=SimpleNamespace(scheduler=scheduler),
        executor=executor,
        config=SimpleNamespace(replicas=1),
        send=lambda *a, **k: True,
        address_of=lambda name: f"{name}:1",
    )
    return ReplicationIO(node)  # type: ignore[arg-type]


def replica_data(rio: ReplicationIO, run_id: str) -> dict[str, Any]:
    replica = rio.standby.replicas[run_id]
    build = getattr(replica, "run_data", None)
    return build() if build is not None else replica.data  # type: ignore[no-any-return]


async def one_round(
    big: bytes, small: bytes, nsmall: int, batches: list, trace: bool
) -> dict[str, float]:
    """Times without ``trace``; with it, the bytes kept (tracemalloc slows allocation down)."""
    envelope = SimpleNamespace(sender="a", term=0)
    res: dict[str, float] = {}
    gc.collect()
    if trace:
        tracemalloc.start()
    rio = standby()
    base = tracemalloc.get_traced_memory()[0]
    frame = [bytes(bytearray(big))]  # as from the transport: a fresh buffer, nobody else keeps it
    t0 = time.perf_counter()
    rio.handle(m.ReplicateRun("big", 0, 0, "a", "a:1", ("s",)), frame, envelope)
    res["big_snapshot_us"] = (time.perf_counter() - t0) * 1e6
    del frame
    res["big_snapshot_kib"] = (tracemalloc.get_traced_memory()[0] - base) / 1024
    reader = node_codec()
    t0 = time.perf_counter()
    for wire in batches:  # (decoded as the node decodes them: that is part of their cost)
        decoded = reader.decode(wire)
        rio.handle(decoded.msg, decoded.frames, envelope)
    res["log_batch_us"] = (time.perf_counter() - t0) * 1e6 / len(batches)
    await asyncio.sleep(0)  # the batched acks go out
    res["big_after_log_kib"] = (tracemalloc.get_traced_memory()[0] - base) / 1024
    t0 = time.perf_counter()
    data = replica_data(rio, "big")
    res["takeover_build_us"] = (time.perf_counter() - t0) * 1e6
    assert sum(1 for r in data["tasks"].values() if r["state"] == "DONE") == len(data["tasks"])
    del data
    base = tracemalloc.get_traced_memory()[0]
    frames = [bytes(bytearray(small)) for _ in range(nsmall)]
    t0 = time.perf_counter()
    for i in range(nsmall):
        rio.handle(m.ReplicateRun(f"s{i}", 0, 0, "a", "a:1", ("s",)), [frames.pop()], envelope)
    res["small_snapshot_us"] = (time.perf_counter() - t0) * 1e6 / nsmall
    res["small_kib_each"] = (tracemalloc.get_traced_memory()[0] - base) / 1024 / nsmall
    tracemalloc.stop()
    if trace:
        return {k: v for k, v in res.items() if k.endswith("kib") or k.endswith("each")}
    return {k: v for k, v in res.items() if k.endswith("us")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--per-batch", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    big = snapshot_frame("big", args.tasks)
    small = snapshot_frame("small", 1)
    batches = encoded(log_batches(args.tasks, args.per_batch))
    print(f"snapshot {len(big)} bytes ({args.tasks} tasks), one-task snapshot {len(small)} bytes")
    rounds = [
        asyncio.run(one_round(big, small, args.small, batches, False)) for _ in range(args.repeat)
    ]
    (memory,) = [asyncio.run(one_round(big, small, args.small, batches, True))]
    for key, value in memory.items():
        print(f"{key:20s} {value:10.1f}")
    for key in rounds[0]:
        values = sorted(r[key] for r in rounds)
        print(f"{key:20s} median {statistics.median(values):10.1f}  min {values[0]:10.1f}")


if __name__ == "__main__":
    main()
