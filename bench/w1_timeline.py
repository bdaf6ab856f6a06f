"""Where one W1 round's wall time goes, end to end, and how busy each process is over it (issue 13).

    .venv/bin/python bench/w1_timeline.py [--rounds 3] [--tasks 10000] [--period-ms 3] [--table]

Starts the peer benchmark's 2 daemons of 1 cpu (``bench/_peers/handoffd_runner.py``, inside
``unshare -n``) with the owner daemon d0 run under this script's ``--wrap`` mode, runs W1 (one
``client.execute`` of ``--tasks`` no-ops) once to warm up (not with ``--cold``: round 1 is then
the cluster's first), then ``--rounds`` more. Every round
gets three views on one clock (``perf_counter``: CLOCK_MONOTONIC, shared by the processes):

- the **client's stamps**: execute entered, the submission encoded (the first ``client_upload.send``
  entered), sent (it returned), RunAccepted read, the outcome's first and last bytes read (the
  local socket's reads), the outcome decoded (``_receive`` returned it), the values loaded
  (``Run._collect``) and execute returned;
- the **owner's stamps** (d0 under ``--wrap``, written at SIGUSR1): the request's reads from the
  local socket, the upload thread's ``prepare`` (the run built off the loop), the run fed on the
  loop (``Preparer._finished``), every scheduler batch (``OwnerIO._feed_all``) with the
  successes it carried (both nodes'), the outcome built and queued (``Waiting.answer``) and the
  replies written to the client (``LocalListener.reply``);
- **CPU by process and thread**: a sampler *process* (not a thread of the client: it takes no
  GIL from it) reads every ``--period-ms`` each thread's ``/proc/PID/task/TID/schedstat`` (ns on
  a CPU, ns waiting in the run queue) for the client, d0's loop / upload / ZeroMQ I/O / other
  threads, d1 and every worker of either, and ``/proc/stat``'s idle time of the whole machine.

It prints, for each round, the phase summary (before the first task ran, the steady rate
between 10 % and 90 % of the tasks done, the tail after the last success, and the CPU used by
our processes and left idle by the whole machine in each phase), and with ``--table`` the
per-10-ms table of the round (tasks done in the bin as the owner saw them, each part's CPU %,
run-queue wait). The wrappers cost a few us per batch and per read (not per task), the sampler
~1 % of a core; compare rounds of this script with each other (A/B), not with bench_vs_peers.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

BIN = 0.010  # the table's bins, seconds

# ---------------------------------------------------------------------------------------------
# The owner daemon's stamps (``--wrap``: this script runs the daemon's module in its process)
# ---------------------------------------------------------------------------------------------


def _successes(events: Any) -> int:
    n = 0
    for e in events:
        name = type(e).__name__
        if name == "TasksSucceeded":
            n += len(e.task_ids)
        elif name == "TaskSucceeded":
            n += 1
    return n


def wrap_mode(out: str, command: list[str]) -> None:
    """Run ``python -m MODULE ARGS`` (the daemon) with its hops stamped into ``out``."""
    import importlib

    stamps: list[tuple[float, str, int]] = []
    clock = time.perf_counter
    lock = threading.Lock()

    def dump(*_: Any) -> None:
        with lock:
            chunk = stamps[:]
            del stamps[:]
        with open(out, "a") as f:
            f.writelines(f"{t:.7f} {label} {n}\n" for t, label, n in chunk)

    def stamped(fn: Any, label: str, count: Any = None) -> Any:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            n = count(args) if count is not None else 0
            stamps.append((clock(), label, n))
            try:
                return fn(*args, **kwargs)
            finally:
                stamps.append((clock(), label + ".end", n))

        return inner

    def feed_count(args: Any) -> int:
        io, *events = args
        return _successes(events) + _successes(getattr(io, "_pending", ()))

    def thread_id(args: Any) -> int:  # (the upload thread's native id: the sampler's label)
        return threading.get_native_id()

    def reply_size(args: Any) -> int:
        return len(args[2]) if len(args) > 2 else 0

    hops = (
        ("handoffd.transport.local_socket:LocalListener", "_readable", "sock_in", None),
        ("handoffd.transport.local_socket:LocalListener", "reply", "reply_out", reply_size),
        ("handoffd.daemon.upload_intake", "prepare", "prepare", thread_id),
        ("handoffd.daemon.upload_intake", "prepare_whole", "prepare", thread_id),
        ("handoffd.daemon.upload_intake:Preparer", "_finished", "intake", None),
        ("handoffd.daemon.owner:OwnerIO", "_feed_all", "batch", feed_count),
        ("handoffd.daemon.owner_waits:Waiting", "answer", "answer", None),
        ("handoffd.daemon.owner_waits:Waiting", "replicate", "replicate", None),
    )
    for path, attr, label, count in hops:
        module_name, _, cls_name = path.partition(":")
        holder: Any = importlib.import_module(module_name)
        if cls_name:
            holder = getattr(holder, cls_name)
        if hasattr(holder, attr):  # an older checkout may lack one (A/B)
            setattr(holder, attr, stamped(getattr(holder, attr), label, count))
    signal.signal(signal.SIGUSR1, dump)
    if len(command) < 3 or command[1] != "-m":
        sys.exit("usage: w1_timeline.py --wrap OUT -- python -m MODULE ARGS...")
    sys.argv = [command[2], *command[3:]]
    runpy.run_module(command[2], run_name="__main__", alter_sys=True)


def read_owner(path: str) -> list[tuple[float, str, int]]:
    out = []
    with contextlib.suppress(OSError), open(path) as f:
        for line in f:
            t, label, n = line.split()
            out.append((float(t), label, int(n)))
    out.sort()
    return out


# ---------------------------------------------------------------------------------------------
# The sampler process (``--sample``): paths from stdin, samples until stdin's next line
# ---------------------------------------------------------------------------------------------


def sample_mode(period: float) -> None:
    paths = sys.stdin.readline().split()
    fds = []
    for p in paths:
        try:
            fds.append(os.open(p, os.O_RDONLY))
        except OSError:
            fds.append(-1)
    stat = os.open("/proc/stat", os.O_RDONLY)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    rows: list[tuple[float, bytes, list[bytes]]] = []
    clock, pread, sleep = time.perf_counter, os.pread, time.sleep
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while not stop.is_set():
        t = clock()
        vals = []
        for fd in fds:
            if fd < 0:
                vals.append(b"0 0 0")
                continue
            try:
                vals.append(pread(fd, 100, 0))
            except OSError:
                vals.append(b"0 0 0")
        rows.append((t, pread(stat, 200, 0).split(b"\n", 1)[0], vals))
        sleep(max(0.0, period - (clock() - t)))
    lines = []
    for t, cpu, vals in rows:
        idle = cpu.split()
        # /proc/stat's first line: user nice system idle iowait ...: idle + iowait, in ticks
        idle_ticks = int(idle[4]) + int(idle[5])
        cols = b" ".join(v.split()[0] + b"," + v.split()[1] for v in vals).decode()
        lines.append(f"{t:.7f} {idle_ticks} {cols}\n")
    sys.stdout.write("".join(lines))
    sys.stdout.write("end\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------
# The bench
# ---------------------------------------------------------------------------------------------


class ClientStamps:
    """Stamps of the client's side of one execute (module doc), by wrapping its functions."""

    def __init__(self) -> None:
        from handoffd import client_conn, client_run, client_upload
        from handoffd.protocol import messages as m
        from handoffd.transport import local_socket

        self.marks: dict[str, float] = {}
        self.reads: list[tuple[float, int]] = []
        marks, reads, clock = self.marks, self.reads, time.perf_counter
        send = client_upload.send

        def stamped_send(client: Any, frames: Any) -> None:
            marks.setdefault("encoded", clock())
            send(client, frames)
            marks.setdefault("sent", clock())

        client_upload.send = stamped_send  # type: ignore[assignment]
        plumbing: Any = next(
            c
            for c in client_conn.__dict__.values()
            if isinstance(c, type) and "_receive" in c.__dict__
        )
        receive = plumbing._receive

        def stamped_receive(conn: Any, *args: Any, **kwargs: Any) -> Any:
            got = receive(conn, *args, **kwargs)
            kind = type(got[0])
            if kind is m.RunAccepted:
                marks.setdefault("accepted", clock())
            elif kind is m.RunOutcome:
                marks.setdefault("decoded", clock())
            return got

        plumbing._receive = stamped_receive
        collect = client_run.Run._collect

        def stamped_collect(run: Any, ids: Any) -> Any:
            marks.setdefault("collect", clock())
            out = collect(run, ids)
            marks.setdefault("loaded", clock())
            return out

        client_run.Run._collect = stamped_collect  # type: ignore[method-assign]
        cls: Any = local_socket.LocalClient
        recv = cls.recv

        def stamped_recv(conn: Any, timeout: float) -> Any:
            sock = conn._sock
            if type(sock) is not _ReadStamps:
                conn._sock = _ReadStamps(sock, reads)
            return recv(conn, timeout)

        cls.recv = stamped_recv

    def reset(self) -> None:
        self.marks.clear()
        del self.reads[:]


class _ReadStamps:
    """The client's socket, each ``recv_into`` stamped (time, bytes)."""

    def __init__(self, sock: Any, reads: list[tuple[float, int]]) -> None:
        self._sock, self._reads = sock, reads

    def recv_into(self, *args: Any) -> int:
        n = self._sock.recv_into(*args)
        self._reads.append((time.perf_counter(), n))
        return n  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def comm(pid: int, tid: int) -> str:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/comm") as f:
        return f.read().strip()
    return "?"


def children(pids: set[int]) -> dict[int, int]:
    """{pid: parent} of every process whose parent is in ``pids``."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
            ppid = int(f.read().rpartition(")")[2].split()[1])
            if ppid in pids:
                out[int(entry)] = ppid
    return out


def labelled_threads(client: int, d0: int, d1: int, upload: set[int]) -> list[tuple[str, str]]:
    """(part, schedstat path) of every thread of ours: the parts the table shows."""
    out = []
    names = spy_names(d0)
    workers = children({d0, d1})
    for pid, part in (
        (client, "client"),
        (d0, "d0"),
        (d1, "d1"),
        *[(w, "w0" if p == d0 else "w1") for w, p in workers.items()],
    ):
        with contextlib.suppress(OSError):
            for t in os.listdir(f"/proc/{pid}/task"):
                tid = int(t)
                label = part
                if part == "d0":
                    name = comm(pid, tid)
                    if tid == pid:
                        label = "d0.loop"
                    elif tid in upload:
                        label = "d0.upload"
                    elif name.startswith("ZMQbg"):
                        label = "d0.zmq"
                    else:
                        label = f"d0.other:{names.get(tid, name)}"
                out.append((label, f"/proc/{pid}/task/{tid}/schedstat"))
    return out


def spy_names(pid: int) -> dict[int, str]:
    """{thread id: Python thread name} by ``py-spy dump``, if it is installed beside this Python
    (Python threads carry the process's name in /proc); {} if not."""
    names: dict[int, str] = {}
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    if os.path.exists(spy):
        dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True)
        for line in dump.stdout.splitlines():
            if line.startswith("Thread ") and '"' in line:
                with contextlib.suppress(ValueError):
                    names[int(line.split()[1], 0)] = line.split('"')[1]
    return names


def d0_threads(pid: int, upload: set[int]) -> str:
    """d0's threads by name, with the label the table gives each."""
    names = spy_names(pid)
    out = []
    for t in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")):
        name = names.get(t, comm(pid, t))
        label = "loop" if t == pid else "upload" if t in upload else name
        out.append(f"{name}={label}" if name != label else name)
    return " ".join(out)


PARTS = ("client", "d0.loop", "d0.upload", "d0.zmq", "d0.other", "d1", "w0", "w1")


class Sampler:
    def __init__(self, period_ms: float) -> None:
        self.period = period_ms / 1000

    def start(self, threads: list[tuple[str, str]]) -> None:
        self.threads = threads
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--sample", str(self.period)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(" ".join(p for _, p in threads) + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> list[tuple[float, int, dict[str, tuple[int, int]]]]:
        """[(t, machine idle ticks, {part: (cpu ns, run-queue wait ns)})]"""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        rows = []
        for line in self.proc.stdout:
            if line.strip() == "end":
                break
            t, idle, *cols = line.split()
            parts: dict[str, list[int]] = {}
            for (label, _), col in zip(self.threads, cols, strict=True):
                run, wait = col.split(",")
                acc = parts.setdefault(label, [0, 0])
                acc[0] += int(run)
                acc[1] += int(wait)
            rows.append((float(t), int(idle), {k: (v[0], v[1]) for k, v in parts.items()}))
        self.proc.wait(10)
        return rows


def at(rows: list[Any], t: float, get: Any) -> float:
    """``get(row)`` interpolated at time ``t`` (clamped to the samples)."""
    if t <= rows[0][0]:
        return float(get(rows[0]))
    lo, hi = 0, len(rows) - 1
    if t >= rows[hi][0]:
        return float(get(rows[hi]))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if rows[mid][0] <= t:
            lo = mid
        else:
            hi = mid
    a, b = rows[lo], rows[hi]
    f = (t - a[0]) / (b[0] - a[0]) if b[0] > a[0] else 0.0
    return get(a) + f * (get(b) - get(a))


def cpu_between(rows: list[Any], a: float, b: float, part: str, which: int = 0) -> float:
    """Seconds of CPU (or of run-queue wait, ``which=1``) ``part`` used in [a, b]."""

    def get(r: Any) -> int:
        if part == "*":
            return sum(v[which] for v in r[2].values())
        if part == "d0.other":  # (d0's other threads are labelled by name)
            return sum(v[which] for k, v in r[2].items() if k.startswith("d0.other"))
        return r[2].get(part, (0, 0))[which]  # type: ignore[no-any-return]

    return (at(rows, b, get) - at(rows, a, get)) / 1e9


def idle_between(rows: list[Any], a: float, b: float) -> float:
    """Core-seconds the whole machine sat idle in [a, b] (/proc/stat: 10 ms ticks)."""
    tick = os.sysconf("SC_CLK_TCK")
    return (at(rows, b, lambda r: r[1]) - at(rows, a, lambda r: r[1])) / tick


def analyse(
    n: int,
    client: dict[str, Any],
    owner: list[tuple[float, str, int]],
    rows: list[Any],
    table: bool,
) -> dict[str, float]:
    t0, t_end = client["entered"], client["returned"]
    mine = [s for s in owner if t0 - 0.001 <= s[0] <= t_end + 0.001]
    done = [(t, k) for t, label, k in mine if label == "batch" and k]
    cum, marks = 0, []
    for t, k in done:
        cum += k
        marks.append((t, cum))
    first_ok = marks[0][0] if marks else t0
    last_ok = marks[-1][0] if marks else t_end

    def when(label: str, last: bool = False) -> float:
        hits = [t for t, lab, _ in mine if lab == label]
        return (hits[-1] if last else hits[0]) if hits else float("nan")

    def done_at(frac: float) -> float:
        for t, c in marks:
            if c >= frac * n:
                return t
        return float("nan")

    reads = client["reads"]
    big_reads = [t for t, k in reads if t >= last_ok]
    stamps = [
        ("execute entered", t0),
        ("client: submission encoded", client.get("encoded", float("nan"))),
        ("client: sent", client.get("sent", float("nan"))),
        ("owner: first read of it", when("sock_in")),
        (
            "owner: last read before intake",
            max(
                (t for t, lab, _ in mine if lab == "sock_in" and t < when("prepare")),
                default=float("nan"),
            ),
        ),
        ("owner: upload thread prepare", when("prepare")),
        ("owner: prepare done", when("prepare.end")),
        ("owner: run fed (intake)", when("intake")),
        ("owner: intake done", when("intake.end")),
        ("owner: first success", first_ok),
        ("owner: replicate (standby)", when("replicate")),
        ("client: RunAccepted read", client.get("accepted", float("nan"))),
        ("owner: 10 % done", done_at(0.1)),
        ("owner: 50 % done", done_at(0.5)),
        ("owner: 90 % done", done_at(0.9)),
        ("owner: last success", last_ok),
        ("owner: answer (outcome built)", when("answer", True)),
        ("owner: answer done (queued)", when("answer.end", True)),
        ("client: outcome's first read", big_reads[0] if big_reads else float("nan")),
        ("client: outcome's last read", big_reads[-1] if big_reads else float("nan")),
        ("client: outcome decoded", client.get("decoded", float("nan"))),
        ("client: values loaded", client.get("loaded", float("nan"))),
        ("execute returned", t_end),
    ]
    prep = when("prepare")
    reads = [t for t, lab, _ in mine if lab == "sock_in" and t < prep]
    print(
        f"  stamps (ms from execute entered; +ms from the previous); the owner's loop read the "
        f"submission in {len(reads)} wake-ups:"
    )
    prev = t0
    for name, t in stamps:
        if t != t:  # nan
            print(f"    {name:36s}      -")
            continue
        print(f"    {name:36s} {1e3 * (t - t0):8.1f}  (+{1e3 * (t - prev):6.1f})")
        prev = t
    total = t_end - t0
    t10, t90 = done_at(0.1), done_at(0.9)
    steady = 0.8 * n / (t90 - t10) if t90 > t10 else float("nan")
    phases = [
        ("before the first success", t0, first_ok),
        ("first success -> 10 %", first_ok, t10),
        ("10 % -> 90 % (steady)", t10, t90),
        ("90 % -> last success", t90, last_ok),
        ("tail: last success -> returned", last_ok, t_end),
        ("whole round", t0, t_end),
    ]
    print(
        f"  round {1e3 * total:.1f} ms = {n / total:,.0f} tasks/s; steady (10-90 %) "
        f"{steady:,.0f} tasks/s; our CPU in cores (client / d0 loop / d0 upload / d0 zmq / "
        f"d0 other / d1 / w0 / w1 = all) and the machine's idle cores:"
    )
    for name, a, b in phases:
        if not b > a:
            continue
        dt = b - a
        used = [cpu_between(rows, a, b, p) / dt for p in PARTS]
        wait = cpu_between(rows, a, b, "*", 1) / dt
        idle = idle_between(rows, a, b) / dt
        print(
            f"    {name:32s} {1e3 * dt:7.1f} ms  "
            + " ".join(f"{u:4.2f}" for u in used)
            + f" = {sum(used):4.2f}; run-queue wait {wait:4.2f}; machine idle {idle:4.2f}"
        )
    others = sorted({k for r in rows for k in r[2] if k.startswith("d0.other:")})
    print(
        "    d0's other threads over the round (cores): "
        + ", ".join(f"{k[9:]} {cpu_between(rows, t0, t_end, k) / total:.3f}" for k in others)
    )
    if table:
        print(
            "  per 10 ms: t(ms) done | " + " ".join(f"{p:>9s}" for p in PARTS) + " | all  rq-wait"
        )
        t = t0
        while t < t_end:
            b = min(t + BIN, t_end)
            k = sum(c for u, c in done if t <= u < b)
            used = [100 * cpu_between(rows, t, b, p) / (b - t) for p in PARTS]
            wait = 100 * cpu_between(rows, t, b, "*", 1) / (b - t)
            print(
                f"    {1e3 * (t - t0):6.0f} {k:5d} | "
                + " ".join(f"{u:8.0f}%" for u in used)
                + f" | {sum(used):4.0f}% {wait:4.0f}%"
            )
            t = b
    return {
        "total": total,
        "before_first": first_ok - t0,
        "steady": steady,
        "tail": t_end - last_ok,
        "cpu": cpu_between(rows, t0, t_end, "*"),
    }


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--wrap":
        out, sep, *command = sys.argv[2:]
        if sep != "--":
            sys.exit("usage: w1_timeline.py --wrap OUT -- python -m MODULE ARGS...")
        wrap_mode(out, command)
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--sample":
        sample_mode(float(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--period-ms", type=float, default=3.0)
    parser.add_argument("--table", action="store_true", help="print the per-10-ms table")
    parser.add_argument("--cold", action="store_true", help="no warm-up: round 1 is the first")
    args = parser.parse_args()
    from _peers.common import Sizes, noop, reexec_in_netns

    reexec_in_netns()
    from _peers.handoffd_runner import HandoffdRunner

    import handoffd

    out = os.path.join(tempfile.mkdtemp(prefix="w1-timeline-"), "owner.txt")
    runner = HandoffdRunner(Sizes(False))
    runner.owner_wrap = [sys.executable, os.path.abspath(__file__), "--wrap", out, "--"]
    runner.start()
    stamps = ClientStamps()
    sampler = Sampler(args.period_ms)
    rounds: list[tuple[dict[str, Any], list[Any]]] = []
    try:
        n = args.tasks

        def dag() -> Any:
            d = handoffd.DAG()
            for i in range(n):
                d.add_function(handoffd.Function(id=f"n{i}", code=noop, extra_args=[i]))
            return d

        if not args.cold:
            runner.client.execute(dag())  # warm-up: the upload thread and the workers exist now
        for _ in range(args.rounds):
            os.kill(runner.d0.pid, signal.SIGUSR1)  # (the owner's stamps so far: to the file)
            time.sleep(0.05)
            upload = {k for _, lab, k in read_owner(out) if lab == "prepare"}
            threads = labelled_threads(os.getpid(), runner.d0.pid, runner.d1.pid, upload)
            if not rounds:
                parts = sorted({label for label, _ in threads})
                print(
                    "threads sampled: "
                    + ", ".join(f"{p} {sum(lab == p for lab, _ in threads)}" for p in parts)
                    + f"; d0's: {d0_threads(runner.d0.pid, upload)}"
                )
            d = dag()
            stamps.reset()
            sampler.start(threads)
            time.sleep(0.02)
            t0 = time.perf_counter()
            got = runner.client.execute(d)
            t1 = time.perf_counter()
            time.sleep(0.02)
            rows = sampler.stop()
            assert len(got) == n and sum(got.values()) == n * (n - 1) // 2, "W1 checksum"
            client = dict(stamps.marks, entered=t0, returned=t1, reads=list(stamps.reads))
            rounds.append((client, rows))
            time.sleep(0.2)
        os.kill(runner.d0.pid, signal.SIGUSR1)
        time.sleep(0.2)
    finally:
        runner.close()
    owner = read_owner(out)
    summary = []
    for i, (client, rows) in enumerate(rounds):
        print(f"round {i + 1}:")
        summary.append(analyse(args.tasks, client, owner, rows, args.table))
    print("rounds: tasks/s " + ", ".join(f"{args.tasks / s['total']:,.0f}" for s in summary))
    print(
        "  before the first success (ms) "
        + ", ".join(f"{1e3 * s['before_first']:.1f}" for s in summary)
        + "; steady tasks/s "
        + ", ".join(f"{s['steady']:,.0f}" for s in summary)
        + "; tail (ms) "
        + ", ".join(f"{1e3 * s['tail']:.1f}" for s in summary)
        + "; our CPU us a task "
        + ", ".join(f"{1e6 * s['cpu'] / args.tasks:.1f}" for s in summary)
    )


if __name__ == "__main__":
    main()
