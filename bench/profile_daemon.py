"""The owner daemon's CPU per task in a real run of the peer benchmark's W1 and W2 (issue 13).

Runs the workloads of ``bench_vs_peers.py`` (``bench/_peers/handoffd_runner.py``, inside
``unshare -n``) ``--rounds`` times and prints, per workload, the owner daemon's process CPU time
(user + system, its worker processes excluded) per task. ``--layout owner`` (the default): the
client's daemon d0 has no cpu, so it only owns the runs, and two daemons of 1 cpu execute; its
CPU per task is the owner's cost per task (scheduler, shell, codec, transport, replication).
``--layout peers``: the peer benchmark's 2 daemons of 1 cpu; d0 also executes about half the
tasks.

``--py-spy`` runs the owner daemon under ``py-spy record`` (``pip install py-spy``; listed in
the ``bench`` extra) and prints the top functions by own samples and the share of samples per
part of the daemon (owner shell + scheduler, executor, codec + transport, ...). Usage::

    .venv/bin/python bench/profile_daemon.py                   # W1,W2, 3 rounds, CPU per task
    .venv/bin/python bench/profile_daemon.py --py-spy --top 40 # where that CPU goes
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _peers.common import Sizes, reexec_in_netns  # noqa: E402

#: (label, path fragments): a sample counts for the first part one of its frames matches,
#: scanning from the leaf up, so the innermost part wins (the codec called by the owner's shell
#: counts as codec).
PARTS = (
    ("codec", ("protocol/codec.py", "protocol/schema.py", "msgpack")),
    ("zmq transport", ("transport/", "zmq/")),
    ("placement core", ("_core/",)),
    ("scheduler (pure)", ("scheduler/",)),
    ("replication", ("replication/", "daemon/replication.py")),
    (
        "owner shell",
        (
            "daemon/owner.py",
            "daemon/dispatch.py",
            "daemon/results.py",
            "daemon/history_io.py",
            "daemon/task_output.py",
        ),
    ),
    ("executor", ("daemon/executor", "worker/")),
    ("membership", ("membership/",)),
    ("node routing", ("daemon/node.py", "admission.py")),
    ("asyncio loop", ("asyncio/",)),
)


def part_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for label, needles in PARTS:
            if any(n in frame for n in needles):
                return label
    return "other"


def read_raw(path: str) -> list[tuple[list[str], int]]:
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if stack and count.isdigit():
                out.append((stack.split(";"), int(count)))
    return out


def summarize(samples: list[tuple[list[str], int]], top: int) -> None:
    total = sum(c for _, c in samples) or 1
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    parts: collections.Counter[str] = collections.Counter()
    for frames, count in samples:
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        parts[part_of(frames)] += count
    print(f"\npy-spy: {total} samples of the owner daemon (idle excluded)")
    print("\nshare by part (innermost matching frame):")
    for label, count in parts.most_common():
        print(f"  {100 * count / total:5.1f} %  {label}")
    print(f"\ntop {top} by own samples:")
    for frame, count in own.most_common(top):
        print(f"  {100 * count / total:5.1f} %  {frame}")
    print(f"\ntop {top} by inclusive samples:")
    for frame, count in inclusive.most_common(top):
        print(f"  {100 * count / total:5.1f} %  {frame}")


def start_wrapped(cluster: Any, wrap: list[str] | None, **kwargs: Any) -> Any:
    """``cluster.start(**kwargs)`` with the daemon's command run under ``wrap``. Through the
    Popen it calls, not ``start(wrap=)``: older checkouts have no such argument (A/B runs)."""
    if not wrap:
        return cluster.start(**kwargs)
    import subprocess

    real = subprocess.Popen

    def popen(args: list[str], *rest: Any, **options: Any) -> Any:
        return real([*wrap, *args], *rest, **options)

    subprocess.Popen = popen  # type: ignore[assignment,misc]
    try:
        return cluster.start(**kwargs)
    finally:
        subprocess.Popen = real  # type: ignore[misc]


def owner_only_runner() -> type:
    """The peer runner on 3 daemons: d0 (no cpu) owns every run, d1 and d2 (1 cpu) execute."""
    from _peers.common import peer_env
    from _peers.handoffd_runner import HandoffdRunner

    import handoffd
    from handoffd.testing import DaemonCluster, wait_for

    class Runner(HandoffdRunner):
        def _start_cluster(self) -> float:
            t0 = time.perf_counter()
            self.cluster = DaemonCluster(env=peer_env())
            d0 = start_wrapped(self.cluster, self.owner_wrap, cpu=0, memory=4000, gpu=0)
            d1 = self.cluster.start(cpu=1, memory=4000, gpu=1, seeds=[d0.address])
            d2 = self.cluster.start(cpu=1, memory=4000, gpu=0, seeds=[d0.address])
            self.d0, self.d1, self.d2 = d0, d1, d2
            self.client = handoffd.connect(d0.address, timeout=10)
            wait_for(
                lambda: sum(n.status == "ALIVE" for n in self.client.nodes().values()) == 3,
                30,
                0.01,
                what="3 daemons ALIVE",
            )
            return time.perf_counter() - t0

    return Runner


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) per thread name of process ``pid`` (ZeroMQ names its I/O
    threads ``ZMQbg/IO/n``; the daemon's loop thread carries the process name)."""
    out: dict[str, float] = collections.Counter()
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            name = "loop" if tid == str(pid) else name
            out[name] += (int(fields[11]) + int(fields[12])) / tick
    return out


def owner_messages(runner: Any) -> dict[str, int]:
    """The owner daemon's messages so far, ``out <type>`` and ``in <type>`` (its /metrics
    snapshot's codec counts: messages to and from our own node are never encoded)."""
    import msgpack

    from handoffd.protocol.messages_observability import GetMetrics

    reply = runner.client._ask_node(runner.d0.address, lambda rid: GetMetrics(rid))
    snap = msgpack.unpackb(reply.snapshot, raw=False, strict_map_key=False)
    out = {f"out {k}": n for k, n in snap.get("messages_out", {}).items()}
    out.update({f"in {k}": n for k, n in snap.get("messages_in", {}).items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="W1,W2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--layout", choices=("owner", "peers"), default="owner")
    parser.add_argument("--py-spy", action="store_true", help="profile the owner daemon")
    parser.add_argument("--cprofile", action="store_true", help="cProfile the owner daemon")
    parser.add_argument(
        "--timer", choices=("wall", "thread"), default="thread", help="cProfile's clock"
    )
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument(
        "--gil",
        action="store_true",
        help="py-spy samples only the thread holding the GIL (no time waiting for a CPU, the"
        " GIL or ZeroMQ's I/O thread counted as the loop's)",
    )
    parser.add_argument(
        "--native", action="store_true", help="py-spy also samples C frames (compiled modules)"
    )
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--raw", help="keep py-spy's raw output at this path")
    parser.add_argument(
        "--messages", action="store_true", help="the owner's messages in/out per task, by type"
    )
    parser.add_argument("--wrap", help="run the owner daemon under this command (then '--')")
    args = parser.parse_args()
    reexec_in_netns()
    import psutil
    from _peers.common import peer_env
    from _peers.handoffd_runner import HandoffdRunner

    OwnerOnlyRunner = owner_only_runner()  # noqa: N806
    os.environ.update(peer_env())
    runner = (OwnerOnlyRunner if args.layout == "owner" else HandoffdRunner)(Sizes(args.quick))
    raw = args.raw or os.path.join(tempfile.mkdtemp(prefix="profile-daemon-"), "owner.raw")
    if args.py_spy:
        spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
        runner.owner_wrap = [spy, "record", "--format", "raw", "-r", str(args.rate), "-o", raw]
        runner.owner_wrap += ["--native"] if args.native else []
        runner.owner_wrap += ["--gil", "--"] if args.gil else ["--"]
    if args.cprofile:
        here = os.path.dirname(os.path.abspath(__file__))
        raw = args.raw or raw.replace(".raw", ".prof")
        runner.owner_wrap = [sys.executable, os.path.join(here, "_peers", "cprofile_exec.py")]
        runner.owner_wrap += [raw, "--"]
        os.environ["HANDOFFD_PROFILE_TIMER"] = args.timer
    if args.wrap:
        runner.owner_wrap = [*args.wrap.split(), "--"]
    only = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    per_task: dict[str, list[float]] = {w: [] for w in only}
    rates: dict[str, list[float]] = {w: [] for w in only}
    by_thread: dict[str, collections.Counter[str]] = {w: collections.Counter() for w in only}
    traffic: dict[str, collections.Counter[str]] = {w: collections.Counter() for w in only}
    task_count: collections.Counter[str] = collections.Counter()
    try:
        runner.start()
        proc = psutil.Process(runner.d0.pid)
        if args.py_spy:  # the daemon is py-spy's child (cProfile runs it in its own process)
            proc = next(p for p in proc.children() if "handoffd" in " ".join(p.cmdline()))
        for _ in range(args.rounds):
            for w in only:
                seen = owner_messages(runner) if args.messages else {}
                before, threads = proc.cpu_times(), thread_cpu(proc.pid)
                result = getattr(runner, w.lower())()
                after, threads_after = proc.cpu_times(), thread_cpu(proc.pid)
                cpu = (after.user - before.user) + (after.system - before.system)
                tasks = result.get("tasks") or result["count"]  # W3: one task per run
                if args.messages:
                    task_count[w] += tasks
                    for key, n in owner_messages(runner).items():
                        traffic[w][key] += n - seen.get(key, 0)
                per_task[w].append(1e6 * cpu / tasks)
                for name, seconds in threads_after.items():
                    by_thread[w][name] += 1e6 * (seconds - threads.get(name, 0.0)) / tasks
                rates[w].append(result.get("tasks_per_s") or 1e3 / result["p50_ms"])
        if args.py_spy or args.cprofile:  # a graceful stop: the profile is written at the exit
            os.kill(proc.pid, signal.SIGTERM)
            with contextlib.suppress(Exception):
                runner.d0.process.wait(60)
    finally:
        runner.close()
    for w in only:
        cells = ", ".join(f"{us:.0f}" for us in per_task[w])
        tps = ", ".join(f"{r:,.0f}" for r in rates[w])
        print(f"{w}: owner daemon CPU per task {cells} us; tasks/s {tps}")
        threads = ", ".join(
            f"{name} {us / args.rounds:.0f}" for name, us in by_thread[w].most_common() if us > 0
        )
        print(f"    by thread (us per task, mean): {threads}")
        if args.messages and task_count[w]:
            moved = [(k, n / task_count[w]) for k, n in traffic[w].most_common() if n > 0]
            print("    owner messages per task: " + ", ".join(f"{k} {r:.3f}" for k, r in moved))
    if args.cprofile:
        import pstats

        deadline = time.monotonic() + 30
        while not os.path.exists(raw) and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = pstats.Stats(raw)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
    if args.py_spy:
        deadline = time.monotonic() + 30
        while not os.path.exists(raw) and time.monotonic() < deadline:
            time.sleep(0.1)
        summarize(read_raw(raw), args.top)
        if args.raw:
            print(f"\nraw samples: {raw}")


if __name__ == "__main__":
    main()
