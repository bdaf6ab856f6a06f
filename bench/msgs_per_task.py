"""Messages, opaque frames and system calls per task between the daemons of W1 and W2 (issue 13).

    cd /tmp && .venv/bin/python THIS_CHECKOUT/bench/msgs_per_task.py [--rounds 3] [--only W1,W2]
        [--strace]

Starts the peer benchmark's 2 daemons (as ``cpu_per_task.py``), runs each workload once to warm
up, then ``--rounds`` more between two readings of each daemon's codec counters (``GetMetrics``:
messages encoded and decoded per type) and prints them per task. ``--strace``: the rounds run
with ``strace -c -f`` attached to each daemon (its threads: the loop, the ZeroMQ I/O threads,
intake), and the system calls per task are printed by name. Run it from a neutral directory for
an A/B: the client ships the modules under its working directory.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _metrics(client: Any, address: str) -> dict[str, Any]:
    import msgpack

    from handoffd.protocol.messages_observability import GetMetrics

    reply = client._ask_node(address, lambda rid: GetMetrics(rid))
    return msgpack.unpackb(reply.snapshot, raw=False, strict_map_key=False)  # type: ignore[no-any-return]


def _moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)
    }


def _threads(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) per thread name of ``pid`` (threads of one name summed)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _strace_start(pid: int, out: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["strace", "-c", "-f", "-q", "-o", out, "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached to every thread before the rounds start
    return proc


def _strace_table(out: str) -> dict[str, int]:
    calls: dict[str, int] = {}
    with open(out) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                try:
                    calls[parts[-1]] = int(parts[3])
                except ValueError:
                    continue
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="W1,W2")
    parser.add_argument("--strace", action="store_true")
    parser.add_argument(
        "--spy", default="", help="py-spy (raw, --native, idle excluded) each daemon into PREFIX-*"
    )
    parser.add_argument(
        "--idle", type=float, default=0.0, help="first, each thread's CPU over this many idle s"
    )
    args = parser.parse_args()
    from _peers.common import Sizes, reexec_in_netns

    reexec_in_netns()
    from _peers.handoffd_runner import HandoffdRunner

    runner = HandoffdRunner(Sizes(False))
    runner.start()
    daemons = {"d0 (owner)": runner.d0, "d1": runner.d1}
    try:
        if args.idle:
            before_idle = {k: _threads(d.pid) for k, d in daemons.items()}
            time.sleep(args.idle)
            for k, d in daemons.items():
                moved = {t: v - before_idle[k].get(t, 0.0) for t, v in _threads(d.pid).items()}
                detail = ", ".join(f"{t} {v / args.idle * 1e3:.1f}" for t, v in moved.items() if v)
                print(f"idle {k}: CPU ms per s: {detail}")
        for name in args.only.split(","):
            work = getattr(runner, name.lower())
            work()  # warm-up
            before = {k: _metrics(runner.client, d.address) for k, d in daemons.items()}
            threads0 = {k: _threads(d.pid) for k, d in daemons.items()}
            tracers = {}
            if args.strace:
                for k, d in daemons.items():
                    out = f"/tmp/strace-{os.getpid()}-{d.pid}.txt"
                    tracers[k] = (_strace_start(d.pid, out), out)
            spies = []
            if args.spy:
                spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
                for k, d in daemons.items():
                    out = f"{args.spy}-{name}-{k.split()[0]}.txt"
                    command = [spy, "record", "--native", "-r", "500", "-f", "raw", "-o", out]
                    spies.append(
                        subprocess.Popen(
                            [*command, "-p", str(d.pid)],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    )
                time.sleep(1.0)
            tasks = 0
            for _ in range(args.rounds):
                tasks += work()["tasks"]
            for proc in spies:
                proc.send_signal(signal.SIGINT)
                proc.wait(60)
            syscalls = {}
            for k, (proc, out) in tracers.items():
                proc.send_signal(signal.SIGINT)
                proc.wait(30)
                syscalls[k] = _strace_table(out)
                os.unlink(out)
            threads1 = {k: _threads(d.pid) for k, d in daemons.items()}
            after = {k: _metrics(runner.client, d.address) for k, d in daemons.items()}
            print(f"{name}: {tasks} tasks, load {os.getloadavg()[0]:.1f}; per task:")
            for k in daemons:
                for way in ("messages_out", "messages_in"):
                    moved = _moved(before[k][way], after[k][way])
                    total = sum(moved.values())
                    detail = ", ".join(
                        f"{t} {n / tasks:.3f}"
                        for t, n in sorted(moved.items(), key=lambda x: -x[1])
                    )
                    print(f"  {k:11s} {way:12s} {total / tasks:6.3f}  ({detail})")
                moved_cpu = {t: v - threads0[k].get(t, 0.0) for t, v in threads1[k].items()}
                detail = ", ".join(
                    f"{t} {v / tasks * 1e6:.1f}"
                    for t, v in sorted(moved_cpu.items(), key=lambda x: -x[1])
                    if v > 0
                )
                total = sum(moved_cpu.values())
                print(f"  {k:11s} {'cpu us':12s} {total / tasks * 1e6:6.1f}  ({detail})")
                if k in syscalls:
                    calls = syscalls[k]
                    total = sum(calls.values())
                    top = sorted(calls.items(), key=lambda x: -x[1])[:10]
                    detail = ", ".join(f"{c} {n / tasks:.2f}" for c, n in top)
                    print(f"  {k:11s} {'syscalls':12s} {total / tasks:6.2f}  ({detail})")
    finally:
        runner.close()


if __name__ == "__main__":
    main()
