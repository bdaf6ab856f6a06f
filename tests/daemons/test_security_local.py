"""Issue 11, findings 2, 5 and 6: other local users against a keyless (default) daemon and its
clients, with real daemons as subprocesses. The other user is ``nobody`` (uid 65534): an attacker
process starts as root (nobody cannot read the interpreter under /root), imports what it needs,
then drops to nobody before it touches a key file or the network.

(a) a rogue server squatting a loopback port (plain, or CURVE with a key of its own): the client
    refuses it and never unpickles what it sends; (b) forged SubmitRun / StopNode from nobody
    are refused and the daemon serves root afterwards; (c) a runtime dir that is not ours alone
    is refused by start and stop, and stop signals only handoffd daemons of ours; (d) key files
    other users can read; (e) ``--allow-local-users`` restores the old behaviour, loudly.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import handoffd
from handoffd.testing import free_port, wait_for
from handoffd.transport.keys import (
    KeyFileError,
    ensure_local_key,
)

pytestmark = pytest.mark.timeout(180)

NOBODY = 65534
DAEMON = [sys.executable, "-m", "handoffd.cli.daemon"]
CTL = [sys.executable, "-m", "handoffd.cli.ctl"]
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: the other local user is nobody (uid 65534)"
)

cloudpickle.register_pickle_by_value(sys.modules[__name__])

# Everything the attacker uses is imported while it is still root; then it becomes nobody.
PRELUDE = """
import json, os, pickle, sys, time
import zmq, cloudpickle
import handoffd, handoffd.client, handoffd.dag, handoffd.values, handoffd.errors
from handoffd.errors import HandoffError
from handoffd.protocol import codec
from handoffd.protocol import messages as m
from handoffd.transport.client import ControlClient
from handoffd.transport.keys import CurveKeys
for name in ("handoffd.transport.auth", "handoffd.runtime", "pwd", "ipaddress", "secrets"):
    try:
        __import__(name)
    except ImportError:
        pass  # older code without that module
codec.encode(m.Ok(0), sender="warm-up")
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
assert os.geteuid() == 65534 and os.getegid() == 65534
"""


def nobody_script(body: str) -> list[str]:
    return [sys.executable, "-c", PRELUDE + textwrap.dedent(body)]


def run_as_nobody(body: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``body`` as nobody; it prints one JSON document on its last line."""
    out = subprocess.run(
        nobody_script(body) + list(args),
        capture_output=True,
        text=True,
        timeout=90,
        env=dict(os.environ, **(env or {})),
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def one_function_dag(fn: Any, *args: Any) -> Any:
    return handoffd.DAG().add_function(handoffd.Function(id="f", code=fn, extra_args=list(args)))


def _add(a: int, b: int) -> int:
    return a + b


def _touch(path: str) -> str:
    with open(path, "w") as f:
        f.write("ran")
    return path


# ---------------------------------------------------------------------------------------------
# (a) a rogue server on a loopback port
# ---------------------------------------------------------------------------------------------

# nobody's server: answers every request with what a daemon would send, the results being a
# pickle that creates a marker file when it is unpickled. argv: port, marker, mode (plain|curve).
ROGUE_SERVER = """
port, marker, mode = sys.argv[1], sys.argv[2], sys.argv[3]

class Boom:
    def __reduce__(self):
        return (open, (marker, "w"))

evil = pickle.dumps(Boom())
ctx = zmq.Context()
sock = ctx.socket(zmq.ROUTER)
sock.linger = 0
if mode == "curve":  # a CURVE server with a key of its own, admitting any client key
    public, secret = zmq.curve_keypair()
    sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True
sock.bind(f"tcp://127.0.0.1:{port}")
print("ready", flush=True)
member = m.MemberState("rogue-node", f"127.0.0.1:{port}", "default", 1, m.ALIVE,
                       {"cpu": 64.0}, {"cpu": 64.0}, 1)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    if not sock.poll(100):
        continue
    ident, *frames = sock.recv_multipart()
    decoded = codec.decode(frames)
    if decoded is None:
        continue
    request = decoded.msg
    print("got", type(request).__name__, flush=True)
    rid = getattr(request, "request_id", 0)
    if isinstance(request, m.ListNodes):
        reply, extra = m.NodeList(rid, (member,)), []
    elif hasattr(request, "run_id"):
        reply = m.RunOutcome(rid, request.run_id, "DONE", {"DONE": 1}, {"f": "rogue-node"},
                             "rogue-node", 1, (), None, ("f",), (), True)
        extra = [evil]
    else:
        reply, extra = m.Ok(rid), []
    sock.send_multipart([ident, *codec.encode(reply, sender="rogue-node", frames=extra)])
"""


class NobodyProcess:
    """A script run as nobody that prints "ready" once it listens; its output lines are kept, and it
    is killed by PID on ``close``."""

    def __init__(self, body: str, args: list[str], what: str) -> None:
        self.process = subprocess.Popen(
            nobody_script(body) + args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_for(
            lambda: "ready" in self.lines or self.process.poll() is not None,
            30,
            what=what,
        )
        assert "ready" in self.lines, self.process.stderr.read() if self.process.stderr else ""

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


class Rogue(NobodyProcess):
    """nobody's rogue server on a free loopback port."""

    def __init__(self, marker: Path, mode: str) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        super().__init__(
            ROGUE_SERVER, [str(self.port), str(marker), mode], "the rogue server listening"
        )

    def received(self) -> list[str]:
        return [line for line in self.lines if line.startswith("got ")]


@needs_root
@pytest.mark.parametrize("with_local_key", [True, False], ids=["local-key", "no-local-key"])
@pytest.mark.parametrize("mode", ["plain", "curve"])
def test_rogue_local_server_is_refused_before_anything_is_unpickled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, with_local_key: bool
) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    if with_local_key:  # root's own keyless daemons would have made it
        ensure_local_key(str(runtime))
    monkeypatch.setenv("HANDOFFD_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("HANDOFFD_ALLOW_LOCAL_USERS", raising=False)
    monkeypatch.delenv("HANDOFF_KEY_FILE", raising=False)
    marker = tmp_path / "pwned"
    rogue = Rogue(marker, mode)
    try:
        with pytest.raises(handoffd.AuthenticationError) as refused:
            with handoffd.connect(rogue.address, timeout=3) as client:
                client.execute(one_function_dag(_add, 1, 2))
        assert (
            ("local key" in str(refused.value))
            if with_local_key
            else ("no local key" in str(refused.value))
        )
        ctl = subprocess.run(
            CTL + ["--address", rogue.address, "--timeout", "3", "nodes"],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ),
        )
        assert ctl.returncode == 3, (ctl.stdout, ctl.stderr)
        assert "rogue-node" not in ctl.stdout
        assert "local key" in ctl.stderr, ctl.stderr
        assert not marker.exists()
        # The handshake never completed, so not one request reached the rogue server either.
        assert rogue.received() == []
    finally:
        rogue.close()
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# (b) forged requests from another local user
# ---------------------------------------------------------------------------------------------

FORGER = """
address, runtime, marker = sys.argv[1], sys.argv[2], sys.argv[3]
report = {}
try:
    open(os.path.join(runtime, "local.key")).read()
    report["read_key"] = "read"
except Exception as exc:
    report["read_key"] = type(exc).__name__

def touch(path):
    with open(path, "w") as f:
        f.write("ran as %d" % os.getuid())
    return path

dag = handoffd.DAG().add_function(handoffd.Function(id="f", code=touch, extra_args=[marker]))

def attempt(what, fn):
    try:
        report[what] = "accepted: %r" % (fn(),)
    except Exception as exc:
        report[what] = "refused: %s: %s" % (type(exc).__name__, exc)

def submit(allow):
    os.environ["HANDOFFD_ALLOW_LOCAL_USERS"] = "1" if allow else "0"
    with handoffd.connect(address, timeout=3) as client:
        return client.execute(dag)

def stop(curve):
    with ControlClient(address, curve=curve, connect_timeout=3) as client:
        reply = client.request(codec.encode(m.StopNode(1), sender="forger"), timeout=3)
        return codec.decode(reply).msg

public, secret = zmq.curve_keypair()
attempt("submit_default", lambda: submit(False))
attempt("submit_unauthenticated", lambda: submit(True))
attempt("stop_plain", lambda: stop(None))
attempt("stop_own_key", lambda: stop(CurveKeys(public, secret)))
print(json.dumps(report))
"""


@needs_root
def test_forged_submit_and_stop_from_another_local_user_are_refused(
    daemons: Any, tmp_path: Path
) -> None:
    daemon = daemons.start(cpu=1)
    marker = tmp_path / "forged-ran"  # a forged task would run as root: it could write there
    report = run_as_nobody(
        FORGER,
        daemon.address,
        daemons.workdir,
        str(marker),
        env={"HANDOFFD_RUNTIME_DIR": daemons.workdir},
    )
    assert report["read_key"] == "PermissionError", report
    for what in ("submit_default", "submit_unauthenticated", "stop_plain", "stop_own_key"):
        assert report[what].startswith("refused"), report
    assert "AuthenticationError" in report["submit_unauthenticated"], report
    assert "AuthenticationError" in report["stop_plain"], report
    assert daemon.alive(), daemon.log()
    assert not marker.exists()
    with handoffd.connect(daemon.address) as client:
        assert client.execute(one_function_dag(_add, 2, 3)) == {"f": 5}
    assert daemon.alive()


# ---------------------------------------------------------------------------------------------
# (c) the runtime dir and handoffd stop
# ---------------------------------------------------------------------------------------------


def daemon_cli(*args: str, runtime: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``handoffd ARGS`` with HANDOFFD_RUNTIME_DIR=runtime; a daemon that started anyway (the check
    failed) is killed by PID after ``timeout`` and reported with returncode None."""
    process = subprocess.Popen(
        DAEMON + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, HANDOFFD_RUNTIME_DIR=str(runtime)),
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate(timeout=10)
        return subprocess.CompletedProcess(process.args, None, out, err)  # type: ignore[arg-type]


def start_args() -> list[str]:
    return ["start", "--port", str(free_port()), "--no-mdns", "--cpu", "1", "--name", "rt-test"]


def spawn(argv: list[str], user: int | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, user=user, start_new_session=True)


def write_pid_file(runtime: Path, name: str, pid: int) -> None:
    path = runtime / f"{name}.json"
    path.write_text(json.dumps({"name": name, "pid": pid, "address": "127.0.0.1:1"}))
    path.chmod(0o600)


@needs_root
@pytest.mark.parametrize("problem", ["owned-by-nobody", "mode-0777", "symlink"])
def test_runtime_dir_not_ours_alone_is_refused_by_start_and_stop(
    tmp_path: Path, problem: str
) -> None:
    runtime = tmp_path / "runtime"
    if problem == "symlink":
        target = tmp_path / "elsewhere"
        target.mkdir(mode=0o700)
        runtime.symlink_to(target)
        expect = "symlink"
    else:
        runtime.mkdir()
        if problem == "owned-by-nobody":
            runtime.chmod(0o755)
            os.chown(runtime, NOBODY, NOBODY)
            expect = "owned by uid 65534"
        else:
            runtime.chmod(0o777)
            expect = "mode 0777"
    victim = spawn(["sleep", "120"])  # root's process that nobody's pid file names
    try:
        if problem == "owned-by-nobody":
            # What nobody would leave there: a pid file naming root's process.
            pid_file = runtime / "victim.json"
            pid_file.write_text(json.dumps({"name": "victim", "pid": victim.pid, "address": ""}))
            os.chown(pid_file, NOBODY, NOBODY)
        started = daemon_cli(*start_args(), runtime=runtime)
        assert started.returncode == 2, (started.returncode, started.stderr)
        assert expect in started.stderr and "HANDOFFD_RUNTIME_DIR" in started.stderr
        assert "listening on" not in started.stdout
        stopped = daemon_cli("stop", runtime=runtime)
        assert stopped.returncode == 2, (stopped.returncode, stopped.stderr)
        assert expect in stopped.stderr
        assert victim.poll() is None  # never signalled
    finally:
        victim.kill()
        victim.wait(10)


@needs_root
def test_stop_signals_only_a_handoffd_daemon_of_ours(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    # A pid that is not a daemon (a reused pid), and nobody's process dressed up as one.
    other = spawn(["sleep", "120"])
    disguised = spawn(["/bin/sh", "-c", "sleep 120; true", "handoffd.cli.daemon", "start"], NOBODY)
    try:
        write_pid_file(runtime, "reused", other.pid)
        write_pid_file(runtime, "disguised", disguised.pid)
        for name, why in (("reused", "not a handoffd daemon"), ("disguised", "uid 65534")):
            out = daemon_cli("stop", "--name", name, runtime=runtime)
            assert out.returncode == 3, (out.returncode, out.stderr)
            assert "not signalling" in out.stderr and why in out.stderr, out.stderr
            assert not (runtime / f"{name}.json").exists()  # stale: removed
        assert other.poll() is None and disguised.poll() is None
        # A pid file other users could have written is not read at all.
        write_pid_file(runtime, "loose", other.pid)
        (runtime / "loose.json").chmod(0o666)
        out = daemon_cli("stop", "--name", "loose", runtime=runtime)
        assert out.returncode == 2 and "chmod 600" in out.stderr, out.stderr
        assert other.poll() is None
    finally:
        for process in (other, disguised):
            process.kill()
            process.wait(10)


def test_stop_still_stops_our_daemon(daemons: Any) -> None:
    daemon = daemons.start(cpu=1)
    out = daemon_cli("stop", "--name", daemon.name, runtime=Path(daemons.workdir))
    assert out.returncode == 0, out.stderr
    assert daemon.process.wait(30) == 0


def test_runtime_dir_is_created_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from handoffd.runtime import runtime_dir

    runtime = tmp_path / "new" / "runtime"
    out = daemon_cli("stop", runtime=runtime)
    assert out.returncode == 3  # nothing runs, and nothing was created by stop
    assert not runtime.exists()
    monkeypatch.setenv("HANDOFFD_RUNTIME_DIR", str(runtime))
    assert runtime_dir() == str(runtime)
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700


# ---------------------------------------------------------------------------------------------
# the local key itself
# ---------------------------------------------------------------------------------------------

RACE = """
import sys
from handoffd.transport.keys import ensure_local_key
print(ensure_local_key(sys.argv[1]).public.decode())
"""


def test_daemons_starting_together_share_one_local_key(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(runtime)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    publics = {racer.communicate(timeout=60)[0].strip() for racer in racers}
    assert len(publics) == 1 and len(publics.pop()) == 40
    assert sorted(p.name for p in runtime.iterdir()) == ["local.key"]  # no temporary left
    assert stat.S_IMODE((runtime / "local.key").stat().st_mode) == 0o600


# ---------------------------------------------------------------------------------------------
# (d) key files other users can read
# ---------------------------------------------------------------------------------------------


def test_key_file_readable_by_others_is_refused_unless_insecure(
    daemons: Any, tmp_path: Path
) -> None:
    key = tmp_path / "cluster.key"
    assert subprocess.run(CTL + ["keygen", str(key)], timeout=30).returncode == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key.chmod(0o644)
    refused = daemon_cli(*start_args(), "--key-file", str(key), runtime=tmp_path / "rt")
    assert refused.returncode == 2, (refused.returncode, refused.stderr)
    assert f"chmod 600 {key}" in refused.stderr and "--insecure" in refused.stderr
    with pytest.raises(KeyFileError, match="mode 0644.*chmod 600"):
        handoffd.connect("127.0.0.1:1", key_file=str(key))

    daemon = daemons.start(cpu=1, extra=["--key-file", str(key), "--insecure"])
    assert "mode 0644" in daemon.log() and "--insecure" in daemon.log()
    with handoffd.connect(daemon.address, key_file=str(key), insecure=True) as client:
        assert client.execute(one_function_dag(_add, 4, 5)) == {"f": 9}
    ctl = subprocess.run(
        CTL + ["--address", daemon.address, "--key-file", str(key), "nodes"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ctl.returncode == 2 and "chmod 600" in ctl.stderr, ctl.stderr
    ctl = subprocess.run(
        CTL + ["--address", daemon.address, "--key-file", str(key), "--insecure", "nodes"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ctl.returncode == 0 and daemon.name in ctl.stdout, ctl.stderr
    assert "chmod 600" in ctl.stderr  # the warning


# ---------------------------------------------------------------------------------------------
# (e) --allow-local-users
# ---------------------------------------------------------------------------------------------

LOCAL_USER = """
address = sys.argv[1]
with handoffd.connect(address, timeout=5) as client:
    print(json.dumps({"nodes": sorted(client.nodes())}))
"""


@needs_root
def test_allow_local_users_restores_the_old_behaviour_and_says_so(
    daemons: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HANDOFFD_ALLOW_LOCAL_USERS", raising=False)
    daemon = daemons.start(cpu=1, extra=["--allow-local-users"])
    assert "WARNING" in daemon.log() and "NO AUTHENTICATION" in daemon.log()
    with pytest.raises(handoffd.AuthenticationError, match="--allow-local-users"):
        handoffd.connect(daemon.address, timeout=3)
    with handoffd.connect(daemon.address, allow_local_users=True) as client:
        assert client.execute(one_function_dag(_add, 1, 1)) == {"f": 2}
    for extra, env in ((["--allow-local-users"], {}), ([], {"HANDOFFD_ALLOW_LOCAL_USERS": "1"})):
        out = subprocess.run(
            CTL + ["--address", daemon.address, *extra, "nodes"],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, **env),
        )
        assert out.returncode == 0 and daemon.name in out.stdout, out.stderr
    refused = subprocess.run(
        CTL + ["--address", daemon.address, "--timeout", "3", "nodes"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 3 and "--allow-local-users" in refused.stderr, refused.stderr
    # As the warning says: any local user gets in.
    seen = run_as_nobody(LOCAL_USER, daemon.address, env={"HANDOFFD_ALLOW_LOCAL_USERS": "1"})
    assert seen["nodes"] == [daemon.name]
    assert (
        subprocess.run(
            DAEMON + ["start", "--allow-local-users", "--key-file", "k", "--port", "0"],
            capture_output=True,
            timeout=60,
        ).returncode
        == 2
    )
