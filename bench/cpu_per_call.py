"""CPU per W3 round trip: client + owner daemon + its workers + the other daemon (issue 13, W3).

    .venv/bin/python bench/cpu_per_call.py [--runs 2000] [--warm 300]
    cd OTHER_CHECKOUT && .venv/bin/python THIS_CHECKOUT/bench/cpu_per_call.py   # another build

Wall time on a shared 2-core machine swings with everyone else's load; the CPU each process spends
per round trip does much less, so this is the figure to compare builds with (alternating A/B).
Starts the peer benchmark's 2 daemons (``bench/_peers/handoffd_runner.py``, inside ``unshare -n``),
runs ``--warm`` one-task ``execute`` calls as W3 does, then ``--runs`` more between two readings of
each process's user+system CPU (``/proc/<pid>/stat`` of the daemons and every child of theirs,
``getrusage`` of this process) and voluntary context switches, and prints them per call, with the
wall p50/p99 of the measured calls.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(p) for p in f.read().split()]
    except OSError:
        return out
    for kid in kids:
        out.append(kid)
        out.extend(_children(kid))
    return out


def _cpu(pid: int) -> tuple[float, int]:
    """(seconds on a CPU, voluntary context switches) over the threads of one process. The
    seconds from schedstat (nanoseconds) where there is one: /proc/PID/stat counts 10 ms ticks,
    5 us a call over 2,000 calls, as coarse as a worker's change."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        switches = ns = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        switches += int(line.split()[1])
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    ns += int(f.read().split()[0])
            except OSError:
                ns = -1 << 62  # (no schedstat: the ticks below)
    except OSError:
        return 0.0, 0
    if ns >= 0:
        return ns / 1e9, switches
    return (int(fields[11]) + int(fields[12])) / _TICK, switches


def _reading(daemons: dict[str, int]) -> dict[str, tuple[float, int]]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {"client": (usage.ru_utime + usage.ru_stime, usage.ru_nvcsw)}
    for name, pid in daemons.items():
        out[name] = _cpu(pid)
        kids = [_cpu(k) for k in _children(pid)]
        out[name + " workers"] = (sum(c for c, _ in kids), sum(s for _, s in kids))
    return out


def _sched(pid: int) -> tuple[int, int]:
    """(CPU migrations, involuntary switches) over the threads of ``pid`` (/proc/PID/task/*/sched)."""
    moved = forced = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/sched") as f:
                for line in f:
                    if line.startswith("se.nr_migrations"):
                        moved += int(line.split(":")[1])
                    elif line.startswith("nr_involuntary_switches"):
                        forced += int(line.split(":")[1])
    except OSError:
        pass
    return moved, forced


def _sched_reading(daemons: dict[str, int]) -> dict[str, tuple[int, int]]:
    out = {"client": _sched(os.getpid())}
    for name, pid in daemons.items():
        out[name] = _sched(pid)
        kids = [_sched(k) for k in _children(pid)]
        out[name + " workers"] = (sum(m for m, _ in kids), sum(f for _, f in kids))
    return out


def wrap_mode(out: str, command: list[str]) -> None:
    """Run ``python -m MODULE ARGS`` (the owner daemon) under cProfile, stats written at exit."""
    import cProfile
    import runpy
    import signal

    # HANDOFFD_PROFILE_CPU=1: CPU time of the loop thread (time.thread_time) instead of wall time,
    # so a write the woken worker preempts counts only the write's own CPU
    cpu = os.environ.get("HANDOFFD_PROFILE_CPU") == "1"
    profile = cProfile.Profile(time.thread_time) if cpu else cProfile.Profile()

    def dump(*_: Any) -> None:
        profile.disable()
        profile.dump_stats(out)

    # SIGUSR1 from the bench once the calls are done (the daemon's own SIGTERM handling may end
    # the process without running atexit hooks)
    signal.signal(signal.SIGUSR1, dump)
    sys.argv = [command[2], *command[3:]]
    profile.enable()
    runpy.run_module(command[2], run_name="__main__", alter_sys=True)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--wrap":
        wrap_mode(sys.argv[2], sys.argv[4:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--warm", type=int, default=300)
    parser.add_argument("--json", default="", help="append the figures to this file (one line)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle reading")
    parser.add_argument("--profile", action="store_true", help="cProfile the client's calls")
    parser.add_argument("--sort", default="tottime", help="--profile's order (pstats key)")
    parser.add_argument("--top", type=int, default=30, help="--profile's lines")
    parser.add_argument(
        "--stamps",
        action="store_true",
        help="split the client's wall time per call (before the send, the wait, after the "
        "reply) and count replies already readable when it came to wait (bench/_client_stamps)",
    )
    parser.add_argument("--owner-profile", default="", help="cProfile the owner daemon into FILE")
    parser.add_argument("--owner-wrap", default="", help="run the owner daemon under this command")
    parser.add_argument(
        "--strace",
        default="",
        help="count the owner's system calls over the measured calls into FILE (strace -c -f; "
        "the tracing slows the owner: its CPU figure is not comparable then)",
    )
    parser.add_argument(
        "--turns",
        default="",
        help="count the owner's loop turns and callbacks over the measured calls into FILE "
        "(JSON, bench/loop_turns.py), and print them per call",
    )
    parser.add_argument(
        "--sched",
        action="store_true",
        help="print each process's CPU migrations and involuntary switches per call "
        "(/proc/PID/task/*/sched; whether the path bounces between CPUs)",
    )
    parser.add_argument(
        "--no-ship",
        action="store_true",
        help="ship no code package (the workers import bench/_peers from PYTHONPATH): what "
        "shipping an unchanged package costs per call",
    )
    args = parser.parse_args()
    from _peers.common import Sizes, latency_result, noop, reexec_in_netns

    if args.no_ship:  # before the daemons start: they and their workers inherit it
        here = os.path.dirname(os.path.abspath(__file__))
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [here, os.environ.get("PYTHONPATH")])
        )
    reexec_in_netns()
    from _peers.handoffd_runner import HandoffdRunner

    import handoffd

    if args.no_ship:
        from handoffd import packages

        packages.local_modules_package = lambda roots, cwd=False: None
        packages.cwd_package = lambda cwd: None  # (client_one's)
    runner = HandoffdRunner(Sizes(True))
    if args.owner_profile:
        here = os.path.abspath(__file__)
        out = os.path.abspath(args.owner_profile)
        runner.owner_wrap = [sys.executable, here, "--wrap", out, "--"]
    if args.turns:
        if os.path.exists(args.turns):
            os.remove(args.turns)  # (the end waits for the wrapper's new one)
        turns = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loop_turns.py")
        runner.owner_wrap = [sys.executable, turns, os.path.abspath(args.turns), "--"]
    if args.owner_wrap:
        import shlex

        runner.owner_wrap = [*shlex.split(args.owner_wrap), "--"]
    runner.start()
    daemons = {"d0 (owner)": runner.d0.pid, "d1": runner.d1.pid}
    client: Any = runner.client
    stamps = None
    if args.stamps:
        from _client_stamps import ClientStamps

        stamps = ClientStamps()

    def call(i: int) -> float:
        dag = handoffd.DAG().add_function(handoffd.Function(id="one", code=noop, extra_args=[i]))
        t0 = time.perf_counter()
        if stamps is None:
            assert client.execute(dag) == {"one": i}
        else:
            assert stamps.call(lambda: client.execute(dag)) == {"one": i}
        return time.perf_counter() - t0

    try:
        for i in range(args.warm):
            call(i)
        if stamps is not None:
            stamps.reset()
        # What the processes spend with no call running (membership, timers), per second: it is
        # taken off the calls' figures in proportion to their wall time.
        idle0 = _reading(daemons)
        time.sleep(args.idle)
        idle1 = _reading(daemons)
        tracer = None
        if args.strace:  # attached for the measured calls only (-c: counts, not a log)
            import subprocess

            cmd = ["strace", "-c", "-f", "-o", args.strace, "-p", str(runner.d0.pid)]
            tracer = subprocess.Popen(cmd, stderr=subprocess.PIPE)
            assert tracer.stderr is not None
            tracer.stderr.readline()  # "strace: Process N attached": tracing from here
            time.sleep(0.5)
        if args.turns:  # the counts start here (SIGUSR1 at the end writes them)
            import signal

            os.kill(runner.d0.pid, signal.SIGUSR2)
            time.sleep(0.2)
        sched0 = _sched_reading(daemons) if args.sched else {}
        before = _reading(daemons)
        start = time.perf_counter()
        load0 = os.getloadavg()[0]
        if args.profile:
            import cProfile
            import pstats

            timer = time.thread_time if os.environ.get("HANDOFFD_PROFILE_CPU") == "1" else None
            profile = cProfile.Profile(timer) if timer else cProfile.Profile()
            samples = profile.runcall(lambda: [call(i) for i in range(args.runs)])
            after = _reading(daemons)
            elapsed = time.perf_counter() - start
            pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
        else:
            samples = [call(i) for i in range(args.runs)]
            after = _reading(daemons)
            elapsed = time.perf_counter() - start
        sched1 = _sched_reading(daemons) if args.sched else {}
        if tracer is not None:
            import signal

            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=30)
        if args.owner_profile or args.owner_wrap or args.turns:  # the wrapper writes on SIGUSR1
            import signal

            os.kill(runner.d0.pid, signal.SIGUSR1)
            deadline = time.monotonic() + 30
            while (
                (args.owner_profile or args.turns)
                and not os.path.exists(args.owner_profile or args.turns)
                and time.monotonic() < deadline
            ):
                time.sleep(0.1)
            time.sleep(1)
    finally:
        runner.close()
    idle = {k: (idle1[k][0] - idle0[k][0]) / args.idle * elapsed for k in before}
    idle_switches = sum(idle1[k][1] - idle0[k][1] for k in before) / args.idle * elapsed
    per = {k: (after[k][0] - before[k][0] - idle[k]) / args.runs * 1e6 for k in before}
    switches = (sum(after[k][1] - before[k][1] for k in before) - idle_switches) / args.runs
    wall = latency_result(samples)
    total = sum(per.values())
    print(f"{args.runs} calls, load {load0:.1f}; CPU us per call (idle rate taken off):")
    for name, us in per.items():
        print(f"  {name:18s} {us:8.1f}")
    print(f"  {'total':18s} {total:8.1f}")
    print(f"voluntary switches per call {switches:.2f}; wall {wall}")
    if args.sched:
        print("per call: CPU migrations, involuntary switches (idle not taken off)")
        for name in sched0:
            moved = (sched1[name][0] - sched0[name][0]) / args.runs
            forced = (sched1[name][1] - sched0[name][1]) / args.runs
            print(f"  {name:18s} {moved:6.2f} {forced:6.2f}")
    if stamps is not None:
        print(stamps.report())
    if args.turns and os.path.exists(args.turns):
        with open(args.turns) as f:
            counted = json.load(f)
        print("owner loop per call:")
        for name, n in sorted(counted.items(), key=lambda kv: -kv[1])[:12]:
            print(f"  {name[:60]:60s} {n / args.runs:6.2f}")
    if args.json:
        with open(args.json, "a") as f:
            line = {"load": load0, "cpu_us": per, "total_us": total, "switches": switches}
            f.write(json.dumps({**line, "wall": wall}) + "\n")


if __name__ == "__main__":
    main()
