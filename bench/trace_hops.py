"""Where one W3 run's time goes in the owner daemon: a timestamp at each hop (issue 13, W3).

    .venv/bin/python bench/trace_hops.py [--runs 1000]

Starts the peer benchmark's 2 daemons (``bench/_peers/handoffd_runner.py``, inside ``unshare -n``)
with the owner daemon d0 run under this script's ``--wrap`` mode, which wraps the daemon's hop
functions to append ``perf_counter`` stamps to a list (written out every 5,000 stamps and at
exit; nothing is logged per call), runs ``--runs`` one-task ``execute`` calls as W3 does, and
prints the median (and p90) of each segment of a run as the owner sees it:

    request in -> scheduler batch -> job written to the worker -> worker's reply read ->
    reply written to the client -> the client's next request in

plus the owner's tail (from the reply to the end of its loop turn: the batch after the reply) and
the loop turns per run. The wrappers cost a few us each: compare runs of this script (A/B),
not its figures with ``bench_vs_peers.py``'s.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import os
import runpy
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#: (class path, method, label): a stamp at entry (label) and exit (label.end)
HOPS = (
    ("handoffd.transport.zmq_transport:ZmqTransport", "_deliver_local", "req_in"),
    ("handoffd.transport.zmq_transport:ZmqTransport", "_drain_router", "zmq_in"),
    ("handoffd.transport.zmq_transport:ZmqTransport", "reply", "reply_out"),
    ("handoffd.daemon.owner:OwnerIO", "_feed_all", "sched"),
    ("handoffd.worker.pool:WorkerPool", "_feed", "job_out"),
    # (a lone short job is written by ``_alone`` without a ``_feed``: W3's path since session 37)
    ("handoffd.worker.pool:WorkerPool", "_alone", "job_out"),
    ("handoffd.worker._pipe:Writer", "flush", "pipe"),
    ("handoffd.worker.pool:WorkerPool", "_on_readable", "worker_in"),
    ("asyncio.base_events:BaseEventLoop", "_run_once", "turn"),
)


def wrap_mode(out: str, command: list[str]) -> None:
    """Run ``python -m MODULE ARGS`` (the daemon) with the hops stamped into ``out``."""
    import atexit
    import importlib
    import signal

    stamps: list[tuple[float, str]] = []
    clock = time.perf_counter

    def dump() -> None:
        chunk = stamps[:]
        del stamps[:]
        with open(out, "a") as f:
            f.writelines(f"{t:.7f} {label}\n" for t, label in chunk)

    def stamped(fn: Any, label: str) -> Any:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            stamps.append((clock(), label))
            try:
                return fn(*args, **kwargs)
            finally:
                stamps.append((clock(), label + ".end"))
                if len(stamps) > 5000:
                    dump()

        return inner

    for path, method, label in HOPS:
        module, _, name = path.partition(":")
        cls = getattr(importlib.import_module(module), name)
        if hasattr(cls, method):  # an older checkout may lack one (A/B)
            setattr(cls, method, stamped(getattr(cls, method), label))
    atexit.register(dump)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if len(command) < 3 or command[1] != "-m":
        sys.exit("usage: trace_hops.py --wrap OUT -- python -m MODULE ARGS...")
    sys.argv = [command[2], *command[3:]]
    runpy.run_module(command[2], run_name="__main__", alter_sys=True)


def summarize(path: str) -> None:
    stamps = []
    with open(path) as f:
        for line in f:
            t, label = line.split()
            stamps.append((float(t), label))
    stamps.sort()
    segments: dict[str, list[float]] = {}
    turns: list[int] = []

    def add(name: str, value: float) -> None:
        segments.setdefault(name, []).append(value * 1e6)

    # Between two replies to the client: the request is the last message in before the first
    # job written (gossip from the other daemon comes in too), its batch the last one before it.
    times = [u for u, _ in stamps]
    window: list[tuple[float, str]] = []
    last_reply = None
    for t, label in stamps:
        if label != "reply_out":
            window.append((t, label))
            continue
        jobs = [i for i, (_, lab) in enumerate(window) if lab == "job_out.end"]
        if not jobs:
            window = []
            continue
        job = jobs[0]
        ins = [i for i, (_, lab) in enumerate(window[:job]) if lab in ("req_in", "zmq_in")]
        worker = [w for w, lab in window[job:] if lab == "worker_in"]
        if not ins or not worker:
            window = []
            continue
        t_in = window[ins[-1]][0]
        batches = [u for u, lab in window[ins[-1] : job] if lab == "sched.end"]
        t_sched = batches[-1] if batches else t_in
        if last_reply is not None:
            add("client: reply out -> next request in", t_in - last_reply)
        add("request in -> scheduler batch done", t_sched - t_in)
        add("scheduler batch -> job written", window[job][0] - t_sched)
        pipes = [i for i, (_, lab) in enumerate(window[:job]) if lab == "pipe"]
        if pipes:  # the pipe write itself: the woken worker may run inside it
            add("  of which: scheduler batch -> pipe write", window[pipes[-1]][0] - t_sched)
            add("  of which: the pipe write", window[pipes[-1] + 1][0] - window[pipes[-1]][0])
        add("job written -> worker's reply read (worker)", worker[0] - window[job][0])
        add("worker's reply -> reply written to client", t - worker[0])
        add("request in -> reply out (daemon)", t - t_in)
        # what the owner's loop still does after the reply (hidden while it ends before the
        # client's next request comes)
        after = bisect.bisect_right(times, t)
        tail_end = next((u for u, lab in stamps[after : after + 400] if lab == "turn.end"), None)
        if tail_end is not None:
            add("reply out -> its turn's end (owner's tail)", tail_end - t)
        turns.append(sum(1 for u, lab in window[ins[-1] :] if lab == "turn"))
        last_reply, window = t, []
    print(f"{len(turns)} runs traced; segment medians (p90), us:")
    for name, values in segments.items():
        values.sort()
        p90 = values[int(len(values) * 0.9)]
        print(f"  {name:46s} {statistics.median(values):8.1f} ({p90:.1f})")
    if turns:
        print(f"  loop turns from request in to reply out: median {statistics.median(turns)}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--wrap":
        out, sep, *command = sys.argv[2:]
        if sep != "--":
            sys.exit("usage: trace_hops.py --wrap OUT -- python -m MODULE ARGS...")
        wrap_mode(out, command)
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    from _peers.common import Sizes, latency_result, noop, reexec_in_netns

    reexec_in_netns()
    from _peers.handoffd_runner import HandoffdRunner

    import handoffd

    out = os.path.join(tempfile.mkdtemp(prefix="trace-hops-"), "owner.txt")
    runner = HandoffdRunner(Sizes(True))
    runner.owner_wrap = [sys.executable, os.path.abspath(__file__), "--wrap", out, "--"]
    runner.start()
    samples = []
    try:
        for i in range(args.runs):
            dag = handoffd.DAG().add_function(
                handoffd.Function(id="one", code=noop, extra_args=[i])
            )
            t0 = time.perf_counter()
            assert runner.client.execute(dag) == {"one": i}
            samples.append(time.perf_counter() - t0)
    finally:
        runner.close()
    print(f"client: {latency_result(samples)}")
    summarize(out)


if __name__ == "__main__":
    main()
