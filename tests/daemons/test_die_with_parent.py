"""Daemons die with the process that launched them (``handoffd start --die-with-parent``,
``handoffd/daemon/watchdog.py``), with real processes: a launcher that starts a DaemonCluster from
a thread (which then ends) and is SIGKILLed takes both daemons and their workers with it and
frees their ports; a daemon started without the flag outlives its launcher; ``pid:N`` and a
wrapper that runs the daemon as its child (as ``py-spy record`` does) hold too; bad values exit 2
saying what is wrong; the bounded exit kills its children's groups."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import handoffd
from handoffd.testing import wait_for
from handoffd.worker._contain import parent_map

pytestmark = pytest.mark.timeout(300)

# The launcher: starts daemons as its argv says, writes what the test needs to OUT, then waits to
# be killed. argv: OUT MODE; MODE "pair" (two flagged daemons started from a thread that ends,
# then a task on each) or "mixed" (one without the flag, one with pid:N, one under a wrapper
# that runs it as its child).
LAUNCHER = """
import json, os, sys, threading, time
import handoffd
from handoffd.testing import DaemonCluster

out, mode = sys.argv[1], sys.argv[2]
cluster = DaemonCluster()
started = []

def start_pair():
    a = cluster.start(cpu=1, memory=500)
    b = cluster.start(cpu=1, memory=500, seeds=[a.address])
    started.extend([a, b])

def start_mixed():
    cluster.die_with_parent = False
    started.append(cluster.start(cpu=1, memory=500))
    started.append(cluster.start(
        cpu=1, memory=500, extra=["--die-with-parent", f"pid:{os.getpid()}"]))
    cluster.die_with_parent = True
    wrapper = [sys.executable, "-c",
               "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:], close_fds=False))"]
    started.append(cluster.start(cpu=1, memory=500, wrap=wrapper))

thread = threading.Thread(target=start_pair if mode == "pair" else start_mixed)
thread.start()
thread.join()
assert not thread.is_alive()
if mode == "pair":  # the thread that started them has ended: both still run tasks
    dag = handoffd.DAG()
    for i, d in enumerate(started):
        dag.add_function(handoffd.Function(id=f"t{i}", code=os.getpid, node=d.name))
    with handoffd.connect(started[0].address, timeout=30) as client:
        deadline = time.monotonic() + 60
        while sum(n.status == "ALIVE" for n in client.nodes().values()) < 2:
            assert time.monotonic() < deadline, "the two daemons never joined"
            time.sleep(0.05)
        pids = client.execute(dag)
doc = {"daemons": [[d.pid, d.host, d.port, d.name] for d in started],
       "workdir": cluster.workdir}
if mode == "pair":
    doc["task_pids"] = sorted(pids.values())
with open(out + ".tmp", "w") as f:
    json.dump(doc, f)
os.rename(out + ".tmp", out)
threading.Event().wait()
"""


def _alive(pid: int) -> bool:
    """Runs (a zombie, exited and waiting to be reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _started(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), None if it is gone: a pid is killed in
    teardown only if it is still the process seen, not another that reused the number."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _kill_if_same(pid: int, started: int | None) -> None:
    if started is None or _started(pid) != started:
        return
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(OSError):
            kill(pid, signal.SIGKILL)


def _descendants(pid: int) -> set[int]:
    tree = parent_map()
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _port_free(host: str, port: int) -> bool:
    """Nothing listens on host:port (SO_REUSEADDR, as a daemon binds: a connection's TIME_WAIT
    left behind does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


class Launcher:
    """The launcher subprocess, and every process it started, killed by pid in ``close``."""

    def __init__(self, tmp_path: Path, mode: str) -> None:
        script = tmp_path / "launcher.py"
        script.write_text(textwrap.dedent(LAUNCHER))
        self.out = tmp_path / f"{mode}.json"
        self.log = open(tmp_path / f"{mode}.log", "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, str(script), str(self.out), mode],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.doc: dict[str, Any] = {}
        self.pids: set[int] = set()  # the daemons (or their wrappers) and their descendants
        self.starts: dict[int, int | None] = {}  # their start times (teardown kills by them)
        self.trees: dict[int, set[int]] = {}  # each daemon's (or wrapper's) pid and descendants

    def ready(self, timeout: float = 180.0) -> dict[str, Any]:
        def written() -> bool:
            assert self.process.poll() is None, f"the launcher exited:\n{self.text()}"
            return self.out.exists()

        wait_for(written, timeout, 0.05, what="the launcher's daemons")
        self.doc = json.loads(self.out.read_text())
        for pid, *_ in self.doc["daemons"]:
            self.trees[pid] = {pid, *_descendants(pid)}
            self.pids |= self.trees[pid]
        self.starts = {pid: _started(pid) for pid in self.pids}
        return self.doc

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def text(self) -> str:
        return (self.out.parent / f"{self.out.stem}.log").read_text(errors="replace")

    def daemon_logs(self) -> str:
        workdir = self.doc.get("workdir")
        if not workdir:
            return ""
        return "\n".join(
            f"===== {name}\n{Path(workdir, f'{name}.log').read_text(errors='replace')[-3000:]}"
            for *_, name in self.doc["daemons"]
            if Path(workdir, f"{name}.log").exists()
        )

    def close(self) -> None:
        if self.process.poll() is None:  # (not reaped: the pid is still ours)
            os.kill(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.process.wait(30)
        for pid, started in self.starts.items():
            _kill_if_same(pid, started)
        self.log.close()
        print(self.daemon_logs())
        if self.doc.get("workdir"):  # its copy of the local key, which the launcher's close()
            shutil.rmtree(self.doc["workdir"], ignore_errors=True)  # would have removed


@pytest.fixture
def launchers(tmp_path: Path) -> Any:
    started: list[Launcher] = []

    def launch(mode: str) -> Launcher:
        launcher = Launcher(tmp_path, mode)
        started.append(launcher)
        return launcher

    yield launch
    for launcher in started:
        launcher.close()


def test_a_killed_launcher_takes_its_daemons_and_their_workers(launchers: Any) -> None:
    launcher = launchers("pair")
    doc = launcher.ready()
    daemons = doc["daemons"]
    # The thread that started them is gone; they still ran a task each, and still answer now.
    assert len(set(doc["task_pids"])) == 2
    workers = launcher.pids - {pid for pid, *_ in daemons}
    assert set(doc["task_pids"]) <= workers  # the tasks ran in the daemons' workers
    with handoffd.connect(f"{daemons[0][1]}:{daemons[0][2]}", timeout=30) as client:
        assert [n.status for n in client.nodes().values()] == ["ALIVE", "ALIVE"]
    launcher.kill()
    wait_for(
        lambda: not any(_alive(pid) for pid in launcher.pids),
        90,
        0.05,
        what=f"daemons and workers {sorted(launcher.pids)} gone with their launcher",
    )
    for _, host, port, _ in daemons:
        assert _port_free(host, port), f"{host}:{port} still taken"
    logs = launcher.daemon_logs()
    assert logs.count("the process that launched this one is gone (fd:") == 2, logs
    assert logs.count("leaving the cluster as on SIGTERM") == 2
    assert logs.count("ALIVE -> LEFT") >= 2  # a graceful leave, not a crash


def test_without_the_flag_a_daemon_outlives_its_launcher(launchers: Any) -> None:
    """One launcher, three daemons: without the flag, with ``pid:N``, and (fd) under a wrapper
    that runs the daemon as its child, as ``py-spy record`` does. Once the two watching ones are
    gone, the third still runs and answers."""
    launcher = launchers("mixed")
    (plain, *_), by_pid, wrapped = launcher.ready()["daemons"]
    watching = launcher.trees[by_pid[0]] | launcher.trees[wrapped[0]]
    assert len(launcher.trees[wrapped[0]]) >= 3  # the wrapper, the daemon, its worker
    launcher.kill()
    wait_for(
        lambda: not any(_alive(pid) for pid in watching),
        90,
        0.05,
        what="the pid:N daemon and the wrapped one (and its wrapper) gone",
    )
    logs = launcher.daemon_logs()
    assert f"(pid:{launcher.process.pid}, it exited)" in logs, logs
    assert _alive(plain)
    with handoffd.connect(f"127.0.0.1:{launcher.doc['daemons'][0][2]}", timeout=30) as client:
        assert [n.status for n in client.nodes().values()] == ["ALIVE"]


def _start(*flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handoffd.cli.daemon", "start", "--port", "0", "--no-mdns"]
        + ["--http-port", "0", *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bad_values_exit_2_saying_what_to_pass() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    unused = 4_000_000
    while os.path.exists(f"/proc/{unused}"):
        unused -= 1
    cases = {
        "sideways": "give fd:N",
        f"fd:{r}": f"pass_fds=[{r}]",
        f"pid:{unused}": "the launcher is gone already",
        "pid:1": "never exits",
    }
    for value, says in cases.items():
        done = _start("--die-with-parent", value)
        assert done.returncode == 2, (value, done.stdout, done.stderr)
        assert says in done.stderr and "--die-with-parent" in done.stderr, (value, done.stderr)
        assert "listening on" not in done.stdout


HARD_EXIT = """
import subprocess, sys, time
from handoffd.daemon import watchdog
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         start_new_session=True)
print(child.pid, flush=True)
watchdog.hard_exit(watchdog.EXIT_OVERRUN)
"""


def test_the_bounded_exit_kills_its_childrens_groups() -> None:
    done = subprocess.run(
        [sys.executable, "-c", HARD_EXIT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    child = int(done.stdout.split()[0])
    started = _started(child)  # (None once it is gone, as it should be)
    try:
        wait_for(lambda: not _alive(child), 30, 0.05, what="the child killed by the exit")
    finally:
        _kill_if_same(child, started)


BENCH_PARENT = """
import os, subprocess, sys, threading
env = dict(os.environ, BENCH_PARENT_PID=str(os.getpid()))
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], *sys.argv[2:]], env=env,
                         start_new_session=True)
print(child.pid, flush=True)
threading.Event().wait()
"""
BENCH_CHILD = """
import os, sys, threading
sys.path.insert(0, sys.argv[1])
from _peers.common import PARENT_ENV, follow_parent
follow_parent()
assert PARENT_ENV not in os.environ  # consumed: what this child starts does not follow it
try:
    open(sys.argv[2] + ".ready", "w").close()
    threading.Event().wait()
finally:
    open(sys.argv[2], "w").close()  # the finally blocks run: a runner stops what it started
"""


def test_a_bench_child_follows_its_killed_bench(tmp_path: Path) -> None:
    """bench_vs_peers' child runners (``_peers.common.follow_parent``): the bench SIGKILLed, the
    child ends through its ``finally`` blocks (its daemons follow it by their own flag)."""
    bench = str(Path(__file__).resolve().parents[2] / "bench")
    marker = str(tmp_path / "cleaned")
    parent = subprocess.Popen(
        [sys.executable, "-c", BENCH_PARENT, BENCH_CHILD, bench, marker],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    child, child_started = 0, None
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        child_started = _started(child)
        wait_for(lambda: os.path.exists(marker + ".ready"), 60, 0.05, what="the child watching")
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(30)
        wait_for(lambda: not _alive(child), 90, 0.05, what="the child gone with its bench")
        assert os.path.exists(marker)
    finally:
        if parent.poll() is None:  # (not reaped: the pid is still ours)
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(30)
        _kill_if_same(child, child_started)
