"""Where the other daemon's (d1's) CPU a W1 task goes in real daemons: by thread, part and wire.

    cd /tmp && .venv/bin/python THIS_CHECKOUT/bench/d1_breakdown.py [--rounds 3] [--spy] [--tally]

The peer benchmark's 2 daemons of 1 cpu (``bench/_peers/handoffd_runner.py``, inside ``unshare
-n``): d0 owns W1's runs and runs about half the tasks, d1 runs the rest and is d0's standby (it
keeps the replicated log of every run). W1 (10,000 no-ops) once to warm up, then ``--rounds``
more; prints d1's CPU a W1 task by thread (``/proc/PID/task``), and:

- with ``--spy``: ``py-spy record --idle --nonblocking`` of d1 during the rounds (no ``--native``:
  it slowed d1 so much that d0 took ~95 % of the tasks); the loop thread's busy samples by loop
  callback and by *path*: the callback and the first handoffd functions under it that say what
  the work was (a dispatch's read and intake, the replicated log's keep, the reports' send, the
  workers' replies, SWIM);
- with ``--tally``: a second cluster whose d1 runs under ``bench/_peers/owner_tally.py``: d1's
  messages and bytes a task by type in and out, its loop turns and callbacks a task.

Measurement only; figures from the plain run (no wrapper) are the CPU ones.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from owner_breakdown import callback_of, print_tally, runner_with  # noqa: E402
from peer_breakdown import on_d1, plain  # noqa: E402
from profile_daemon import read_raw  # noqa: E402

#: functions that only pass a message along: skipped when naming a sample's path
_PASSING = {
    "ZmqTransport._drain_router",
    "ZmqTransport._drain_dealer",
    "ZmqTransport._deliver",
    "NodeRouting._received",
    "NodeRouting._on_frames",
    "NodeRouting._route",
    "Node._received",
    "Node._on_frames",
    "Node._route",
    "Handle._run",
}


def path_of(frames: list[str], depth: int) -> str:
    """The loop callback, then the first ``depth`` handoffd functions under it not in ``_PASSING``
    (the leaf's file if none)."""
    names = [(f.split(" (")[0], f) for f in frames]
    start = 0
    for i in range(len(names) - 1, -1, -1):
        if names[i][0] == "Handle._run":
            start = i + 1
            break
    chain: list[str] = []
    for name, full in names[start:]:
        if "handoffd/" not in full or name in _PASSING or (chain and chain[-1] == name):
            continue
        chain.append(name)
        if len(chain) == depth:
            break
    return " > ".join([callback_of(frames), *chain]) if chain else callback_of(frames)


def spied(rounds: int, spy: str, rate: int, top: int, depth: int) -> None:
    raw = os.path.join(tempfile.mkdtemp(prefix="d1-spy-"), "d1.raw")
    runner = runner_with(None)
    try:
        runner.w1()
        cmd = [spy, "record", "--pid", str(runner.d1.pid), "--nonblocking", "--threads"]
        cmd += ["--format", "raw", "-r", str(rate), "-o", raw]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        d1, n = on_d1(runner)
        rates = [runner.w1()["tasks_per_s"] for _ in range(rounds)]
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        runner.close()
    print(
        f"\nunder py-spy: tasks on d1 {d1} of {n}; tasks/s", ", ".join(f"{r:,.0f}" for r in rates)
    )
    samples = read_raw(raw)
    threads: collections.Counter[str] = collections.Counter()
    loop: list[tuple[list[str], int]] = []
    for frames, count in samples:
        thread = frames[0] if frames and frames[0].startswith("thread") else "?"
        threads[thread] += count
        if "BaseEventLoop.run_forever" in ";".join(frames):
            loop.append((frames, count))
    total = sum(c for _, c in loop) or 1
    print(f"samples by thread: {dict(threads)}")
    for title, key in (
        ("loop callback", callback_of),
        (f"path (depth {depth})", lambda f: path_of(f, depth)),
    ):
        tally: collections.Counter[str] = collections.Counter()
        for frames, count in loop:
            tally[key(frames)] += count
        print(f"\nd1's loop: {total} busy samples by {title} (top {top}):")
        for label, count in tally.most_common(top):
            print(f"  {100 * count / total:5.1f} %  {label}")


def tallied(rounds: int, top: int) -> None:
    import handoffd.testing

    out = os.path.join(tempfile.mkdtemp(prefix="d1-tally-"), "tally.json")
    wrap = [sys.executable, os.path.join(HERE, "_peers", "owner_tally.py"), out]
    start = handoffd.testing.DaemonCluster.start

    def start_d1_wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("seeds"):  # d1 (d0 starts without seeds)
            kwargs["wrap"] = wrap
        return start(self, *args, **kwargs)

    handoffd.testing.DaemonCluster.start = start_d1_wrapped  # type: ignore[method-assign]
    runner = runner_with(None)

    def read() -> dict[str, Any]:
        time.sleep(0.3)  # (the tally's writer: every 0.1 s)
        with open(out) as f:
            return json.load(f)

    try:
        runner.w1()
        d1, n = on_d1(runner)
        before, tasks = read(), 0
        for _ in range(rounds):
            tasks += runner.w1()["tasks"]
        after = read()
    finally:
        runner.close()
        handoffd.testing.DaemonCluster.start = start  # type: ignore[method-assign]
    print(f"\nunder the tally: tasks on d1 {d1} of {n} (one round)")
    print_tally(before, after, tasks, top, "d1")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spy", action="store_true", help="py-spy d1's loop: callbacks and paths")
    parser.add_argument("--tally", action="store_true", help="d1's wire and loop turns a task")
    parser.add_argument("--plain", action="store_true", help="d1's CPU by thread")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--depth", type=int, default=2)
    args = parser.parse_args()
    from _peers.common import reexec_in_netns

    reexec_in_netns()
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    spy = spy if os.path.exists(spy) else None
    if args.plain:
        plain(args.rounds, spy)
    if args.spy and spy:
        spied(args.rounds, spy, args.rate, args.top, args.depth)
    if args.tally:
        tallied(args.rounds, args.top)


if __name__ == "__main__":
    main()
