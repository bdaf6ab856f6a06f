"""What a daemon's first big run would set up at first use is set up at start (daemon/warm.py).

The codec builds each message type's converters (generated source, compiled) at the type's first
use, so a daemon's first big run built a dozen of them; now the daemon builds a run's at start, a
type a loop turn. pyzmq starts its garbage-collection machinery (a context of its own with libzmq's I/O and reaper
threads, a thread it waits for) at a process's first frame sent without a copy: in a daemon, the
first run's first snapshot to its standbys, on the owner's loop. Each in-process case runs in a
fresh interpreter (that machinery is the process's), with and without the warm-up, so the checks
also show that this pyzmq behaves as the warm-up assumes."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from typing import Any

import cloudpickle
import pytest

import handoffd

cloudpickle.register_pickle_by_value(sys.modules[__name__])

# How many threads a zero-copy send of a big frame over inproc starts, and whether the
# upload pool's module was there before it.
PROBE = """
import os, sys, zmq
from handoffd.transport.zmq_transport import KEEP_BYTES, send_parts

def threads():
    # By id, not name: a thread this probe's own context started (at its first socket) names
    # itself ZMQbg/... a moment later, which a count by name read as a new thread on a busy machine.
    return set(os.listdir("/proc/self/task"))

if sys.argv[1] == "warm":
    from handoffd.daemon.warm import warm_first_run
    warm_first_run()
pool_module = "concurrent.futures.thread" in sys.modules
ctx = zmq.Context()
pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
pull.bind("inproc://big"); push.connect("inproc://big")
before = threads()
send_parts(push, [bytes(KEEP_BYTES)])
assert len(pull.recv()) == KEEP_BYTES
print(pool_module, len(threads() - before))
for s in (pull, push):
    s.close(linger=0)
"""


# The converters' steps run through a recording ``call_later``: which types were built before,
# and after every step ran.
STEPS = """
from handoffd.daemon import warm
from handoffd.protocol import rows, schema

def built():
    return (
        sum(cls.TYPE in schema._RECORDS for cls in warm.RUN_MESSAGES),
        sum(cls in schema._STRUCT_RECORDS for cls in warm.RUN_STRUCTS),
        int(warm.m.TaskDelta in rows._ROWS_OF),
    )

print(*built())
calls = []
warm.warm_converters(lambda delay, fn: calls.append((delay, fn)))
ran = 0
while ran < len(calls):
    assert calls[ran][0] == warm.STEP_S
    calls[ran][1]()
    ran += 1
print(*built(), ran, len(warm.RUN_MESSAGES), len(warm.RUN_STRUCTS))
"""

# Every converter a process compiles (the codec's generated source: its checks name the class,
# "Cls.field"), with the process and the time, appended to W1_EXEC_LOG.
EXEC_HOOK = """
import os, sys, time
_log = os.environ.get("W1_EXEC_LOG")
if _log:
    def _hook(event, args):
        if event == "exec" and hasattr(args[0], "co_consts"):
            names = {c.partition(".")[0] for k in args[0].co_consts if hasattr(k, "co_consts")
                     for c in k.co_consts if type(c) is str and "." in c and c[:1].isupper()
                     and c.replace(".", "").isidentifier()}
            if names:
                with open(_log, "a") as f:
                    f.write(f"{os.getpid()} {time.monotonic()} {','.join(sorted(names))}\\n")
    sys.addaudithook(_hook)
"""


def _probe(mode: str, code: str = PROBE) -> tuple[str, ...]:
    out = subprocess.run(
        [sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return tuple(out.stdout.split())


def _zmq_threads(pid: int) -> collections.Counter[str]:
    """libzmq's threads of ``pid`` by name (``ZMQbg/...``): one I/O and one reaper a context."""
    names: collections.Counter[str] = collections.Counter()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:  # the thread ended meanwhile
            continue
        if name.startswith("ZMQbg/"):
            names[name] += 1
    return names


def noop(i: int) -> int:
    return i


pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc thread names"),
    pytest.mark.timeout(180),
]


def test_without_the_warm_up_a_first_big_send_starts_threads() -> None:
    pool_module, started = _probe("plain")
    assert pool_module == "False"
    assert int(started) >= 2  # the garbage collector's context (I/O, reaper) and its own thread


def test_after_the_warm_up_a_big_send_starts_no_thread() -> None:
    pool_module, started = _probe("warm")
    assert pool_module == "True"
    assert started == "0"


def test_a_runs_converters_are_built_a_type_a_step() -> None:
    lines = _probe("-", STEPS)
    before, after = lines[:3], lines[3:]
    messages, structs = int(after[4]), int(after[5])
    assert int(before[0]) < messages  # a fresh process had not built them all
    assert after[:4] == (str(messages), str(structs), "1", str(messages + structs + 1))


def _compiled(log: str) -> list[tuple[int, float, str]]:
    try:
        with open(log) as f:
            return [(int(p), float(t), n) for p, t, n in (line.split() for line in f)]
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("big_package", [False, True])
def test_a_daemons_first_big_run_builds_no_converter_and_starts_no_zmq_thread(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, big_package: bool
) -> None:
    """The run's submission comes as columns in pieces, its snapshot (well over KEEP_BYTES)
    goes to the standby, which keeps its log batches packed: neither daemon compiles a converter
    during the run, and libzmq's threads in the owner are the ones it had before any run. With
    ``big_package`` the client ships a module of its working directory past ``FAR_BYTES`` (as a
    client that imported many of its own modules does), which the snapshot names and the standby
    pulls in chunks: those messages are warmed too."""
    from handoffd.testing import DaemonCluster, wait_for

    (tmp_path / "sitecustomize.py").write_text(EXEC_HOOK)
    log = str(tmp_path / "exec.log")
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    with DaemonCluster(env={"PYTHONPATH": path, "W1_EXEC_LOG": log}) as daemons:
        a = daemons.start(cpu=2, memory=2000)
        b = daemons.start(cpu=2, memory=2000, seeds=[a.address])
        with handoffd.connect(a.address, timeout=60) as client:
            wait_for(lambda: len(client.nodes()) == 2, 30, what="both daemons")
        pids = {a.process.pid, b.process.pid}
        # the daemons' start and their warm-up done: nothing compiled for a while
        wait_for(
            lambda: (
                max([t for p, t, _ in _compiled(log) if p in pids] or [0.0])
                < time.monotonic() - 0.5
            ),
            30,
            0.05,
            what="the daemons' converters built",
        )
        at_start = _zmq_threads(a.process.pid)
        if big_package:
            _big_module(tmp_path / "project", monkeypatch)
        began = time.monotonic()
        _big_run(a.address)
        late = [n for p, t, n in _compiled(log) if p in pids and t >= began]
        assert late == [], sorted(set(late))
        assert _zmq_threads(a.process.pid) == at_start


def _big_module(project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module of the client's working directory, imported, whose package is past FAR_BYTES
    (random bytes: it does not compress below it)."""
    from handoffd.store.chunks import FAR_BYTES

    project.mkdir()
    blob = os.urandom(FAR_BYTES * 2).hex()
    (project / "w1_big_module.py").write_text(f"BLOB = {blob!r}\n")
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.delitem(sys.modules, "w1_big_module", raising=False)
    __import__("w1_big_module")


def _big_run(address: str) -> None:
    n = 3000
    dag = handoffd.DAG()
    for i in range(n):
        dag.add_function(handoffd.Function(id=f"n{i}", code=noop, extra_args=[i]))
    with handoffd.connect(address, timeout=60) as client:
        out = client.execute(dag)
        assert sum(out.values()) == n * (n - 1) // 2  # returned after the standby's ack
