"""CPU per task of W1 (10,000 no-op tasks in one DAG) and W2 (the layered DAG), by process (issue 13).

    cd /tmp && .venv/bin/python THIS_CHECKOUT/bench/cpu_per_task.py [--rounds 5] [--only W1,W2]

The companion of ``cpu_per_call.py`` (W3) for the many-small-tasks workloads: starts the peer
benchmark's 2 daemons, runs each workload once to warm up, then ``--rounds`` more between two
readings of each process's user+system CPU (the client, each daemon, each daemon's workers), and
prints microseconds per task by process with the tasks/s of each round. Run it from a neutral
directory for an A/B: the client ships the modules under its working directory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cpu_per_call import _reading  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="W1,W2")
    parser.add_argument("--owner-profile", default="", help="cProfile the owner daemon into FILE")
    args = parser.parse_args()
    from _peers.common import Sizes, reexec_in_netns

    reexec_in_netns()
    from _peers.handoffd_runner import HandoffdRunner

    runner = HandoffdRunner(Sizes(False))
    if args.owner_profile:  # (HANDOFFD_PROFILE_CPU=1: its loop thread's CPU time)
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cpu_per_call.py")
        runner.owner_wrap = [sys.executable, here, "--wrap", args.owner_profile, "--"]
    runner.start()
    daemons = {"d0 (owner)": runner.d0.pid, "d1": runner.d1.pid}
    load0 = os.getloadavg()[0]
    try:
        for name in args.only.split(","):
            work = getattr(runner, name.lower())
            work()  # warm-up
            before = _reading(daemons)
            rates, tasks = [], 0
            for _ in range(args.rounds):
                result = work()
                rates.append(result["tasks_per_s"])
                tasks += result["tasks"]
            after = _reading(daemons)
            print(f"{name}: {tasks} tasks, load {load0:.1f}; CPU us per task:")
            for key in before:
                print(f"  {key:18s} {(after[key][0] - before[key][0]) / tasks * 1e6:8.1f}")
            print("  tasks/s " + " ".join(f"{r:,.0f}" for r in rates))
        if args.owner_profile:  # the wrapper writes its file on SIGUSR1
            import signal

            os.kill(runner.d0.pid, signal.SIGUSR1)
            deadline = time.monotonic() + 30
            while not os.path.exists(args.owner_profile) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1)
    finally:
        runner.close()


if __name__ == "__main__":
    main()
