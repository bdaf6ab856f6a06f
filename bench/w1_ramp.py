"""W1's ramp, broken down: who does what, on both daemons, from the run's intake to 10 % done.

    .venv/bin/python bench/w1_ramp.py [--rounds 3] [--tasks 10000] [--cold] [--bin-ms 2]
                                      [--window-ms 60] [--events] [--window N]

The peer benchmark's 2 daemons of 1 cpu (``bench/_peers/handoffd_runner.py``, inside ``unshare
-n``), **both** run under this script's ``--wrap`` mode, W1 (one ``client.execute`` of
``--tasks`` no-ops) once to warm up (not with ``--cold``), then ``--rounds`` rounds. Each daemon
stamps, on one clock (``perf_counter``): every message it sends (``send:TYPE``, with its task
count, or its first frame's bytes for a snapshot; the stamp's end is after its encoding and the
transport's send), every reply to a client (``reply:TYPE``) and every message it decodes
(``recv:TYPE``: the decode's end); the owner's scheduler batches with the successes they carried
by node (``ok:here`` / ``ok:peer``) and its dispatches by node (``dispatch:here`` /
``dispatch:peer``, with their task counts); the run's replication (``replicate``:
``Waiting.replicate``; ``snapshot.pack``: a snapshot packed in the offload thread;
``snapshot.send``); each worker pool's batches of jobs (``pool.submit`` with their count,
``pool.read``: a worker's replies read). A sampler process reads every thread's ``schedstat``
every ``--period-ms`` (``bench/w1_timeline.py``'s), here with d1's threads split like d0's (loop,
ZeroMQ I/O, others).

It prints, for each round: the stamps that bound the ramp (intake, first success, the standby's
snapshot packed / sent / received / acked, RunAccepted, the first dispatch to d1 and d1's first
report, 10 % done); per ``--bin-ms`` from the intake for ``--window-ms``: tasks done here and on
d1 (as the owner saw them), tasks dispatched here and to d1, d1's reports sent, and each thread's
CPU %; with ``--events`` every stamp in that window; and over the rounds: the ramp, the start,
tasks/s, ``replicate`` to the snapshot sent, and d0's other threads' and loop's CPU in the ramp.
Compare rounds of one run (A/B by alternating checkouts), not with ``bench_vs_peers``: the
wrappers cost a few us a message.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import runpy
import signal
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import w1_timeline as tl  # noqa: E402  (the sampler, the client's stamps, CPU between stamps)

WINDOW_ENV = "W1_RAMP_WINDOW"  # (``--window``, handed to the daemons)
PARTS = ("d0.loop", "d0.zmq", "d0.other", "d1.loop", "d1.zmq", "d1.other", "w0", "w1")


def _count(msg: Any) -> int:
    for name in ("task_ids", "accepted_ids", "items"):
        got = getattr(msg, name, None)
        if got is not None and not isinstance(got, (bytes, str)):
            return len(got)
    return 0


def wrap_mode(out: str, command: list[str]) -> None:
    """Run ``python -m MODULE ARGS`` (a daemon) with the hops of the module doc stamped."""
    from handoffd.daemon import node_routing, owner, owner_waits, replication
    from handoffd.protocol import codec
    from handoffd.scheduler import events as ev
    from handoffd.worker import pool

    stamps: list[tuple[float, str, int]] = []
    clock, lock = time.perf_counter, threading.Lock()
    note = stamps.append

    def dump(*_: Any) -> None:
        with lock:
            chunk = stamps[:]
            del stamps[:]
        with open(out, "a") as f:
            f.writelines(f"{t:.7f} {label} {n}\n" for t, label, n in chunk)

    def around(holder: Any, attr: str, label: Any, count: Any = None) -> None:
        fn = getattr(holder, attr)

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            name = label(args) if callable(label) else label
            n = count(args) if count is not None else 0
            note((clock(), name, n))
            try:
                return fn(*args, **kwargs)
            finally:
                note((clock(), name + ".end", n))

        setattr(holder, attr, inner)

    def send_label(args: Any) -> str:
        return "send:" + type(args[2]).__name__

    def send_count(args: Any) -> int:
        msg, frames = args[2], args[3] if len(args) > 3 else None
        if type(msg).__name__ == "ReplicateRun" and frames:
            return len(frames[0])
        return _count(msg)

    around(node_routing.NodeRouting, "send", send_label, send_count)
    around(node_routing.NodeRouting, "reply", lambda a: "reply:" + type(a[2]).__name__)
    decode = codec.Codec.decode

    def stamped_decode(self: Any, frames: Any, *args: Any) -> Any:
        got = decode(self, frames, *args)
        if got is not None:
            n = _count(got.msg) or (sum(len(f) for f in frames) if len(frames) > 1 else 0)
            note((clock(), "recv:" + type(got.msg).__name__, n))
        return got

    codec.Codec.decode = stamped_decode  # type: ignore[method-assign]
    feed = owner.OwnerIO._feed_all

    def stamped_feed(io: Any, *events: Any) -> Any:
        here = peer = 0
        for e in (*events, *getattr(io, "_pending", ())):
            if type(e) is ev.TasksSucceeded:
                if e.node == io.port.name:
                    here += len(e.task_ids)
                else:
                    peer += len(e.task_ids)
        t = clock()
        if here:
            note((t, "ok:here", here))
        if peer:
            note((t, "ok:peer", peer))
        note((t, "batch", here + peer))
        try:
            return feed(io, *events)
        finally:
            note((clock(), "batch.end", here + peer))

    owner.OwnerIO._feed_all = stamped_feed  # type: ignore[method-assign]

    def dispatch_label(args: Any) -> str:
        io, ins = args[0], args[1]
        return "dispatch:here" if ins.node == io.port.name else "dispatch:peer"

    around(owner.OwnerIO, "_dispatch", dispatch_label, lambda a: len(a[1].items))
    around(owner_waits.Waiting, "replicate", "replicate")
    around(replication.ReplicationIO, "_send_snapshot", "snapshot.send")
    around(replication.ReplicationIO, "_pack_off_loop", "snapshot.offload")
    try:  # (where the snapshot sends are: since session 26, a module of their own)
        from handoffd.daemon import replication_snapshots as sends
    except ImportError:
        sends = replication  # type: ignore[assignment]
    around(sends, "packed_far", "snapshot.pack")
    around(sends, "encode_run", "snapshot.encode")
    around(
        pool.WorkerPool,
        "submit_all",
        "pool.submit",
        lambda a: len(a[1]) if hasattr(a[1], "__len__") else 0,
    )
    around(pool.WorkerPool, "_on_readable", "pool.read")
    for hop in ("prepare", "prepare_whole"):
        from handoffd.daemon import upload_intake

        if hasattr(upload_intake, hop):
            around(upload_intake, hop, "prepare")
    around(upload_intake.Preparer, "_finished", "intake")
    window = int(os.environ.get(WINDOW_ENV, "0"))
    if window:  # (``--window``: the owner's dispatch window, for an A/B)
        from handoffd.daemon import node

        made = node.OwnerScheduler
        node.OwnerScheduler = functools.partial(made, window=window)  # type: ignore[misc]
    signal.signal(signal.SIGUSR1, dump)
    if len(command) < 3 or command[1] != "-m":
        sys.exit("usage: w1_ramp.py --wrap OUT -- python -m MODULE ARGS...")
    sys.argv = [command[2], *command[3:]]
    runpy.run_module(command[2], run_name="__main__", alter_sys=True)


def threads_of(client: int, d0: int, d1: int) -> list[tuple[str, str]]:
    """(part, schedstat path) of every thread of ours, both daemons split by thread."""
    out = []
    workers = tl.children({d0, d1})
    for pid, part in ((client, "client"), (d0, "d0"), (d1, "d1")):
        with contextlib.suppress(OSError):
            for t in os.listdir(f"/proc/{pid}/task"):
                tid = int(t)
                name = tl.comm(pid, tid)
                label = part
                if part != "client":
                    if tid == pid:
                        label += ".loop"
                    elif name.startswith("ZMQbg"):
                        label += ".zmq"
                    else:
                        label += ".other"
                out.append((label, f"/proc/{pid}/task/{tid}/schedstat"))
    for w, p in workers.items():
        with contextlib.suppress(OSError):
            for t in os.listdir(f"/proc/{w}/task"):
                out.append(("w0" if p == d0 else "w1", f"/proc/{w}/task/{t}/schedstat"))
    return out


def analyse(
    n: int,
    t0: float,
    t_end: float,
    d0: list[tuple[float, str, int]],
    d1: list[tuple[float, str, int]],
    rows: list[Any],
    args: Any,
) -> dict[str, float]:
    d0 = [s for s in d0 if t0 - 0.001 <= s[0] <= t_end + 0.001]
    d1 = [s for s in d1 if t0 - 0.001 <= s[0] <= t_end + 0.001]
    done = [(t, k) for t, lab, k in d0 if lab == "batch" and k]
    cum, marks = 0, []
    for t, k in done:
        cum += k
        marks.append((t, cum))

    def first(stamps: list[Any], label: str, after: float = 0.0) -> float:
        return next((t for t, lab, _ in stamps if lab == label and t >= after), float("nan"))

    def done_at(frac: float) -> float:
        return next((t for t, c in marks if c >= frac * n), float("nan"))

    intake = first(d0, "intake")
    first_ok = marks[0][0] if marks else float("nan")
    t10 = done_at(0.1)
    snap_bytes = max((k for _, lab, k in d0 if lab == "send:ReplicateRun"), default=0)
    marks_list = [
        ("owner: run fed (intake)", intake),
        ("owner: first dispatch here", first(d0, "dispatch:here")),
        ("owner: first dispatch to d1", first(d0, "dispatch:peer")),
        ("d1: first dispatch decoded", first(d1, "recv:DispatchColumns")),
        ("d1: first jobs to its worker", first(d1, "pool.submit", intake)),
        ("owner: first success (here)", first(d0, "ok:here")),
        ("d1: first report sent", first(d1, "send:ReportColumns")),
        ("owner: first success of d1's", first(d0, "ok:peer")),
        ("owner: replicate (standby)", first(d0, "replicate")),
        ("owner: snapshot packing (thread)", first(d0, "snapshot.pack")),
        ("owner: snapshot packed", first(d0, "snapshot.pack.end")),
        (f"owner: snapshot sent ({snap_bytes:,} B)", first(d0, "send:ReplicateRun")),
        ("owner: snapshot send returned", first(d0, "send:ReplicateRun.end")),
        ("d1: snapshot decoded", first(d1, "recv:ReplicateRun")),
        ("d1: ack sent", first(d1, "send:ReplicaAcked")),
        ("owner: ack decoded", first(d0, "recv:ReplicaAcked")),
        ("owner: RunAccepted sent", first(d0, "reply:RunAccepted")),
        ("owner: 10 % done", t10),
    ]
    base = intake if intake == intake else t0
    print(f"  stamps (ms from the intake; the intake at {1e3 * (base - t0):.1f} ms into execute):")
    for name, t in sorted(marks_list, key=lambda x: (x[1] != x[1], x[1])):
        print(f"    {name:40s} " + ("      -" if t != t else f"{1e3 * (t - base):7.2f}"))
    print(
        f"  ramp (first success -> 10 %): {1e3 * (t10 - first_ok):.1f} ms; "
        f"round {1e3 * (t_end - t0):.1f} ms = {n / (t_end - t0):,.0f} tasks/s"
    )
    bin_s, end = args.bin_ms / 1000, base + args.window_ms / 1000

    def total(stamps: list[Any], label: str, a: float, b: float) -> int:
        return sum(k for t, lab, k in stamps if lab == label and a <= t < b)

    print(
        f"  per {args.bin_ms:g} ms from the intake: done here / d1's, dispatched here / to d1, "
        "d1's reports (tasks) | CPU % " + " ".join(f"{p:>8s}" for p in PARTS)
    )
    t = base
    while t < end:
        b = t + bin_s
        used = [100 * tl.cpu_between(rows, t, b, p) / bin_s for p in PARTS]
        print(
            f"    {1e3 * (t - base):5.0f} {total(d0, 'ok:here', t, b):5d} "
            f"{total(d0, 'ok:peer', t, b):4d} | {total(d0, 'dispatch:here', t, b):4d} "
            f"{total(d0, 'dispatch:peer', t, b):4d} | {total(d1, 'send:ReportColumns', t, b):4d} | "
            + " ".join(f"{u:7.0f}%" for u in used)
        )
        t = b
    if args.events:
        print("  events in the window (ms from the intake, daemon, label, count):")
        merged = sorted(
            [(t, "d0", lab, k) for t, lab, k in d0 if base <= t < end]
            + [(t, "d1", lab, k) for t, lab, k in d1 if base <= t < end]
        )
        for t, who, lab, k in merged:
            if not lab.endswith(".end") or lab.startswith(("snapshot", "send:Rep")):
                print(f"    {1e3 * (t - base):8.3f} {who} {lab} {k}")
    ramp_cpu = {p: tl.cpu_between(rows, first_ok, t10, p) for p in PARTS}
    print(
        "  CPU over the ramp (ms): " + ", ".join(f"{p} {1e3 * v:.1f}" for p, v in ramp_cpu.items())
    )
    return {
        "ramp": t10 - first_ok,
        "total": t_end - t0,
        "start": first_ok - t0,
        "snapshot": first(d0, "send:ReplicateRun.end") - first(d0, "replicate"),
        "other": ramp_cpu["d0.other"],
        "loop": ramp_cpu["d0.loop"],
    }


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--wrap":
        out, sep, *command = sys.argv[2:]
        if sep != "--":
            sys.exit("usage: w1_ramp.py --wrap OUT -- python -m MODULE ARGS...")
        wrap_mode(out, command)
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--sample":
        tl.sample_mode(float(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--period-ms", type=float, default=1.0)
    parser.add_argument("--bin-ms", type=float, default=2.0)
    parser.add_argument("--window-ms", type=float, default=60.0)
    parser.add_argument("--events", action="store_true", help="print every stamp of the window")
    parser.add_argument("--cold", action="store_true", help="no warm-up: round 1 is the first")
    parser.add_argument(
        "--window",
        type=int,
        default=0,
        help="the daemons' dispatch window (cluster_view.WINDOW, x a node's capacity) for an A/B",
    )
    args = parser.parse_args()
    if args.window:
        os.environ[WINDOW_ENV] = str(args.window)
    from _peers.common import Sizes, noop, reexec_in_netns

    reexec_in_netns()
    from _peers.handoffd_runner import HandoffdRunner

    import handoffd
    from handoffd import testing

    tmp = tempfile.mkdtemp(prefix="w1-ramp-")
    outs = [os.path.join(tmp, "d0.txt"), os.path.join(tmp, "d1.txt")]
    wraps = [[sys.executable, os.path.abspath(__file__), "--wrap", o, "--"] for o in outs]
    start = testing.DaemonCluster.start
    runner = HandoffdRunner(Sizes(False))
    started: list[Any] = []

    def start_counted(cluster: Any, *a: Any, **kw: Any) -> Any:
        kw["wrap"] = wraps[min(len(started), 1)]
        d = start(cluster, *a, **kw)
        started.append(d)
        return d

    testing.DaemonCluster.start = start_counted  # type: ignore[method-assign]
    runner.start()
    stamps = tl.ClientStamps()
    sampler = tl.Sampler(args.period_ms)
    rounds: list[tuple[float, float, list[Any]]] = []
    try:
        n = args.tasks

        def dag() -> Any:
            d = handoffd.DAG()
            for i in range(n):
                d.add_function(handoffd.Function(id=f"n{i}", code=noop, extra_args=[i]))
            return d

        if not args.cold:
            runner.client.execute(dag())
        for _ in range(args.rounds):
            threads = threads_of(os.getpid(), runner.d0.pid, runner.d1.pid)
            d = dag()
            stamps.reset()
            sampler.start(threads)
            time.sleep(0.02)
            t0 = time.perf_counter()
            got = runner.client.execute(d)
            t1 = time.perf_counter()
            time.sleep(0.02)
            rows = sampler.stop()
            assert len(got) == n and sum(got.values()) == n * (n - 1) // 2, "W1 checksum"
            rounds.append((t0, t1, rows))
            time.sleep(0.2)
        for d in (runner.d0, runner.d1):
            os.kill(d.pid, signal.SIGUSR1)
        time.sleep(0.3)
    finally:
        runner.close()
        testing.DaemonCluster.start = start  # type: ignore[method-assign]
    d0, d1 = tl.read_owner(outs[0]), tl.read_owner(outs[1])
    summary = []
    for i, (t0, t1, rows) in enumerate(rounds):
        print(f"round {i + 1}:")
        summary.append(analyse(args.tasks, t0, t1, d0, d1, rows, args))
    print(
        "rounds: ramp (ms) "
        + ", ".join(f"{1e3 * s['ramp']:.1f}" for s in summary)
        + "; before the first success (ms) "
        + ", ".join(f"{1e3 * s['start']:.1f}" for s in summary)
        + "; tasks/s "
        + ", ".join(f"{args.tasks / s['total']:,.0f}" for s in summary)
        + "; replicate -> snapshot sent (ms) "
        + ", ".join(f"{1e3 * s['snapshot']:.1f}" for s in summary)
        + "; d0's other threads / loop CPU in the ramp (ms) "
        + ", ".join(f"{1e3 * s['other']:.1f} / {1e3 * s['loop']:.1f}" for s in summary)
    )


if __name__ == "__main__":
    main()
