"""The owner daemon's loop thread's CPU a W1 task by part, in real daemons (issue 13).

    cd /tmp && .venv/bin/python THIS_CHECKOUT/bench/owner_cpu_split.py [--rounds 5] [--top 40]

Starts the peer benchmark's 2 daemons of 1 cpu (``bench/_peers/handoffd_runner.py``, inside
``unshare -n``) with the owner (d0) under ``bench/_peers/owner_cpu.py``, runs W1 (10,000 no-ops)
twice to warm up, then ``--rounds`` more, and prints for each timed part and loop callback the
thread CPU a task (inclusive: a part's nested parts count in it too), its calls a task and the
CPU a call. Thread CPU, not wall time, so a loaded machine's waits for a CPU are not counted:
py-spy (``owner_breakdown.py --spy``) counts a runnable thread's wait in the call it waits in,
which at a load of 10 put ~10 % of the loop's samples in ``select``. Each timed call pays for
its timing (~1 us): read the parts against each other and against another run of this tool.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from owner_breakdown import runner_with, thread_cpu  # noqa: E402


def split(rounds: int, top: int) -> None:
    out = os.path.join(tempfile.mkdtemp(prefix="owner-cpu-"), "cpu.json")
    runner = runner_with([sys.executable, os.path.join(HERE, "_peers", "owner_cpu.py"), out])

    def read() -> dict[str, Any]:
        time.sleep(0.3)  # (the wrapper's writer: every 0.1 s)
        with open(out) as f:
            return json.load(f)  # type: ignore[no-any-return]

    try:
        pid = runner.d0.pid
        runner.w1()
        runner.w1()
        before, threads_before, tasks = read(), thread_cpu(pid), 0
        for _ in range(rounds):
            tasks += runner.w1()["tasks"]
        after, threads_after = read(), thread_cpu(pid)
    finally:
        runner.close()
    process = sum(threads_after[t] - threads_before.get(t, 0.0) for t in threads_after)
    print(f"owner daemon (timed): {1e6 * process / tasks:.1f} us CPU a W1 task, all threads")
    rows = []
    for label, seconds in after["cpu"].items():
        used = seconds - before["cpu"].get(label, 0.0)
        n = after["calls"].get(label, 0) - before["calls"].get(label, 0)
        if n:
            rows.append((used, n, label))
    turns = next((r for r in rows if r[2] == "(loop turns)"), None)
    if turns is not None:
        callbacks = sum(r[0] for r in rows if r[2].startswith("callback: "))
        own = turns[0] - callbacks
        rows.append((own, turns[1], "(the loop's own: turns less their callbacks)"))
    print(f"{'us a task':>10} {'calls a task':>13} {'us a call':>10}  part (inclusive)")
    for used, n, label in sorted(rows, reverse=True)[:top]:
        print(f"{1e6 * used / tasks:10.3f} {n / tasks:13.4f} {1e6 * used / n:10.1f}  {label}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    from _peers.common import reexec_in_netns

    reexec_in_netns()
    split(args.rounds, args.top)


if __name__ == "__main__":
    main()
