"""The owner daemon's instructions in a fresh cluster's first W1 round against its second.

    cd /tmp && .venv/bin/python THIS_CHECKOUT/bench/w1_first_callgrind.py [--tasks 2000] [--top 40]

Starts the peer bench's handoffd cluster (``bench/_peers/handoffd_runner.py``) with the owner (d0)
under ``valgrind --tool=callgrind`` (``PYTHONHASHSEED=0``, both daemons on the ``loaded`` timings so
the slowed owner is not suspected), dumps d0's counts after start-up (``callgrind_control -d``),
after W1 round 1 and after round 2, and prints each round's total and the functions whose
inclusive instructions in round 1 exceed round 2's by the most: what the first run after start
pays that the next one does not (imports, a pool's thread, caches built at first use). The
rounds' batching follows timing, so the totals differ by a few per cent either way; a function
that runs only in round 1 is the finding, not the totals' difference.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _inclusive(path: str) -> tuple[int, dict[str, int]]:
    """(total Ir, {function: inclusive Ir}) of one callgrind dump."""
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total, funcs = 0, {}
    for line in out.splitlines():
        line = line.strip()
        if line.endswith("PROGRAM TOTALS"):
            total = int(line.split()[0].replace(",", ""))
            continue
        if "=>" in line:  # a call line: its callee's name carries the call count
            continue
        head, _, name = line.partition(" ")
        if not head or not head[0].isdigit() or ":" not in name:
            continue
        try:
            count = int(head.replace(",", ""))
        except ValueError:
            continue
        name = name.strip()
        if name.startswith("("):
            name = name.partition(")")[2].strip()
        funcs[name] = max(count, funcs.get(name, 0))
    return total, funcs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    out_dir = tempfile.mkdtemp(prefix="w1cg-")
    os.environ["PYTHONHASHSEED"] = "0"
    os.environ["HANDOFFD_TIMINGS"] = "loaded"
    from _peers.common import Sizes, settle
    from _peers.handoffd_runner import HandoffdRunner

    import handoffd.testing

    waits = handoffd.testing.wait_for

    def patient(cond, timeout, *a, **kw):  # the owner starts under valgrind: give it 10x longer
        return waits(cond, timeout * 10, *a, **kw)

    handoffd.testing.wait_for = patient
    runner = HandoffdRunner(Sizes(False))
    runner.sizes.w1 = args.tasks
    runner.owner_wrap = [
        "valgrind",
        "--tool=callgrind",
        "--dump-instr=no",
        "--instr-atstart=no",  # start-up uncounted (and quicker), switched on once settled
        f"--callgrind-out-file={out_dir}/cg.%p",
    ]
    runner.start()
    pid = runner.d0.pid
    try:
        settle(os.getpid())

        def dump() -> None:
            subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)

        subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True, check=True)
        dump()  # nothing counted yet
        for r in range(2):
            result = runner.w1()
            print(f"round {r + 1}: {result['tasks_per_s']:,.0f} tasks/s (owner under callgrind)")
            dump()
    finally:
        runner.close()
    dumps = sorted(glob.glob(f"{out_dir}/cg.{pid}.*"), key=lambda p: int(p.rpartition(".")[2]))
    dumps = [p for p in dumps if not p.endswith(f".{pid}")]  # the exit's own dump last, dropped
    if len(dumps) < 3:
        sys.exit(f"expected 3 dumps in {out_dir}, found {dumps}")
    (t1, f1), (t2, f2) = _inclusive(dumps[1]), _inclusive(dumps[2])
    n = args.tasks
    print(f"dumps: {dumps}")
    print(f"d0 total: round 1 {t1:,} ({t1 / n:,.0f} a task), round 2 {t2:,} ({t2 / n:,.0f} a task)")
    gaps = sorted(((f1.get(k, 0) - f2.get(k, 0), k) for k in f1), reverse=True)
    print(f"largest round 1 - round 2 (inclusive Ir), dumps in {out_dir}:")
    for gap, name in gaps[: args.top]:
        print(f"  {gap:>14,}  r1 {f1.get(name, 0):>14,}  r2 {f2.get(name, 0):>14,}  {name}")


if __name__ == "__main__":
    main()
