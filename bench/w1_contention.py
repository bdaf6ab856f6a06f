"""Who waits for a core, and for the GIL, during W1 on 2 cores (issue 13: W1 rounds vary 21-27.5k/s).

    cd /tmp && .venv/bin/python THIS_CHECKOUT/bench/w1_contention.py [--rounds 10] [--perf]
        [--alternate PART=N] [--autogroup-nice N] [--daemon-arg ARG]... [--daemon-env K=V]...

Starts the peer benchmark's 2 daemons of 1 cpu (``bench/_peers/handoffd_runner.py``, inside
``unshare -n``), runs W1 (one DAG of 10,000 no-ops, submitted to d0, which owns it) once to warm
up, then ``--rounds`` more, and reads around each round, per thread, from ``/proc``: CPU time and
time runnable but waiting for a CPU (``task/TID/schedstat`` fields 1 and 2), voluntary and
involuntary context switches and migrations between CPUs (``task/TID/sched``); and the machine's
busy time (``/proc/stat``), of which what no process of the benchmark used is "others" (the other
users of the machine). It prints, per round, the tasks/s and for each part (the client; d0's loop
thread, its upload thread, libzmq's I/O thread, its other threads, its workers; d1 and its
workers; others) the ms of CPU, the ms runnable-but-waiting, and the switches; then the mean of
the slowest and of the fastest third of the rounds and each figure's correlation with the round's
length (which one explains the slow rounds).

With ``--perf``: ``perf record`` (sched_switch with kernel stacks, sched_wakeup; filtered on d0's
loop thread) during the rounds, and per round the loop thread's time off its CPU by cause: asleep
in a futex (the GIL, which another Python thread of d0 holds: woken by that thread when it lets
go, or by the timed wait's expiry, one switch interval, counted under whatever process the timer
interrupted), asleep in select/epoll (no work), runnable but not running (preempted: by whom, or
woken and waiting for a CPU), asleep elsewhere; the same by tenth of the round (when in the
round the loop idles or waits); and how often each waker or preempter. Needs root (or
perf_event_paranoid <= -1) and ``perf``; it costs a few % of a core.

A/B on one cluster, alternating rounds: ``--alternate PART=N`` runs the odd rounds with PART's
threads (``workers``: both daemons' worker processes; ``zmq``: d0's libzmq I/O thread;
``upload``; ``loop``: d0's loop thread) at nice N, or as SCHED_BATCH with ``N=batch``, the even
rounds at nice 0, and prints each arm's median; ``pin=split`` / ``pin=away`` pin threads to
CPUs (d0's loop alone on CPU 0; or the loop on 0, its workers on 1); ``size=N``: rounds of N
tasks (a round's fixed cost and its time a task, from the two sizes' medians); ``policy=NAME``:
W1 under that placement policy; ``place=d0``: every task pinned to d0; ``cost=NAME``: every task
of cost ``{"cpu": 1, NAME: 1}`` (with ``--d0-arg=--resource --d0-arg=NAME=1``: all on d0, not
pinned). ``--autogroup-nice -10`` (root) puts the benchmark's sessions ahead of the machine's
other users during the rounds: a stand-in for a quiet machine when others load it. ``--where``
samples which CPU each part ran on. ``--owner-log FILE`` keeps d0's log (with
``--daemon-env HANDOFFD_LOOP_CPU_LOG_MS=5``: the loop's long iterations, placed in the rounds by
their printed wall-clock bounds). ``--daemon-arg`` adds an argument to both daemons' ``handoffd
start``, ``--d0-arg`` to d0's only, ``--daemon-env KEY=VALUE`` a variable to their environment
(an A/B across clusters).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

FIELDS = ("cpu", "wait", "vcs", "ivcs", "mig")  # ms, ms, count, count, count


def read_thread(pid: int, tid: int) -> tuple[float, float, int, int, int] | None:
    """(CPU ms, ms runnable but waiting, voluntary, involuntary switches, migrations) so far."""
    base = f"/proc/{pid}/task/{tid}"
    try:
        with open(f"{base}/schedstat") as f:
            run_ns, wait_ns = (int(x) for x in f.read().split()[:2])
        counts = {}
        with open(f"{base}/sched") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("nr_voluntary_switches", "nr_involuntary_switches", "se.nr_migrations"):
                    counts[key] = int(float(value))
    except (OSError, ValueError):
        return None
    return (
        run_ns / 1e6,
        wait_ns / 1e6,
        counts.get("nr_voluntary_switches", 0),
        counts.get("nr_involuntary_switches", 0),
        counts.get("se.nr_migrations", 0),
    )


def machine_busy_ms() -> float:
    """Every CPU's busy time so far (``/proc/stat``: all but idle and iowait), ms."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]
    return busy * 1000.0 / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    import psutil

    with contextlib.suppress(psutil.Error):
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    return []


class Parts:
    """The benchmark's threads by part; ``read`` sums each part's counters."""

    def __init__(self, client: int, d0: int, d1: int, names: dict[int, str]) -> None:
        self.client, self.d0, self.d1, self.names = client, d0, d1, names

    def part_of(self, pid: int, tid: int) -> str:
        if pid == self.client:
            return "client"
        if pid == self.d1:
            return "d1"
        if pid != self.d0:
            return "d0 workers" if pid in self._w0 else "d1 workers"
        if tid == self.d0:
            return "d0 loop"
        name = self.names.get(tid, "")
        if "upload" in name:
            return "d0 upload"
        if name.startswith("ZMQbg/IO"):
            return "d0 zmq io"
        return "d0 other"

    def by_thread(self) -> dict[int, str]:
        """Every thread of the benchmark's processes, by id: its part."""
        self._w0 = set(children(self.d0))
        out = {}
        for pid in [self.client, self.d0, self.d1, *self._w0, *children(self.d1)]:
            with contextlib.suppress(OSError):
                for tid in (int(t) for t in os.listdir(f"/proc/{pid}/task")):
                    out[tid] = self.part_of(pid, tid)
        return out

    def read(self) -> dict[str, list[float]]:
        self._w0 = set(children(self.d0))
        pids = [self.client, self.d0, self.d1, *self._w0, *children(self.d1)]
        out: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(FIELDS))
        for pid in pids:
            with contextlib.suppress(OSError):
                for tid in (int(t) for t in os.listdir(f"/proc/{pid}/task")):
                    got = read_thread(pid, tid)
                    if got is not None:
                        acc = out[self.part_of(pid, tid)]
                        for i, v in enumerate(got):
                            acc[i] += v
        out["(machine busy)"] = [machine_busy_ms(), 0.0, 0, 0, 0]
        return out


class Where(threading.Thread):
    """Samples (every ``PERIOD_S``) the CPU each of a few threads last ran on (``/proc/.../stat``
    field 39): the share of samples in which each shares d0's loop thread's CPU."""

    PERIOD_S = 0.005

    def __init__(self, parts: Parts) -> None:
        super().__init__(name="where", daemon=True)
        picks: dict[str, tuple[int, int]] = {"d0 loop": (parts.d0, parts.d0)}
        for tid, part in parts.by_thread().items():
            if part in ("d0 workers", "d1 workers", "d0 zmq io") and part not in picks:
                pid = parts.d0 if part == "d0 zmq io" else tid  # (a worker's main thread)
                if part == "d0 zmq io" or os.path.exists(f"/proc/{tid}/task/{tid}"):
                    picks[part] = (pid, tid)
        picks["d1"] = (parts.d1, parts.d1)
        picks["client"] = (parts.client, parts.client)
        self._fds = {
            k: os.open(f"/proc/{p}/task/{t}/stat", os.O_RDONLY) for k, (p, t) in picks.items()
        }
        self._on = threading.Event()
        self._stop = False
        self.same: dict[str, int] = defaultdict(int)
        self.samples = 0

    def _cpu(self, fd: int) -> int:
        return int(os.pread(fd, 512, 0).rpartition(b")")[2].split()[36])

    def run(self) -> None:
        while not self._stop:
            self._on.wait()
            with contextlib.suppress(OSError, ValueError, IndexError):
                cpus = {k: self._cpu(fd) for k, fd in self._fds.items()}
                self.samples += 1
                for k, cpu in cpus.items():
                    if k != "d0 loop" and cpu == cpus["d0 loop"]:
                        self.same[k] += 1
            time.sleep(self.PERIOD_S)

    def round(self, on: bool) -> dict[str, float]:
        """Start counting (``on``), or stop and return each thread's share of samples on the
        loop's CPU since the start."""
        if on:
            self.same.clear()
            self.samples = 0
            self._on.set()
            return {}
        self._on.clear()
        return {k: self.same.get(k, 0) / max(1, self.samples) for k in self._fds if k != "d0 loop"}


def thread_names(pid: int) -> dict[int, str]:
    """Thread names of ``pid`` (Python's threads share the process's name in /proc: py-spy
    knows theirs; libzmq names its own)."""
    from owner_breakdown import thread_names as named

    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    return named(pid, spy if os.path.exists(spy) else None)


PARTS = (
    "client",
    "d0 loop",
    "d0 upload",
    "d0 zmq io",
    "d0 other",
    "d0 workers",
    "d1",
    "d1 workers",
    "others",
)


def moved(before: dict[str, list[float]], after: dict[str, list[float]]) -> dict[str, list[float]]:
    out = {
        k: [a - b for a, b in zip(v, before.get(k, [0.0] * len(FIELDS)), strict=True)]
        for k, v in after.items()
    }
    ours = sum(v[0] for k, v in out.items() if not k.startswith("("))
    out["others"] = [max(0.0, out.pop("(machine busy)")[0] - ours), 0.0, 0, 0, 0]
    return out


from _w1_perf import BINS, SUBKEYS, loop_times, perf_read, perf_start, sleep_kind  # noqa: E402,F401


def with_daemon_args(extra: list[str], env: dict[str, str], first: list[str] | None = None) -> None:
    """Every daemon the runner starts gets ``extra`` arguments and ``env`` (an A/B); the
    first one (d0) ``first`` too."""
    if not extra and not env and not first:
        return
    from handoffd.testing import DaemonCluster

    start = DaemonCluster.start

    def started(self: Any, **kw: Any) -> Any:
        mine = list(first or []) if not self.daemons else []
        kw["extra"] = [*(kw.get("extra") or []), *extra, *mine]
        kw["env"] = {**(kw.get("env") or {}), **env}
        return start(self, **kw)

    DaemonCluster.start = started  # type: ignore[method-assign]


# -- the rounds ------------------------------------------------------------------------------


def correlation(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 3 or statistics.pstdev(xs) == 0 or statistics.pstdev(ys) == 0:
        return 0.0
    return statistics.correlation(xs, ys)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--perf", action="store_true", help="the loop's time off its CPU by cause")
    parser.add_argument("--daemon-arg", action="append", default=[], help="for handoffd start")
    parser.add_argument(
        "--alternate",
        default="",
        help="PART=N: odd rounds with PART's threads (workers, zmq, upload) at nice N, even at 0",
    )
    parser.add_argument(
        "--autogroup-nice",
        type=int,
        default=None,
        help="N: the benchmark's sessions (client, d0, d1) at autogroup nice N during the rounds "
        "(root; -10 stands in for a quiet machine: the machine's other users wait)",
    )
    parser.add_argument(
        "--where", action="store_true", help="sample which CPU each part ran on (200/s)"
    )
    parser.add_argument("--d0-arg", action="append", default=[], help="for d0's start only")
    parser.add_argument("--owner-log", default="", help="write d0's log to FILE at the end")
    parser.add_argument("--daemon-env", action="append", default=[], help="KEY=VALUE, daemons'")
    args = parser.parse_args()
    from _peers.common import Sizes, reexec_in_netns

    reexec_in_netns()
    from _peers.handoffd_runner import HandoffdRunner

    with_daemon_args(args.daemon_arg, dict(kv.split("=", 1) for kv in args.daemon_env), args.d0_arg)
    runner = HandoffdRunner(Sizes(False))
    runner.start()
    rows: list[dict[str, Any]] = []
    perf_data = os.path.join(tempfile.mkdtemp(prefix="w1-contention-"), "perf.data")
    recorder = None
    also: tuple[int, ...] = ()
    seen: set[str] = set()
    windows: list[tuple[float, float]] = []
    tids: dict[int, str] = {}
    parts: Parts | None = None
    where: Where | None = None
    try:
        runner.w1()  # warm-up
        seen.update(r.run_id for r in runner.client.runs())
        runner_d0 = runner.d0.pid
        parts = Parts(os.getpid(), runner.d0.pid, runner.d1.pid, thread_names(runner.d0.pid))
        if args.where:
            where = Where(parts)
            where.start()
        if args.perf:
            also = watched_threads(parts)
            recorder = perf_start([runner.d0.pid, *also], perf_data)
        load0 = os.getloadavg()[0]
        if args.autogroup_nice is not None:
            set_autogroup(parts, args.autogroup_nice)
        what, _, level = args.alternate.partition("=")
        if what == "place":  # (odd rounds: every W1 task pinned to d0, the owner: nothing to d1)
            other_w1 = pinned_w1(runner, runner.d0.name)
        elif what == "policy":  # (odd rounds: W1 under another placement policy)
            other_w1 = policy_w1(runner, level)
        elif what == "cost":  # (odd rounds: W1's tasks cost {"cpu": 1, NAME: 1}: with
            # --d0-arg=--resource=NAME=1, only d0 can run them: all local, not pinned)
            other_w1 = policy_w1(runner, "binpack", {"cpu": 1, level: 1})
        for i in range(args.rounds):
            arm: int | str = level if what and i % 2 else 0
            if what == "size":
                arm = int(level) if i % 2 else 10_000
            if what == "size":  # (odd rounds: W1 of N tasks: the fixed cost of a round)
                runner.sizes.w1 = int(level) if i % 2 else 10_000
            if what and what not in ("place", "policy", "cost", "size"):
                renice(parts, what, arm)
            before = parts.read()
            if where is not None:
                where.round(True)
            t0, wall0 = time.monotonic(), time.time()
            result = other_w1() if what in ("place", "policy", "cost") and arm else runner.w1()
            t1 = time.monotonic()
            if args.owner_log:  # (to place the log's lines in the rounds)
                print(f"round {i}: {wall0:.3f} .. {wall0 + t1 - t0:.3f} (wall clock)")
            shared = where.round(False) if where is not None else {}
            after = parts.read()
            on_d1 = tasks_on(runner, runner.d1.name, seen)
            windows.append((t0, t1))
            rows.append(
                {
                    "rate": result["tasks_per_s"],
                    "s": t1 - t0,
                    "arm": arm,
                    "shared": shared,
                    "on d1": on_d1,
                    **moved(before, after),
                }
            )
        tids = parts.by_thread()
        for tid in also:  # (d1's libzmq thread, told from its loop)
            if tids.get(tid) == "d1" and tid != parts.d1:
                tids[tid] = "d1 zmq io"
    finally:
        if args.autogroup_nice is not None and parts is not None:
            set_autogroup(parts, 0)
        if recorder is not None:
            recorder.send_signal(2)
            with contextlib.suppress(subprocess.TimeoutExpired):
                recorder.wait(60)
        if args.owner_log and runner.cluster is not None:
            with open(args.owner_log, "w") as f:
                f.write(runner.d0.log())
        runner.close()
    report(rows, load0, os.getloadavg()[0])
    report_arms(rows)
    if recorder is not None and os.path.exists(perf_data):
        report_perf(rows, perf_read(perf_data, runner_d0, windows, tids, also))


def pinned_w1(runner: Any, node: str) -> Any:
    """The runner's W1 with every task pinned to ``node`` (``Function(node=...)``)."""
    from _peers.common import noop, throughput

    import handoffd

    def w1() -> dict[str, Any]:
        n = runner.sizes.w1
        dag = handoffd.DAG()
        for i in range(n):
            dag.add_function(handoffd.Function(id=f"n{i}", code=noop, extra_args=[i], node=node))
        t0 = time.perf_counter()
        out = runner.client.execute(dag)
        elapsed = time.perf_counter() - t0
        assert len(out) == n and sum(out.values()) == n * (n - 1) // 2, "W1 checksum"
        return throughput(n, elapsed)  # type: ignore[no-any-return]

    return w1


def policy_w1(runner: Any, policy: str, cost: dict[str, float] | None = None) -> Any:
    """The runner's W1 under placement ``policy`` (``execute(..., policy=)``), each task of
    ``cost`` if given."""
    from _peers.common import noop, throughput

    import handoffd

    def w1() -> dict[str, Any]:
        n = runner.sizes.w1
        dag = handoffd.DAG()
        for i in range(n):
            dag.add_function(handoffd.Function(id=f"n{i}", code=noop, extra_args=[i], cost=cost))
        t0 = time.perf_counter()
        out = runner.client.execute(dag, policy=policy)
        elapsed = time.perf_counter() - t0
        assert len(out) == n and sum(out.values()) == n * (n - 1) // 2, "W1 checksum"
        return throughput(n, elapsed)  # type: ignore[no-any-return]

    return w1


def tasks_on(runner: Any, node: str, seen: set[str]) -> int:
    """How many tasks of the run the last round made ran on ``node`` (its placement, read
    after the round: the one run the owner lists that ``seen`` does not hold yet)."""
    new = [r.run_id for r in runner.client.runs() if r.run_id not in seen]
    seen.update(new)
    if len(new) != 1:
        return -1
    placement = runner.client.run(new[0]).placement()
    return sum(1 for where in placement.values() if where == node)


def watched_threads(parts: Parts) -> tuple[int, ...]:
    """The threads whose time on a CPU ``--perf`` follows besides the loop: d0's upload thread,
    the client's main thread (its encoding), d0's and d1's libzmq I/O threads (CURVE), d1's
    loop, d0's workers' main threads."""
    out = [parts.client, parts.d1]
    for tid, part in parts.by_thread().items():
        if part in ("d0 upload", "d0 zmq io") or (
            part == "d0 workers" and os.path.exists(f"/proc/{tid}/task/{tid}")
        ):
            out.append(tid)
        elif part == "d1" and parts.names.get(tid, _comm(parts.d1, tid)).startswith("ZMQbg/IO"):
            out.append(tid)
    return tuple(out)


def _comm(pid: int, tid: int) -> str:
    try:
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def set_autogroup(parts: Parts, nice: int) -> None:
    """The autogroup nice (Linux: the CPU share of a session against the machine's other
    sessions) of the client's and each daemon's session."""
    for pid in (parts.client, parts.d0, parts.d1):
        try:
            with open(f"/proc/{pid}/autogroup", "w") as f:
                f.write(str(nice))
        except OSError as exc:
            print(f"autogroup of {pid}: {exc}", flush=True)


def renice(parts: Parts, what: str, level: int | str) -> None:
    """Set the nice value (a number) or the policy (``batch``: SCHED_BATCH, ``0``: back to
    SCHED_OTHER at nice 0) of ``what``'s threads: ``workers`` (both daemons'), ``zmq`` (d0's
    libzmq I/O threads), ``upload`` (d0's upload thread), ``loop`` (d0's loop thread)."""
    want = {
        "workers": ("d0 workers", "d1 workers"),
        "zmq": ("d0 zmq io",),
        "upload": ("d0 upload",),
        "loop": ("d0 loop",),
    }
    if what == "pin":  # (hypotheses, not options: ``split``: d0's loop alone on CPU 0, all
        # else of ours on the others; ``away``: d0's loop on CPU 0, its workers on CPU 1)
        everything = set(range(os.cpu_count() or 1))
        for tid, part in parts.by_thread().items():
            cpus = everything
            if level == "split":
                cpus = {0} if part == "d0 loop" else everything - {0}
            elif level == "away" and part in ("d0 loop", "d0 workers"):
                cpus = {0} if part == "d0 loop" else {1}
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)
        return
    for tid, part in parts.by_thread().items():
        if part in want[what]:
            with contextlib.suppress(OSError):
                if level == "batch":
                    os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))
                else:
                    os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
                    os.setpriority(os.PRIO_PROCESS, tid, int(level))


def report_arms(rows: list[dict[str, Any]]) -> None:
    """Alternating rounds: each arm's median tasks/s and the loop's wait, pair by pair."""
    arms = sorted({r["arm"] for r in rows}, key=str)
    if len(arms) < 2:
        return
    print(
        "\nalternating rounds, by arm (nice of the part): median tasks/s, d0 loop's CPU ms and wait ms"
    )
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm]
        print(
            f"  {arm!s:>5s}: {statistics.median(r['rate'] for r in mine):8,.0f} tasks/s  "
            f"loop CPU {statistics.median(r['d0 loop'][0] for r in mine):5.0f}  wait "
            f"{statistics.median(r['d0 loop'][1] for r in mine):5.0f}  others "
            f"{statistics.median(r['others'][0] / r['s'] / 1000.0 for r in mine):4.2f} cores  ("
            + ", ".join(f"{r['rate']:,.0f}" for r in mine)
            + ")"
        )
    if all(isinstance(a, int) and a >= 1000 for a in arms):  # (--alternate size=N)
        small, large = arms
        ts = {a: statistics.median(r["s"] for r in rows if r["arm"] == a) for a in arms}
        per_task = (ts[large] - ts[small]) / (large - small)
        fixed = ts[small] - per_task * small
        print(
            f"  a round = {fixed * 1000:.0f} ms + {per_task * 1e6:.1f} us a task (medians): "
            f"{1 / per_task:,.0f} tasks/s at the margin"
        )
    pairs = [(rows[i], rows[i + 1]) for i in range(0, len(rows) - 1, 2)]
    better = sum(b["rate"] > a["rate"] for a, b in pairs)
    print(f"  the second arm faster in {better} of {len(pairs)} pairs")


def report(rows: list[dict[str, Any]], load0: float, load1: float) -> None:
    print(f"W1, {len(rows)} rounds of 10,000 tasks, load {load0:.1f} -> {load1:.1f}")
    print("ms of CPU / ms runnable but waiting for a CPU, per round (tasks/s first):")
    print(f"{'tasks/s':>8s} " + " ".join(f"{p:>13s}" for p in PARTS))
    for row in rows:
        cells = []
        for p in PARTS:
            v = row.get(p, [0.0] * len(FIELDS))
            if p == "others":  # (as cores: it grows with the round's length)
                cells.append(f"{v[0] / (row['s'] * 1000.0):9.2f} cores")
            else:
                cells.append(f"{v[0]:6.0f}/{v[1]:<6.0f}")
        print(f"{row['rate']:8,.0f} " + " ".join(cells) + f"  {row['on d1']:6d} on d1")
    print("switches voluntary/involuntary, migrations, per round:")
    for row in rows:
        cells = []
        for p in PARTS[:-1]:
            v = row.get(p, [0.0] * len(FIELDS))
            cells.append(f"{v[2]:5.0f}/{v[3]:<4.0f}{v[4]:4.0f}")
        print(f"{row['rate']:8,.0f} " + " ".join(cells))
    if any(r["shared"] for r in rows):
        print("share of samples on d0's loop thread's CPU (last CPU each ran on), per round:")
        keys = sorted({k for r in rows for k in r["shared"]})
        print(f"{'tasks/s':>8s} " + " ".join(f"{k:>11s}" for k in keys))
        for row in rows:
            cells = " ".join(f"{row['shared'].get(k, 0.0):11.2f}" for k in keys)
            print(f"{row['rate']:8,.0f} {cells}")
        for k in keys:
            vals = [r["shared"].get(k, 0.0) for r in rows]
            print(f"  {k:11s} r {correlation(vals, [r['s'] for r in rows]):+.2f}")
    ordered = sorted(rows, key=lambda r: r["s"])
    third = max(1, len(rows) // 3)
    fast, slow = ordered[:third], ordered[-third:]
    secs = [r["s"] for r in rows]
    print(
        f"\nfastest {third}: {statistics.mean(r['rate'] for r in fast):,.0f} tasks/s; slowest "
        f"{third}: {statistics.mean(r['rate'] for r in slow):,.0f}. Per part: mean fast -> slow, "
        "and r (correlation with the round's length):"
    )
    if all(r["on d1"] >= 0 for r in rows):
        f = statistics.mean(r["on d1"] for r in fast)
        s = statistics.mean(r["on d1"] for r in slow)
        r_d1 = correlation([float(r["on d1"]) for r in rows], secs)
        print(f"  tasks run on d1   {f:9.1f} -> {s:9.1f}   r {r_d1:+.2f}")
    for p in PARTS:
        for i, label in enumerate(("CPU ms", "wait ms", "vol sw", "invol sw", "migr")):
            if p == "others" and i > 0:
                continue

            def value(r: dict[str, Any], p: str = p, i: int = i) -> float:
                v = float(r.get(p, [0.0] * len(FIELDS))[i])
                return v / (r["s"] * 1000.0) if p == "others" else v

            vals = [value(r) for r in rows]
            if not any(vals):
                continue
            f = statistics.mean(value(r) for r in fast)
            s = statistics.mean(value(r) for r in slow)
            label = "cores" if p == "others" else label
            print(f"  {p:11s} {label:9s} {f:9.1f} -> {s:9.1f}   r {correlation(vals, secs):+.2f}")


def report_perf(rows: list[dict[str, Any]], perf: list[dict[str, Any]]) -> None:
    keys = sorted({k for r in perf for k in r if not k.startswith(SUBKEYS)})
    counts = sorted({k for r in perf for k in r if k.startswith("n ")})
    secs = [r["s"] for r in rows]
    print("\nd0's loop thread off its CPU (perf sched_switch/wakeup), ms a round:")
    for key in keys:
        vals = [r.get(key, 0.0) for r in perf]
        if sum(vals) < 0.5:
            continue
        cells = " ".join(f"{v:6.0f}" for v in vals)
        print(f"  {key:42s} {cells}   r {correlation(vals, secs):+.2f}")
    print("by tenth of the round (ms, mean of the rounds): when in the round")
    for key in sorted({k.split(" ", 1)[1] for r in perf for k in r if k.startswith("@")}):
        cells = " ".join(
            f"{statistics.mean(r.get(f'@{d} {key}', 0.0) for r in perf):5.1f}" for d in range(10)
        )
        print(f"  {key:42s} {cells}")
    for sign, label in (("+", "from the round's start"), ("-", "before the round's end")):
        print(f"by 10 ms {label} (ms, mean of the rounds; the first column nearest that edge)")
        for key in sorted({k.split(" ", 1)[1] for r in perf for k in r if k.startswith(sign)}):
            cells = " ".join(
                f"{statistics.mean(r.get(f'{sign}{d} {key}', 0.0) for r in perf):4.1f}"
                for d in range(BINS)
            )
            print(f"  {key:22s} {cells}")
    print(
        "the loop's first wake-up by each part: ms after the round's start (its last: before the end)"
    )
    for key in sorted({k.split(" ", 1)[1] for r in perf for k in r if k.startswith("first ")}):
        if key.startswith("(outside)"):
            continue
        firsts = " ".join(f"{r.get('first ' + key, float('nan')):6.0f}" for r in perf)
        lasts = " ".join(f"{r.get('last ' + key, float('nan')):6.0f}" for r in perf)
        print(f"  first by {key:33s} {firsts}")
        print(f"  last by {key:34s} {lasts}")
    print("how often, a round:")
    for key in counts:
        vals = [r.get(key, 0.0) for r in perf]
        if sum(vals) < len(vals):
            continue
        cells = " ".join(f"{v:6.0f}" for v in vals)
        print(f"  {key[2:]:42s} {cells}   r {correlation(vals, secs):+.2f}")
    print("  " + " " * 42 + " ".join(f"{r['rate']:6,.0f}"[-6:] for r in rows) + "  (tasks/s)")


if __name__ == "__main__":
    main()
