"""Where the non-owner side of a W1 task goes in real daemons: d1, both daemons' workers (issue 13).

    cd /tmp && .venv/bin/python THIS_CHECKOUT/bench/peer_breakdown.py [--rounds 4] [--spy]

The companion of ``owner_breakdown.py`` for everything but the owner daemon: starts the peer
benchmark's 2 daemons of 1 cpu (``bench/_peers/handoffd_runner.py``, inside ``unshare -n``), runs
W1 (10,000 no-ops) once to warm up, then ``--rounds`` more, and prints:

- how many of a round's tasks ran on d1 (one extra round by ``submit`` and ``placement()``);
- **threads**: d1's CPU (user + system) a W1 task of the round by thread (``/proc/PID/task``;
  names from ``py-spy dump``), and each daemon's worker processes' CPU a task;
- with ``--spy``: ``py-spy record --gil --native`` on d1 and, in another cluster, on d1's worker and
  on d0's worker, during the rounds; the samples by layer (``owner_breakdown.LAYERS`` plus the
  standby's replication) and by innermost function (top ``--top``).
"""

from __future__ import annotations

import argparse
import collections
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

from cpu_per_call import _children, _cpu  # noqa: E402
from owner_breakdown import layer_of, runner_with, thread_cpu, thread_names  # noqa: E402
from profile_daemon import read_raw  # noqa: E402


def on_d1(runner: Any) -> tuple[int, int]:
    """(tasks of one W1 round placed on d1, tasks of the round)."""
    from _peers.common import noop

    import handoffd

    n = runner.sizes.w1
    dag = handoffd.DAG()
    for i in range(n):
        dag.add_function(handoffd.Function(id=f"n{i}", code=noop, extra_args=[i]))
    run = runner.client.submit(dag)
    run.wait(120)
    placed = run.placement()
    d1_name = next(
        name for name, info in runner.client.nodes().items() if info.address == runner.d1.address
    )
    return sum(1 for node in placed.values() if node == d1_name), n


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def record(spy: str, pid: int, out: str, rate: int) -> subprocess.Popen[bytes]:
    cmd = [spy, "record", "--pid", str(pid), "--gil", "--native", "--format", "raw"]
    cmd += ["-r", str(rate), "-o", out]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def plain(rounds: int, spy: str | None) -> None:
    runner = runner_with(None)
    try:
        runner.w1()  # warm-up
        d1, n = on_d1(runner)
        print(f"tasks on d1: {d1} of {n} ({100 * d1 / n:.0f} %)")
        pid = runner.d1.pid
        kids = {"d0 workers": _children(runner.d0.pid), "d1 workers": _children(pid)}
        before_k = {k: sum(_cpu(p)[0] for p in v) for k, v in kids.items()}
        before, tasks, rates = thread_cpu(pid), 0, []
        for _ in range(rounds):
            result = runner.w1()
            tasks += result["tasks"]
            rates.append(result["tasks_per_s"])
        after = thread_cpu(pid)
        after_k = {k: sum(_cpu(p)[0] for p in v) for k, v in kids.items()}
        names = thread_names(pid, spy)
    finally:
        runner.close()
    used = {t: after[t] - before.get(t, 0.0) for t in after}
    total = sum(used.values())
    print(f"d1: {1e6 * total / tasks:.1f} us CPU a W1 task, tasks/s ", end="")
    print(", ".join(f"{r:,.0f}" for r in rates))
    for tid, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
        if seconds > 0:
            print(f"  {1e6 * seconds / tasks:6.1f} us  {names.get(tid, '?')} ({tid})")
    for key in kids:
        print(f"{key}: {1e6 * (after_k[key] - before_k[key]) / tasks:.1f} us a W1 task")


def spied(rounds: int, spy: str, rate: int, top: int) -> None:
    tmp = tempfile.mkdtemp(prefix="peer-spy-")
    runner = runner_with(None)
    try:
        runner.w1()
        targets = {"d1": runner.d1.pid}
        for name, daemon in (("d1", runner.d1), ("d0", runner.d0)):
            workers = [p for p in _children(daemon.pid) if "handoffd-worker" in cmdline(p)]
            targets[f"{name} worker"] = workers[0]
        recorders = {
            k: (
                record(spy, pid, os.path.join(tmp, f"{k}.raw"), rate),
                os.path.join(tmp, f"{k}.raw"),
            )
            for k, pid in targets.items()
        }
        time.sleep(1.0)
        for _ in range(rounds):
            runner.w1()
        for proc, _ in recorders.values():
            proc.send_signal(signal.SIGINT)
        for proc, _ in recorders.values():
            proc.wait(60)
    finally:
        runner.close()
    for name, (_, raw) in recorders.items():
        deadline = time.monotonic() + 30
        while not os.path.exists(raw) and time.monotonic() < deadline:
            time.sleep(0.1)
        samples = read_raw(raw)
        total = sum(c for _, c in samples) or 1
        parts: collections.Counter[str] = collections.Counter()
        leaves: collections.Counter[str] = collections.Counter()
        for frames, count in samples:
            parts[layer_of(frames)] += count
            leaves[frames[-1] if frames else "?"] += count
        print(f"\n{name}: {total} samples (py-spy --gil --native); by layer:")
        for label, count in parts.most_common():
            print(f"  {100 * count / total:5.1f} %  {label}")
        print(f"{name}: innermost function (top {top}):")
        for label, count in leaves.most_common(top):
            print(f"  {100 * count / total:5.1f} %  {label}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--spy", action="store_true", help="py-spy d1 and the workers")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    from _peers.common import reexec_in_netns

    reexec_in_netns()
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    spy = spy if os.path.exists(spy) else None
    plain(args.rounds, spy)
    if args.spy and spy:
        spied(args.rounds, spy, args.rate, args.top)


if __name__ == "__main__":
    main()
