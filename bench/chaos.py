"""The chaos suite run longer, by hand (issue 19): per seed, 3 daemons in network namespaces, a
client submitting layered DAGs from three threads while the nemesis kills -9 and restarts,
SIGTERMs and restarts, SIGSTOPs/SIGCONTs, cuts and heals, and saturates CPU, for ``--seconds``;
then the checker (tests/chaos/chaos_checker.py). Prints one row per seed and the totals: runs,
faults injected, outcomes, executions, re-executions (explained), daemon crashes, violations.
Needs root (network namespaces).

    sudo .venv/bin/python bench/chaos.py [--seeds 1-5] [--seconds 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(TESTS / "chaos"), str(TESTS / "daemons")]

from chaos_checker import check  # noqa: E402
from chaos_harness import Chaos  # noqa: E402
from netns import NetnsLab, checked_lab  # noqa: E402


def seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1-5", help="a seed or a range, e.g. 1-5")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    reason = NetnsLab.unavailable()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    header = (
        f"{'seed':>4} {'runs':>5} {'faults':<38} {'outcomes':<34} {'execs':>6} "
        f"{'re-exec':>8} {'crashes':>7} {'violations':>10}"
    )
    print(header, flush=True)
    totals: Counter[str] = Counter()
    faults_total: Counter[str] = Counter()
    outcomes_total: Counter[str] = Counter()
    failed = 0
    for seed in seeds(args.seeds):
        with tempfile.TemporaryDirectory(prefix="handoffd-chaos-") as workdir:
            with checked_lab(4) as lab:
                result = Chaos(lab, workdir, seed=seed, duration=args.seconds).run()
        report = check(result.runs, result.executions, result.faults, result.daemons)
        t = report.table
        faults = ",".join(f"{k}:{v}" for k, v in sorted(t["faults"].items()))
        outcomes = ",".join(f"{k}:{v}" for k, v in sorted(t["outcomes"].items()))
        re_exec = f"{t['re_executions']}({t['explained']})"
        print(
            f"{seed:>4} {t['runs']:>5} {faults:<38} {outcomes:<34} {t['executions']:>6} "
            f"{re_exec:>8} {t['daemon_crashes']:>7} {len(report.violations):>10}",
            flush=True,
        )
        for v in report.violations[:10]:
            print(f"     ! {v}", flush=True)
        failed += not report.ok
        totals.update(
            runs=t["runs"],
            executions=t["executions"],
            re_executions=t["re_executions"],
            explained=t["explained"],
            crashes=t["daemon_crashes"],
            violations=len(report.violations),
        )
        faults_total.update(t["faults"])
        outcomes_total.update(t["outcomes"])
    print(f"\ntotals: {dict(totals)}")
    print(f"faults injected: {dict(faults_total)}")
    print(f"outcomes: {dict(outcomes_total)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
