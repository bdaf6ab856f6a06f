"""What a fresh cluster's processes import, and when: start-up, the bench's settle, W1 rounds.

    cd /tmp && .venv/bin/python THIS_CHECKOUT/bench/w1_first_imports.py [--rounds 2] [--all]

Starts the peer bench's handoffd cluster (``bench/_peers/handoffd_runner.py``: 2 daemons of 1
cpu, the pinned 2-task DAG), waits for it to settle as ``bench_vs_peers.py`` does
(``_peers.common.settle``), then runs ``--rounds`` W1 rounds. Every process of the cluster (the
daemons, their workers, and this client) runs with a ``sitecustomize`` on ``PYTHONPATH`` that
adds an audit hook: each module found and loaded (the ``import`` audit event, raised only for a
module not yet in ``sys.modules``) is written with its process id and ``time.monotonic()`` to one
log. Prints, per process and phase, the modules first imported then: a module a daemon or a
worker first imports inside a timed round is paid by that round (the first run after start), not
by the start-up. ``--all`` lists every module; by default the start-up's are only counted.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

HOOK = """
import os, sys, time
_log = os.environ.get("W1_IMPORT_LOG")
if _log:
    _fd = os.open(_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    _pid = os.getpid()
    os.write(_fd, f"{_pid} {time.monotonic():.6f} @argv {' '.join(sys.argv)[:200]}\\n".encode())

    def _hook(event, args, _fd=_fd, _mono=time.monotonic, _write=os.write, _getpid=os.getpid):
        if event == "import":
            _write(_fd, f"{_getpid()} {_mono():.6f} {args[0]}\\n".encode())
        elif event == "exec" and hasattr(args[0], "co_consts"):
            # the codec's converters are generated source, built at a type's first use; their
            # checks name the class ("Cls.field"), and a Record compiles one exec per converter
            names = {c.partition(".")[0] for k in args[0].co_consts if hasattr(k, "co_consts")
                     for c in k.co_consts if type(c) is str and "." in c and c[:1].isupper()
                     and c.replace(".", "").isidentifier()}
            if names:
                _write(_fd, f"{_getpid()} {_mono():.6f} @record:{','.join(sorted(names))}\\n".encode())
        elif event == "_thread.start_new_thread":
            what = getattr(args[0], "__qualname__", repr(args[0]))
            _write(_fd, f"{_getpid()} {_mono():.6f} @thread:{what}\\n".encode())

    sys.addaudithook(_hook)
    import threading as _threading

    _start = _threading.Thread.start

    def _started(self, _fd=_fd, _mono=time.monotonic, _write=os.write, _getpid=os.getpid):
        _write(_fd, f"{_getpid()} {_mono():.6f} @thread:{self.name}\\n".encode())
        return _start(self)

    _threading.Thread.start = _started
    import gc as _gc
    _t = [0.0]

    def _collected(phase, info, _fd=_fd, _mono=time.monotonic, _write=os.write, _t=_t):
        if phase == "start":
            _t[0] = _mono()
        elif info["generation"] >= 1:
            ms = (_mono() - _t[0]) * 1e3
            _write(_fd, f"{os.getpid()} {_t[0]:.6f} @gc{info['generation']}:{ms:.2f}ms\\n".encode())

    _gc.callbacks.append(_collected)
"""


def _children(pid: int) -> list[int]:
    from cpu_per_call import _children as kids

    return kids(pid)


def _usage(pid: int) -> tuple[float, int]:
    """(CPU ms, minor faults) of one process so far."""
    from cpu_per_call import _cpu
    from w1_first_round import _minflt

    return _cpu(pid)[0] * 1000.0, _minflt(pid)


class _Threads(dict):  # {tid: name}; ``-`` keeps the threads the other lacks
    def __sub__(self, other: dict) -> _Threads:
        return _Threads({t: n for t, n in self.items() if t not in other})


def _threads(pid: int) -> _Threads:
    """The threads of ``pid`` now, by id, with their names (``comm``)."""
    out = _Threads()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                out[tid] = f.read().strip()
    except OSError:
        pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--all", action="store_true", help="list the start-up's modules too")
    args = ap.parse_args()
    hook_dir = tempfile.mkdtemp(prefix="w1imports-")
    with open(os.path.join(hook_dir, "sitecustomize.py"), "w") as f:
        f.write(HOOK)
    log = os.path.join(hook_dir, "imports.log")
    os.environ["W1_IMPORT_LOG"] = log
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (hook_dir, os.environ.get("PYTHONPATH", "")) if p
    )

    exec(HOOK, {"__name__": "w1_first_imports_hook"})  # this process (the client) too
    from _peers.common import Sizes, settle
    from _peers.handoffd_runner import HandoffdRunner

    runner = HandoffdRunner(Sizes(False))
    marks = [("start", time.monotonic())]
    runner.start()
    marks.append(("settle", time.monotonic()))
    settle(os.getpid())
    roles: dict[int, str] = {os.getpid(): "client"}
    execute = runner.client.execute
    rounds = [0]

    def timed_execute(dag: object) -> object:  # the round's timed call, apart from the DAG's build
        marks.append((f"W1 {rounds[0]} execute", time.monotonic()))
        out = execute(dag)
        marks.append((f"W1 {rounds[0]} results", time.monotonic()))
        return out

    runner.client.execute = timed_execute
    try:
        for r in range(args.rounds):
            for name, pid in (("d0", runner.d0.pid), ("d1", runner.d1.pid)):
                roles[pid] = name
                for kid in _children(pid):
                    roles.setdefault(kid, f"{name} worker")
            rounds[0] = r + 1
            marks.append((f"W1 {r + 1} build", time.monotonic()))
            before = {pid: _usage(pid) for pid in roles}
            threads = {pid: _threads(pid) for pid in roles}
            result = runner.w1()
            print(f"round {r + 1}: {result['tasks_per_s']:,.0f} tasks/s")
            for pid, role in roles.items():
                (cpu0, flt0), (cpu1, flt1) = before[pid], _usage(pid)
                new = sorted((_threads(pid) - threads[pid]).values()) if pid != os.getpid() else []
                print(
                    f"    {role} (pid {pid}): cpu {cpu1 - cpu0:6.1f} ms, minor faults {flt1 - flt0:6d}"
                    + (f", new threads {' '.join(new)}" if new else "")
                )
        marks.append(("after", time.monotonic()))
    finally:
        runner.close()
    phases = [name for name, _ in marks]
    print(
        "phases (ms from start):", ", ".join(f"{n} {(t - marks[0][1]) * 1e3:.0f}" for n, t in marks)
    )
    found: dict[tuple[int, str], list[str]] = collections.defaultdict(list)
    with open(log) as f:
        for line in f:
            parts = line.rstrip("\n").split(" ", 2)
            if len(parts) != 3 or not parts[0].isdigit():
                continue
            pid_s, at_s, name = parts
            if name.startswith("@argv"):
                continue
            at = float(at_s)
            phase = phases[0]
            for mark, t in marks:
                if at >= t:
                    phase = mark
            found[(int(pid_s), phase)].append(name)
    for (pid, phase), names in sorted(
        found.items(), key=lambda kv: (kv[0][0], phases.index(kv[0][1]))
    ):
        role = roles.get(pid, "other")
        listed = args.all or phase.startswith("W1") or phase == "after"
        print(f"{role} (pid {pid}) {phase}: {len(names)} modules")
        if listed:
            print("   ", " ".join(names))


if __name__ == "__main__":
    main()
