"""Both commands against real daemons: ``--json`` on every subcommand (each document parsed),
a closed stdout (``| head -1``) and Ctrl-C leave without a traceback and with their exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

import handoffd
from handoffd.testing import wait_for

pytestmark = pytest.mark.timeout(180)

CTL = [sys.executable, "-m", "handoffd.cli.ctl"]
DAEMON = [sys.executable, "-m", "handoffd.cli.daemon"]


def ctl_json(*args: str) -> Any:
    out = subprocess.run([*CTL, *args, "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode in (0, 1), (args, out.stdout, out.stderr)
    return out.returncode, json.loads(out.stdout)


def write_dag(tmp_path: Any, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


SQUARES = """
    import handoffd

    def square(x):
        return x * x

    dag = handoffd.DAG()
    for i in range(3):
        dag.add_function(handoffd.Function(id=f"s{i}", code=square, extra_args=[i]))
"""

SLEEPER = """
    import time
    import handoffd

    def nap():
        time.sleep(60)
        return "woke"

    dag = handoffd.DAG().add_function(handoffd.Function(id="nap", code=nap))
"""


def test_every_subcommand_prints_json(daemons: Any, tmp_path: Any) -> None:
    env = dict(os.environ, HANDOFFD_RUNTIME_DIR=daemons.workdir)
    name = f"jsonnode-{os.getpid()}"
    port = handoffd.testing.free_port()
    argv = [*DAEMON, "start", "--port", str(port), "--no-mdns", "--cpu", "2", "--name", name]
    log = open(os.path.join(daemons.workdir, "json-daemon.out"), "w+")
    daemons._share_local_key()
    started = subprocess.Popen(
        [*argv, "--json"], stdout=log, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    daemons.daemons.append(
        handoffd.testing.Daemon(name, "127.0.0.1", port, started, log.name)  # killed by fixture
    )
    first = wait_for(lambda: open(log.name).readline(), timeout=30, what="the start line")
    assert json.loads(first) == {
        "event": "listening",
        "name": name,
        "address": f"127.0.0.1:{port}",
        "cluster": "default",
    }
    address = ["--address", f"127.0.0.1:{port}"]

    code, doc = ctl_json("nodes", *address)
    assert code == 0 and [n["name"] for n in doc["nodes"]] == [name]
    squares = write_dag(tmp_path, "squares.py", SQUARES)
    code, doc = ctl_json("submit", squares, *address)
    assert code == 0 and doc["results"] == {"s0": 0, "s1": 1, "s2": 4}
    code, doc = ctl_json("submit", squares, "--no-wait", *address)
    run_id = doc["run_id"]
    assert code == 0 and doc["owner"] == name
    code, doc = ctl_json("results", run_id, *address)
    assert code == 0 and doc == {"run_id": run_id, "results": {"s0": 0, "s1": 1, "s2": 4}}
    code, doc = ctl_json("status", run_id, *address)
    assert code == 0 and doc["state"] == "DONE" and doc["owner"] == name
    code, doc = ctl_json("status", *address)
    assert code == 0 and run_id in [r["run_id"] for r in doc["runs"]]
    sleeper = write_dag(tmp_path, "sleeper.py", SLEEPER)
    code, doc = ctl_json("submit", sleeper, "--no-wait", *address)
    code, doc = ctl_json("cancel", doc["run_id"], *address)
    assert code == 0 and doc["cancelled"] is True
    code, doc = ctl_json("keygen", str(tmp_path / "k.key"))
    assert code == 0 and doc == {"key_file": str(tmp_path / "k.key")}

    stopped = subprocess.run(
        [*DAEMON, "stop", "--json", "--name", name],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout) == {"stopped": name}
    assert started.wait(30) == 0


def test_a_closed_stdout_exits_141_without_a_traceback(daemons: Any) -> None:
    d = daemons.start()
    for fmt in ([], ["--json"]):
        reader, writer = os.pipe()
        os.close(reader)  # nobody will read: the first write fails with EPIPE
        try:
            out = subprocess.run(
                [*CTL, "--address", d.address, "nodes", *fmt],
                stdout=writer,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
            )
        finally:
            os.close(writer)
        assert out.returncode == 141, out.stderr
        assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
    piped = subprocess.run(
        ["/bin/sh", "-c", f"{' '.join(CTL)} --address {d.address} nodes --json | head -1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.stdout == "{\n" and piped.stderr == "", piped


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_while_waiting_exits_130_and_says_the_run_goes_on(daemons: Any, tmp_path) -> None:
    d = daemons.start()
    sleeper = write_dag(tmp_path, "sleeper.py", SLEEPER)
    waiting = subprocess.Popen(
        [*CTL, "--address", d.address, "submit", sleeper],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A user's Ctrl-C, in a terminal: SIGINT at its default and not blocked. A suite started in
        # the background (`make test &`) has it ignored, and that is inherited and, rightly, honoured.
        preexec_fn=_sigint_default,
    )
    try:
        with handoffd.connect(d.address) as client:
            runs = wait_for(
                lambda: [r for r in client.runs() if r.state == "RUNNING"],
                timeout=60,
                interval=0.05,
                what="the sleeper running",
            )
            time.sleep(0.2)  # let handoffctl enter its wait (a signal earlier is handled too)
            waiting.send_signal(signal.SIGINT)
            out, err = waiting.communicate(timeout=60)
            assert waiting.returncode == 130, (out, err)
            assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
            assert f"interrupted: run {runs[0].run_id} goes on" in err
            assert client.run(runs[0].run_id).status().state == "RUNNING"
            client.run(runs[0].run_id).cancel()
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait(10)
