"""An idle daemon's CPU and wake-ups a second, by thread (issue 13, session 25).

    cd /tmp && .venv/bin/python THIS_CHECKOUT/bench/idle_wakeups.py [--seconds 5] [--settle 3]
        [--w1]

Starts the peer benchmark's 2 daemons of 1 cpu (``bench/_peers/handoffd_runner.py``), runs one
W1 round first with ``--w1`` (a daemon that has worked, as in the bench), waits ``--settle``
seconds, then reads each daemon's threads over ``--seconds``: CPU (schedstat, nanoseconds) and
voluntary context switches (each is a wait ended: a wake-up). Prints a line per daemon (CPU ms a
second, wake-ups a second, then its workers' together) and one per thread with any wake-up.
Run it with another checkout's venv python for an A/B (``_peers`` is this checkout's).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cpu_per_call import _children  # noqa: E402


def threads(pid: int) -> dict[int, tuple[str, float, int]]:
    """{tid: (name, CPU seconds, voluntary context switches)} of ``pid``'s threads."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid}"
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"{base}/comm") as f:
                name = f.read().strip()
            with open(f"{base}/schedstat") as f:
                cpu = int(f.read().split()[0]) / 1e9
            with open(f"{base}/status") as f:
                switches = next(
                    int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt")
                )
            out[int(tid)] = (name, cpu, switches)
    return out


def sample(pids: dict[str, int], seconds: float) -> None:
    procs = {label: [pid, *_children(pid)] for label, pid in pids.items()}
    before = {p: threads(p) for ps in procs.values() for p in ps}
    time.sleep(seconds)
    after = {p: threads(p) for ps in procs.values() for p in ps}
    for label, ps in procs.items():
        rows = []
        for p in ps:
            for tid, (name, cpu, sw) in after[p].items():
                name0, cpu0, sw0 = before[p].get(tid, (name, 0.0, 0))
                rows.append((p, name, (cpu - cpu0) / seconds * 1000.0, (sw - sw0) / seconds))
        own = [r for r in rows if r[0] == ps[0]]
        kids = [r for r in rows if r[0] != ps[0]]
        print(
            f"{label} (pid {ps[0]}): {sum(r[2] for r in own):.2f} ms CPU/s, "
            f"{sum(r[3] for r in own):.1f} wake-ups/s; its {len(ps) - 1} workers "
            f"{sum(r[2] for r in kids):.2f} ms/s, {sum(r[3] for r in kids):.1f} wake-ups/s"
        )
        for _pid, name, ms, wakes in sorted(own, key=lambda r: -r[3]):
            if wakes > 0:
                print(f"    {name:<20} {ms:7.2f} ms/s {wakes:7.1f} wake-ups/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--w1", action="store_true", help="run one W1 round first")
    args = ap.parse_args()
    from _peers.common import Sizes
    from _peers.handoffd_runner import HandoffdRunner

    runner = HandoffdRunner(Sizes(False))
    runner.start()
    try:
        if args.w1:
            print(f"W1: {runner.w1()['tasks_per_s']:.0f} tasks/s")
        time.sleep(args.settle)
        sample({"d0": runner.d0.pid, "d1": runner.d1.pid}, args.seconds)
    finally:
        runner.close()


if __name__ == "__main__":
    main()
