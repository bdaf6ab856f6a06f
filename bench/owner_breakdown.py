"""Where the owner daemon's CPU a W1 task goes in real daemons, by thread, layer and wire (issue 13).

    cd /tmp && .venv/bin/python THIS_CHECKOUT/bench/owner_breakdown.py [--rounds 4] [--spy] [--tally]

Starts the peer benchmark's 2 daemons of 1 cpu (``bench/_peers/handoffd_runner.py``, inside
``unshare -n``), runs W1 (10,000 no-ops) once to warm up, then ``--rounds`` more, and prints:

- **threads**: the owner daemon's (d0's) CPU (user + system) a task by thread, from
  ``/proc/PID/task/*/stat``, named by ``py-spy dump`` (the loop is ``MainThread``; ``handoffd-upload``
  builds a submission's run off the loop; ``ZMQbg/IO`` is libzmq's I/O thread, CURVE included);
- with ``--spy``: ``py-spy record --gil --native`` on the owner during the rounds (after the
  warm-up: no start-up or first-use code), its samples by layer (the innermost frame of a known
  part; ``gc`` wherever the collector ran) and the top callbacks of the loop. py-spy slows the
  daemon (~2x), so time-driven work (timers, ticks, pings) weighs more than in a plain run;
- with ``--tally``: a second cluster whose owner runs under ``bench/_peers/owner_tally.py``: the
  ZeroMQ messages and bytes a task by type (to and from the other daemon: all of it CURVE
  encrypted by the I/O thread), the loop's turns and callbacks a task, and the cyclic
  collector's runs, time (us) and objects collected a task by generation.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
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

from profile_daemon import read_raw  # noqa: E402

#: (layer, path fragments): a sample counts for the layer of its innermost frame that matches one
#: (scanning from the leaf up), in this order of precedence.
LAYERS = (
    ("logging", ("logging/",)),
    ("codec (protocol/)", ("protocol/",)),
    ("msgpack", ("msgpack",)),
    ("placement core (_core/)", ("_core/",)),
    ("scheduler (scheduler/)", ("scheduler/",)),
    ("replication", ("replication",)),
    ("intake", ("upload_intake", "handoffd/intake.py", "owner_submit", "upload.py", "intake_col")),
    (
        "own executor + pool + store",
        ("daemon/executor", "worker/", "daemon/dispatch.py", "daemon/lane.py", "store/"),
    ),
    ("client's local socket", ("local_socket",)),
    ("zmq transport", ("transport/", "zmq/")),
    (
        "owner shell",
        ("daemon/owner", "daemon/results", "daemon/reports", "daemon/replies", "history_io"),
    ),
    ("membership", ("membership/",)),
    ("node routing", ("daemon/node", "admission")),
    ("loop lag / ticks", ("loop_lag", "loop_cpu", "watchdog")),
    ("asyncio loop", ("asyncio/", "selectors")),
)


def layer_of(frames: list[str]) -> str:
    if any("gc_collect" in f for f in frames):
        return "gc"
    for frame in reversed(frames):
        for label, needles in LAYERS:
            if any(n in frame for n in needles):
                return label
    return "other"


def callback_of(frames: list[str]) -> str:
    """The loop callback a sample ran under (the frame after the innermost ``Handle._run``)."""
    names = [f.split(" (")[0] for f in frames]
    for i in range(len(names) - 1, -1, -1):
        if names[i] == "Handle._run":
            return names[i + 1] if i + 1 < len(names) else "?"
    if "BaseEventLoop._run_once" in names:
        return "(the loop itself)"
    return "(another thread)" if "Thread._bootstrap" in names else "(other)"


def thread_cpu(pid: int) -> dict[int, float]:
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_names(pid: int, spy: str | None) -> dict[int, str]:
    names: dict[int, str] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/comm") as f:
            names[int(tid)] = f.read().strip()
    if spy:  # Python threads carry the process's name in /proc: py-spy knows theirs
        dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True)
        for line in dump.stdout.splitlines():
            if line.startswith("Thread ") and '"' in line:
                with contextlib.suppress(ValueError):
                    names[int(line.split()[1])] = line.split('"')[1]
    return names


def runner_with(wrap: list[str] | None) -> Any:
    from _peers.common import Sizes
    from _peers.handoffd_runner import HandoffdRunner

    runner = HandoffdRunner(Sizes(False))
    runner.owner_wrap = wrap
    runner.start()
    return runner


def by_thread(rounds: int, spy: str | None, record: str | None, rate: int) -> None:
    runner = runner_with(None)
    try:
        pid = runner.d0.pid
        runner.w1()  # warm-up
        recorder = None
        if record and spy:
            cmd = [spy, "record", "--pid", str(pid), "--gil", "--native", "--format", "raw"]
            cmd += ["-r", str(rate), "-o", record]
            recorder = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # (attached)
        before, tasks, rates = thread_cpu(pid), 0, []
        for _ in range(rounds):
            result = runner.w1()
            tasks += result["tasks"]
            rates.append(result["tasks_per_s"])
        after = thread_cpu(pid)
        names = thread_names(pid, spy)
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)
            recorder.wait(60)
    finally:
        runner.close()
    used = {t: after[t] - before.get(t, 0.0) for t in after}
    total = sum(used.values())
    label = "under py-spy" if record else "plain"
    print(f"owner daemon ({label}): {1e6 * total / tasks:.1f} us CPU a W1 task, tasks/s ", end="")
    print(", ".join(f"{r:,.0f}" for r in rates))
    for tid, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
        if seconds > 0:
            print(f"  {1e6 * seconds / tasks:6.1f} us  {names.get(tid, '?')} ({tid})")


def layers(raw: str, top: int) -> None:
    samples = read_raw(raw)
    total = sum(c for _, c in samples) or 1
    parts: collections.Counter[str] = collections.Counter()
    callbacks: collections.Counter[str] = collections.Counter()
    for frames, count in samples:
        parts[layer_of(frames)] += count
        callbacks[callback_of(frames)] += count
    print(f"\npy-spy --gil --native during the rounds: {total} samples; share by layer:")
    for label, count in parts.most_common():
        print(f"  {100 * count / total:5.1f} %  {label}")
    print(f"by loop callback (top {top}):")
    for label, count in callbacks.most_common(top):
        print(f"  {100 * count / total:5.1f} %  {label}")


def tally(rounds: int, top: int) -> None:
    out = os.path.join(tempfile.mkdtemp(prefix="owner-tally-"), "tally.json")
    wrap = [sys.executable, os.path.join(HERE, "_peers", "owner_tally.py"), out]
    runner = runner_with(wrap)

    def read() -> dict[str, Any]:
        time.sleep(0.3)  # (the tally's writer: every 0.1 s)
        with open(out) as f:
            return json.load(f)

    try:
        runner.w1()
        before, tasks = read(), 0
        for _ in range(rounds):
            tasks += runner.w1()["tasks"]
        after = read()
    finally:
        runner.close()
    print_tally(before, after, tasks, top, "owner")


def print_tally(
    before: dict[str, Any], after: dict[str, Any], tasks: int, top: int, who: str
) -> None:
    """What the tally (``_peers/owner_tally.py``) counted between two reads, a W1 task."""
    for key, unit in (("bytes", "B"), ("messages", "msgs"), ("loop", ""), ("gc", "")):
        moved = {k: v - before[key].get(k, 0) for k, v in after[key].items()}
        total = sum(v for k, v in moved.items() if not k.startswith("("))
        print(f"\n{key} a W1 task ({who}, tally): {total / tasks:.4f} {unit}")
        for name, value in sorted(moved.items(), key=lambda kv: -kv[1])[:top]:
            if value:
                print(f"  {value / tasks:10.4f} {unit:4s} {name}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--spy", action="store_true", help="py-spy the owner: share by layer")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--tally", action="store_true", help="wire bytes and loop turns a task")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    from _peers.common import reexec_in_netns

    reexec_in_netns()
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    spy = spy if os.path.exists(spy) else None
    by_thread(args.rounds, spy, None, args.rate)
    if args.spy and spy:
        raw = os.path.join(tempfile.mkdtemp(prefix="owner-spy-"), "owner.raw")
        by_thread(args.rounds, spy, raw, args.rate)
        deadline = time.monotonic() + 30
        while not os.path.exists(raw) and time.monotonic() < deadline:
            time.sleep(0.1)
        layers(raw, args.top)
    if args.tally:
        tally(args.rounds, args.top)


if __name__ == "__main__":
    main()
