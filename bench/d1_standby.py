"""The standby's side of W1 on d1, recorded in real daemons and replayed in one process (issue 13).

    cd /tmp && .venv/bin/python THIS_CHECKOUT/bench/d1_standby.py record OUT [--rounds 3]
    PYTHONHASHSEED=0 valgrind --tool=callgrind .venv/bin/python THIS_CHECKOUT/bench/d1_standby.py \
        replay OUT --runs N                       # the first N runs' calls (two N: the difference)
    .venv/bin/python THIS_CHECKOUT/bench/d1_standby.py replay OUT --check   # answers and states

d1 is d0's standby: every run d0 owns comes to d1 as a ``ReplicateRun`` (the snapshot), a stream
of ``ReplicateLog`` batches (every task's deltas) and a ``DropReplica`` at its release, whatever
node ran its tasks, so what d1's ``StandbyStore`` does with them is paid once per task of every
W1 round. ``record`` runs the peer benchmark's 2 daemons of 1 cpu (inside ``unshare -n``) with d1
under this file's ``wrap``: ``StandbyStore.on_snapshot``, ``on_log`` and ``drop`` keep their
arguments and answers (frames as bytes) in OUT, one pickle a call; W1 once to warm up, then
``--rounds`` more. ``replay`` makes the same calls on a new ``StandbyStore`` in order;
``--check`` compares each answer (``StandbyAck``) with the recorded one and prints a digest of
each replica's settled state (its deltas and values with every kept batch folded in) just
before its drop: equal digests on two builds mean the same replica whenever a takeover asks.

``--wire rows|columns``: each log batch is first encoded as an owner sends it (``rows``: the
recorded deltas as ``TaskDelta`` rows, as protocol 7; ``columns``: as ``ReplicateLog.columns``,
protocol 8), and the replay decodes it with the node's codec and checks its frames before
``on_log``, as ``ReplicationIO.handle`` does: the standby's part of d1's loop with the decode.
``encode REC OUT --wire ...`` does that encoding once, to OUT, so that a replay of OUT (two
``--runs`` subtracted) measures the decode and the standby, not the owner's encoding.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import runpy
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _plain(frames: Any) -> list[bytes]:
    return [f if type(f) is bytes else bytes(f) for f in frames]


def wrap(out: str, args: list[str]) -> None:
    """Run the daemon command ``args`` with the standby's calls recorded to ``out``."""
    from handoffd.replication import standby

    sink = open(out, "ab")  # noqa: SIM115 - open for the daemon's life
    store = standby.StandbyStore
    on_snapshot, on_log, drop = store.on_snapshot, store.on_log, store.drop

    def keep(call: tuple[Any, ...]) -> None:
        pickle.dump(call, sink, protocol=pickle.HIGHEST_PROTOCOL)
        sink.flush()

    def rec_snapshot(self: Any, *a: Any) -> Any:
        ack = on_snapshot(self, *a)
        keep(("snapshot", (*a[:-1], bytes(a[-1])), {}, ack))
        return ack

    def rec_log(self: Any, msg: Any, address: str, frames: Any, *a: Any, **k: Any) -> Any:
        ack = on_log(self, msg, address, frames, *a, **k)
        keep(("log", (msg, address, _plain(frames), *a), k, ack))
        return ack

    def rec_drop(self: Any, *a: Any) -> Any:
        keep(("drop", a, {}, None))
        return drop(self, *a)

    store.on_snapshot, store.on_log, store.drop = rec_snapshot, rec_log, rec_drop  # type: ignore
    at = args.index("-m")
    sys.argv = [args[at + 1], *args[at + 2 :]]
    runpy.run_module(args[at + 1], run_name="__main__", alter_sys=True)


def record(out: str, rounds: int) -> None:
    from owner_breakdown import runner_with
    from peer_breakdown import on_d1

    import handoffd.testing

    if os.path.exists(out):
        os.remove(out)
    cmd = [sys.executable, os.path.abspath(__file__), "wrap", os.path.abspath(out)]
    start = handoffd.testing.DaemonCluster.start

    def start_d1_wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("seeds"):  # d1 (d0 starts without seeds)
            kwargs["wrap"] = cmd
        return start(self, *args, **kwargs)

    handoffd.testing.DaemonCluster.start = start_d1_wrapped  # type: ignore[method-assign]
    runner = runner_with(None)
    try:
        runner.w1()
        d1, n = on_d1(runner)
        rates = [runner.w1()["tasks_per_s"] for _ in range(rounds)]
        time.sleep(0.5)  # (the last run's drop)
    finally:
        runner.close()
    calls = load(out)
    runs = sum(1 for c in calls if c[0] == "snapshot")
    logs = sum(1 for c in calls if c[0] == "log")
    print(f"recorded {len(calls)} calls ({runs} snapshots, {logs} log batches) to {out}")
    print(f"tasks on d1 {d1} of {n}; tasks/s", ", ".join(f"{r:,.0f}" for r in rates))


def load(path: str) -> list[tuple[Any, ...]]:
    calls = []
    with open(path, "rb") as f:
        while True:
            try:
                calls.append(pickle.load(f))
            except EOFError:
                return calls


def digest(replica: Any) -> str:
    deltas, values = replica.settled()
    h = hashlib.sha256()
    for task_id in sorted(deltas):
        h.update(task_id.encode() + b"\0" + deltas[task_id] + b"\1")
    for task_id in sorted(values):
        value = values[task_id]
        h.update(task_id.encode() + (b"\2" if value is None else b"\3" + value))
    return h.hexdigest()[:16]


def _today(msg: Any) -> Any:
    """A recorded ``ReplicateLog`` as this build's (one recorded by a build of protocol 7 has no
    ``columns``: unpickled, the field is unset)."""
    import dataclasses

    from handoffd.protocol import messages as m

    fields = [getattr(msg, f.name, f.default) for f in dataclasses.fields(m.ReplicateLog)]
    return m.ReplicateLog(*fields)


def _prepare(calls: list[tuple[Any, ...]], wire: str) -> list[tuple[Any, ...]]:
    """The log calls' messages encoded as an owner of ``wire``'s form sends them (frames)."""
    import dataclasses

    from handoffd.protocol import codec
    from handoffd.protocol import messages as m
    from handoffd.protocol.rows import read_packed
    from handoffd.protocol.schema import WireRows, struct_record

    owner = codec.Codec()
    delta = struct_record(m.TaskDelta)
    out = []
    for kind, args, kwargs, ack in calls:
        if kind == "log":
            msg, address, frames, *rest = args
            msg = _today(msg)
            rows = [
                [*r[:5], list(r[5]), *r[6:10], [list(a) for a in r[10]]]
                for r in read_packed(delta, msg.tasks)
            ]
            if wire == "columns":
                from handoffd.protocol.log_columns import pack_columns

                packed = pack_columns(rows)
                assert packed is not None
                msg = dataclasses.replace(msg, tasks=WireRows(()), columns=packed)
            else:
                msg = dataclasses.replace(msg, tasks=WireRows(rows))
            encoded = [
                bytes(f) for f in owner.encode(msg, sender="d0", term=msg.term, frames=frames)
            ]
            args = (encoded, address, *rest)
        out.append((kind, args, kwargs, ack))
    return out


def _replay_calls(
    store: Any, calls: list[tuple[Any, ...]], check: bool, wire: str
) -> tuple[int, list[str]]:
    from handoffd.protocol import codec
    from handoffd.protocol import messages as m
    from handoffd.protocol.columns import check_frames

    node = codec.Codec(packed={m.ReplicateLog: "tasks"})  # (the node's: daemon.node)
    methods = {"snapshot": store.on_snapshot, "log": store.on_log, "drop": store.drop}
    mismatched, digests = 0, []
    for kind, args, kwargs, ack in calls:
        if check and kind == "drop" and args[0] in store.replicas:
            digests.append(digest(store.replicas[args[0]]))
        if kind == "log" and wire:
            encoded, address, *rest = args
            decoded = node.decode(encoded)
            msg = decoded.msg
            check_frames(msg.frame_sizes, decoded.frames, "ReplicateLog")
            got = store.on_log(msg, address, decoded.frames, *rest, **kwargs)
        else:
            got = methods[kind](*args, **kwargs)
        if check and got != ack:
            mismatched += 1
    return mismatched, digests


def replay(path: str, runs: int, check: bool, wire: str = "") -> None:
    from handoffd.replication.standby import StandbyStore

    calls = load(path)
    encoded = bool(calls) and calls[-1][0] == "encoded"  # (``encode``'s output)
    if encoded:
        calls = calls[:-1]
    if runs:  # the first ``runs`` runs: up to the call before the next run's snapshot
        seen, end = 0, len(calls)
        for i, call in enumerate(calls):
            if call[0] == "snapshot":
                seen += 1
                if seen > runs:
                    end = i
                    break
        calls = calls[:end]
    if wire and not encoded:
        calls = _prepare(calls, wire)
    elif not wire:
        calls = [
            (k, (_today(a[0]), *a[1:]) if k == "log" else a, kw, ack) for k, a, kw, ack in calls
        ]
    store = StandbyStore("d1")
    mismatched, digests = _replay_calls(store, calls, check, wire)
    if check:
        print(f"{len(calls)} calls, {mismatched} answers differ; digests:", " ".join(digests))


def encode(path: str, out: str, wire: str) -> None:
    """The recording at ``path`` with its log batches encoded in ``wire``'s form, to ``out``:
    ``replay OUT --wire ...`` then measures the decode and the standby, not this encoding."""
    calls = _prepare(load(path), wire)
    with open(out, "wb") as f:
        for call in [*calls, ("encoded", (), {}, None)]:
            pickle.dump(call, f, protocol=pickle.HIGHEST_PROTOCOL)
    print(f"{len(calls)} calls encoded as {wire} to {out}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "wrap":
        wrap(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("out")
    rec.add_argument("--rounds", type=int, default=3)
    rep = sub.add_parser("replay")
    rep.add_argument("path")
    rep.add_argument("--runs", type=int, default=0, help="the first RUNS runs only (0: all)")
    rep.add_argument("--check", action="store_true")
    rep.add_argument("--wire", choices=("rows", "columns"), default="", help="decode each batch")
    enc = sub.add_parser("encode")
    enc.add_argument("path")
    enc.add_argument("out")
    enc.add_argument("--wire", choices=("rows", "columns"), required=True)
    args = parser.parse_args()
    if args.cmd == "record":
        from _peers.common import reexec_in_netns

        reexec_in_netns()
        record(args.out, args.rounds)
    elif args.cmd == "encode":
        encode(args.path, args.out, args.wire)
    else:
        replay(args.path, args.runs, args.check, args.wire)


if __name__ == "__main__":
    main()
