"""W5's instructions a task in real daemons, by process (issue 13, W5: 100 GPU tasks, cost
``{"cpu": 1, "gpu": 1}``, all run on the 1-gpu daemon d1, one at a time on its one GPU).

    cd /tmp/x && CHECKOUT/.venv/bin/python COPY/bench/w5_instr.py --which owner [--rounds 10]
    cd /tmp/x && CHECKOUT/.venv/bin/python COPY/bench/w5_instr.py --which gpu [--workers]

Starts the peer benchmark's 2 daemons, one of them under ``valgrind --tool=callgrind`` (``owner``:
d0, which owns every run; ``gpu``: d1, which runs W5's tasks; ``--workers``: d1's worker
processes too), both with ``--timings wan`` (a daemon under callgrind is ~30x slower: lan's
timings would make it DEAD). Runs W5 ``--warm`` times, zeroes the traced processes' counters
(``callgrind_control -z PID``: always with a PID, as one without reaches every callgrind on the
machine), runs W5 ``--rounds`` times and dumps them (``-d PID``); then zeroes them again, stays
idle as long as the rounds took and dumps again: the background (timers, gossip) a second.
Prints for each traced process its instructions a task, and the same less the background rate
times the rounds' wall time. Not load-proof to 0.1 % as an in-process count: how many tasks go in
one dispatch, report or pipe message depends on timing, so runs of one build differ by up to ~10 %
(take several); with ``--workers`` the daemon waits on slow workers and does more per task than
natively (its own figure then is not comparable with one without). Run it from a neutral
directory with a copy of bench/ (the client ships the modules under its working directory).
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in glob.glob(f"/proc/{p}/task/*/children"):
            try:
                with open(task) as f:
                    todo += [int(c) for c in f.read().split()]
            except OSError:
                pass
    return out


def _traced(pid: int) -> list[int]:
    """The processes of ``pid``'s tree that run under callgrind."""
    found = []
    for p in _descendants(pid):
        try:
            exe = os.readlink(
                f"/proc/{p}/exe"
            )  # valgrind's tool binary, e.g. callgrind-amd64-linux
        except OSError:
            continue
        if "callgrind" in exe:
            found.append(p)
    return found


def _control(flag: str, pids: list[int]) -> None:
    for p in pids:
        assert p > 0
        subprocess.run(["callgrind_control", flag, str(p)], check=True, capture_output=True)


def _total(outdir: str, pid: int, before: set[str]) -> int:
    """The instruction total of the newest dump of ``pid`` (a file not in ``before``)."""
    deadline = time.monotonic() + 60
    while True:
        new = set(glob.glob(os.path.join(outdir, f"cg.{pid}.*"))) - before
        if new:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no dump of {pid} in {outdir}")
        time.sleep(0.1)
    path = max(new, key=os.path.getmtime)
    time.sleep(0.5)  # (the dump is written at once; let it finish)
    total = 0
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
    return total


def _dumps(outdir: str, pids: list[int]) -> dict[int, int]:
    before = set(glob.glob(os.path.join(outdir, "cg.*.*")))
    _control("-d", pids)
    return {p: _total(outdir, p, before) for p in pids}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--which", choices=("owner", "gpu"), default="owner")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warm", type=int, default=3)
    parser.add_argument("--workers", action="store_true", help="trace the daemon's workers too")
    parser.add_argument("--keep", default="", help="keep the callgrind files in this directory")
    args = parser.parse_args()
    from _peers.common import Sizes, reexec_in_netns

    reexec_in_netns()
    from _peers.handoffd_runner import HandoffdRunner

    from handoffd import testing
    from handoffd.testing import DaemonCluster

    outdir = args.keep or tempfile.mkdtemp(prefix="w5instr.")
    os.makedirs(outdir, exist_ok=True)
    wrap = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={outdir}/cg.%p",
        # the daemon's workers (spawned interpreters) too, with --workers: else they run
        # natively (a worker under callgrind is ~30x slower, and its daemon then waits on it in
        # ways it does not natively: more loop turns, smaller batches)
        f"--trace-children={'yes' if args.workers else 'no'}",
    ]
    start = DaemonCluster.start
    want_gpu = 1 if args.which == "gpu" else 0

    def wrapped(self: DaemonCluster, *a: object, **kw: object) -> object:
        if kw.get("gpu") == want_gpu:
            kw["wrap"] = wrap
        # WAN timings on both: a daemon under callgrind answers probes ~30x slower, and lan's
        # ~1 s of deafness would make it DEAD
        kw["extra"] = [*(kw.get("extra") or []), "--timings", "wan"]  # type: ignore[misc]
        return start(self, *a, **kw)  # type: ignore[arg-type]

    setattr(DaemonCluster, "start", wrapped)  # noqa: B010
    wait = testing.wait_for

    def slow_wait(cond: object, timeout: float, *a: object, **kw: object) -> object:
        return wait(cond, timeout * 10, *a, **kw)  # type: ignore[arg-type]

    setattr(testing, "wait_for", slow_wait)  # noqa: B010 (a daemon under callgrind starts ~30x slower)
    runner = HandoffdRunner(Sizes(False))
    runner.start()
    daemon = runner.d0 if args.which == "owner" else runner.d1
    try:
        for _ in range(args.warm):
            runner.w5()
        pids = _traced(daemon.pid)
        _control("-z", pids)
        t0, tasks = time.perf_counter(), 0
        for _ in range(args.rounds):
            tasks += runner.w5()["tasks"]
        busy = time.perf_counter() - t0
        during = _dumps(outdir, pids)
        _control("-z", pids)
        t1 = time.perf_counter()
        time.sleep(busy)
        idle_s = time.perf_counter() - t1
        idle = _dumps(outdir, pids)
    finally:
        runner.close()
    print(f"W5 {args.which} daemon under callgrind: {tasks} tasks in {busy:.2f} s")
    for p in pids:
        rate = idle[p] / idle_s
        name = "daemon" if p == daemon.pid else f"worker {p}"
        print(
            f"  {name:14s} {during[p] / tasks:12,.0f} instr/task  "
            f"(less background {rate:,.0f}/s: {(during[p] - rate * busy) / tasks:12,.0f})"
        )


if __name__ == "__main__":
    main()
