"""A fresh cluster's first W1 round against its next ones, by process (issue 13, session 25).

    .venv/bin/python THIS_CHECKOUT/bench/w1_first_round.py [--clusters 3] [--rounds 5]

The peer bench measures W1 once, on a cluster just started (``bench_vs_peers.py``). This starts
``--clusters`` fresh clusters of the bench's runner (``bench/_peers/handoffd_runner.py``: 2 daemons
of 1 cpu) one after another and runs ``--rounds`` W1 rounds on each, reading around each round:
its wall time (tasks/s), the CPU of each process (schedstat, nanoseconds: the client, each
daemon, each daemon's workers together), their minor page faults (``/proc/PID/stat``; a
daemon's also split into its loop thread's, the main one, and its other threads' together: the
upload's build, libzmq's I/O), and in the client the collector's passes by generation and their
time (``gc.callbacks``). Prints per round number the median over the clusters, then round 1
minus the median of the others; then the owner's (d0's) resident and proportional set size in
MiB (``/proc/PID/smaps_rollup``) after start-up and after the rounds, medians.

The client ships the modules imported from under its working directory with each run
(``handoffd.packages``): run from the checkout's root, this script's own modules (``bench/``)
are shipped, as ``make bench-peers`` ships the bench's; from a neutral directory (``cd /tmp``)
nothing is. ``--label`` names the case in the output.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cpu_per_call import _children, _cpu  # noqa: E402


def _minflt(pid: int, tid: int | None = None) -> int:
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path) as f:
            return int(f.read().rpartition(")")[2].split()[7])
    except OSError:
        return 0


def _sizes(pid: int) -> tuple[float, float]:
    """The resident and proportional set size of ``pid`` in MiB (0 if unreadable)."""
    rss = pss = 0.0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1]) / 1024.0
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return rss, pss


class GcWatch:
    """The client's collections by generation and their seconds, while installed."""

    def __init__(self) -> None:
        self.passes = [0, 0, 0]
        self.seconds = 0.0
        self._t0 = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._t0
            self.passes[info["generation"]] += 1

    def close(self) -> None:
        gc.callbacks.remove(self._cb)


def reading(daemons: dict[str, int], watch: GcWatch) -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "client cpu ms": (usage.ru_utime + usage.ru_stime) * 1000.0,
        "client minflt": float(usage.ru_minflt),
        "client gc0": float(watch.passes[0]),
        "client gc1": float(watch.passes[1]),
        "client gc2": float(watch.passes[2]),
        "client gc ms": watch.seconds * 1000.0,
    }
    for name, pid in daemons.items():
        kids = _children(pid)
        out[f"{name} cpu ms"] = _cpu(pid)[0] * 1000.0
        out[f"{name} minflt"] = float(_minflt(pid))
        out[f"{name} loop minflt"] = float(_minflt(pid, pid))  # the main thread runs the loop
        out[f"{name} workers cpu ms"] = sum(_cpu(k)[0] for k in kids) * 1000.0
        out[f"{name} workers minflt"] = float(sum(_minflt(k) for k in kids))
    return out


def one_cluster(rounds: int, sizes: list[tuple[float, ...]]) -> list[dict[str, float]]:
    from _peers.common import Sizes
    from _peers.handoffd_runner import HandoffdRunner

    runner = HandoffdRunner(Sizes(False))
    runner.start()
    watch = GcWatch()
    out = []
    try:
        daemons = {"d0": runner.d0.pid, "d1": runner.d1.pid}
        started = _sizes(runner.d0.pid)
        for _ in range(rounds):
            before = reading(daemons, watch)
            result = runner.w1()
            after = reading(daemons, watch)
            row = {k: after[k] - before[k] for k in after}
            for name in daemons:
                row[f"{name} threads minflt"] = row[f"{name} minflt"] - row[f"{name} loop minflt"]
            row["tasks/s"] = result["tasks_per_s"]
            out.append(row)
        sizes.append(started + _sizes(runner.d0.pid))
    finally:
        watch.close()
        runner.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clusters", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--label", default=os.getcwd())
    args = ap.parse_args()
    sizes: list[tuple[float, ...]] = []
    runs = [one_cluster(args.rounds, sizes) for _ in range(args.clusters)]
    keys = list(runs[0][0])
    print(
        f"{args.label}: {args.clusters} clusters x {args.rounds} rounds, load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'':24}"
        + "".join(f"{'round ' + str(r + 1):>11}" for r in range(args.rounds))
        + "   1 - rest"
    )
    for key in keys:
        medians = [statistics.median(run[r][key] for run in runs) for r in range(args.rounds)]
        rest = statistics.median(medians[1:]) if args.rounds > 1 else 0.0
        print(f"{key:24}" + "".join(f"{v:11.1f}" for v in medians) + f"{medians[0] - rest:11.1f}")
    rss0, pss0, rss1, pss1 = (statistics.median(s[i] for s in sizes) for i in range(4))
    print(
        f"d0 MiB after start-up: rss {rss0:.1f} pss {pss0:.1f}; "
        f"after {args.rounds} rounds: rss {rss1:.1f} pss {pss1:.1f}"
    )


if __name__ == "__main__":
    main()
