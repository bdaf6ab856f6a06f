"""What tasks print and log comes back to the user (issue 14, problem 2), on real daemons: live in
``handoffctl submit`` (prefixed ``[task@node]``, hidden by ``--quiet``), later through
``handoffctl logs`` and ``Run.logs()``, bounded per attempt, and still there after the run's owner
was killed and a standby took the run over."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import handoffd
from handoffd.testing import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# The daemons' workers have no copy of this file: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

DAG = """
import logging
import handoffd

def work(i):
    print(f"working on {i}")
    logging.getLogger("mywork").info("step %d done", i)
    return i * 2

def chatty():
    print("x" * 200_000)
    return "long"

dag = handoffd.DAG()
for i in range(3):
    dag.add_function(handoffd.Function(id=f"w{i}", code=work, extra_args=[i]))
dag.add_function(handoffd.Function(id="chatty", code=chatty))
"""


def _ctl(address: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    repo = str(Path(__file__).resolve().parents[2])
    return subprocess.run(
        [sys.executable, "-m", "handoffd.cli.ctl", "--address", address, *args],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=repo),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_submit_streams_output_and_logs_shows_it_later(daemons: Any, tmp_path: Path) -> None:
    node = daemons.start(cpu=2, memory=1000)
    (tmp_path / "dag.py").write_text(textwrap.dedent(DAG))
    out = _ctl(node.address, "submit", "dag.py", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("run "))
    for i in range(3):
        # Before the summary: shown while the run went on, each line naming its task and node.
        assert f"[w{i}@{node.name}] working on {i}" in lines[:summary]
        assert f"[w{i}@{node.name}] INFO mywork: step {i} done" in lines[:summary]
    run_id = lines[summary].split()[1].rstrip(":")

    quiet = _ctl(node.address, "submit", "dag.py", "--quiet", cwd=tmp_path)
    assert quiet.returncode == 0 and "working on" not in quiet.stdout

    logs = _ctl(node.address, "logs", run_id, "w1", cwd=tmp_path)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.splitlines() == [
        f"[w1@{node.name}] working on 1",
        f"[w1@{node.name}] INFO mywork: step 1 done",
    ]
    with handoffd.connect(node.address) as client:
        text = client.run(run_id).logs("chatty")
        # Bounded per attempt, and the cut says so.
        assert "characters of output truncated" in text
        assert len(text) < 100_000
        everything = client.run(run_id).logs()
        assert all(f"working on {i}" in everything for i in range(3))

    unknown = _ctl(node.address, "logs", "no-such-run", cwd=tmp_path)
    assert unknown.returncode == 2 and "not known" in unknown.stderr


def say(word: str) -> str:
    print(f"said {word}")
    return word


def slow_say(word: str, seconds: float) -> str:
    import time

    print(f"slowly {word}")
    time.sleep(seconds)
    return word


def test_output_survives_the_owners_death(daemons: Any) -> None:
    owner = daemons.start(cpu=1, memory=1000, wait=False)
    others = [
        daemons.start(cpu=2, memory=1000, seeds=[owner.address], wait=False) for _ in range(2)
    ]
    daemons.joined(owner, *others)
    with handoffd.connect(owner.address) as client:
        wait_for(
            lambda: [n.status for n in client.nodes().values()] == ["ALIVE"] * 3,
            timeout=30,
            what="three daemons joined",
        )
        dag = handoffd.DAG()
        for i, node in enumerate(others):
            dag.add_function(
                handoffd.Function(id=f"say{i}", code=say, extra_args=[f"w{i}"], node=node.name)
            )
        dag.add_function(
            handoffd.Function(
                id="slow", code=slow_say, extra_args=["late", 4.0], node=others[0].name
            )
        )
        run = client.submit(dag)
        wait_for(
            lambda: "said w0" in run.logs() and "said w1" in run.logs(),
            timeout=30,
            what="the quick tasks' output at the owner",
        )
    owner.kill()
    with handoffd.connect(others[1].address) as survivor:
        wait_for(
            lambda: survivor.run(run.id).status().state != "UNKNOWN",
            timeout=60,
            what="a standby took the run over",
        )
        followed = survivor.run(run.id)
        assert followed.wait(60).state == "DONE"
        text = followed.logs()
    assert f"[say0@{others[0].name}] said w0" in text
    assert f"[say1@{others[1].name}] said w1" in text
    assert f"[slow@{others[0].name}] slowly late" in text


def print_then_wait(gate: str) -> str:
    import os
    import time

    print("live line one")
    deadline = time.monotonic() + 120  # bounded: a broken test cannot hang the worker forever
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    print("after the gate")
    return "released"


class _Lines:
    """A subprocess's stdout read line by line in a thread (readline would block the test)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        import threading

        self.lines: list[str] = []
        self._proc = proc
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.lines.append(line.rstrip("\n"))


def _popen_ctl(address: str, *args: str, cwd: Path) -> subprocess.Popen[str]:
    repo = str(Path(__file__).resolve().parents[2])
    return subprocess.Popen(
        [sys.executable, "-m", "handoffd.cli.ctl", "--address", address, *args],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_running_tasks_output_shows_before_it_ends(daemons: Any, tmp_path: Path) -> None:
    """The task blocks until the test has seen its first line: through ``Run.logs()``, then
    through ``handoffctl logs RUN -f``, which then follows the rest and ends with the run."""
    a = daemons.start(cpu=1, memory=1000, wait=False)
    b = daemons.start(cpu=1, memory=1000, seeds=[a.address], wait=False)
    daemons.joined(a, b)
    gate = tmp_path / "gate"
    with handoffd.connect(a.address) as client:
        wait_for(
            lambda: [n.status for n in client.nodes().values()] == ["ALIVE"] * 2,
            timeout=30,
            what="two daemons joined",
        )
        dag = handoffd.DAG()
        # On the other node: the lines travel worker -> executor -> owner.
        dag.add_function(
            handoffd.Function(id="p", code=print_then_wait, extra_args=[str(gate)], node=b.name)
        )
        run = client.submit(dag)
        wait_for(
            lambda: "live line one" in run.logs(),
            timeout=60,
            what="the running task's first line through Run.logs()",
        )
        assert run.status().state == "RUNNING"  # it is still blocked on the gate
        assert run.logs() == f"[p@{b.name}] live line one\n"

        follow = _popen_ctl(a.address, "logs", run.id, "-f", cwd=tmp_path)
        try:
            seen = _Lines(follow)
            wait_for(
                lambda: f"[p@{b.name}] live line one" in seen.lines,
                timeout=60,
                what="the first line through handoffctl logs -f",
            )
            gate.touch()
            assert follow.wait(timeout=60) == 0
            seen._thread.join(timeout=10)
        finally:
            if follow.poll() is None:
                follow.kill()
                follow.wait()
        assert seen.lines == [f"[p@{b.name}] live line one", f"[p@{b.name}] after the gate"]
        assert run.wait(60).state == "DONE" and run.results() == {"p": "released"}
        # Each line once: what left live is not in the attempt's report again.
        assert run.logs() == f"[p@{b.name}] live line one\n[p@{b.name}] after the gate\n"


LIVE_DAG = """
import os
import time
import handoffd

def wait_gate():
    print("waiting for the gate")
    deadline = time.monotonic() + 120
    while not os.path.exists({gate!r}) and time.monotonic() < deadline:
        time.sleep(0.01)
    print("through the gate")
    return 7

dag = handoffd.DAG()
dag.add_function(handoffd.Function(id="g", code=wait_gate))
"""


def test_submit_streams_a_running_tasks_lines(daemons: Any, tmp_path: Path) -> None:
    node = daemons.start(cpu=1, memory=1000)
    gate = tmp_path / "gate"
    (tmp_path / "dag.py").write_text(LIVE_DAG.format(gate=str(gate)))
    submit = _popen_ctl(node.address, "submit", "dag.py", cwd=tmp_path)
    try:
        seen = _Lines(submit)
        wait_for(
            lambda: f"[g@{node.name}] waiting for the gate" in seen.lines,
            timeout=60,
            what="handoffctl submit showing the running task's line",
        )
        gate.touch()
        assert submit.wait(timeout=60) == 0
        seen._thread.join(timeout=10)
    finally:
        if submit.poll() is None:
            submit.kill()
            submit.wait()
    assert seen.lines.count(f"[g@{node.name}] waiting for the gate") == 1
    assert seen.lines.count(f"[g@{node.name}] through the gate") == 1


def test_live_lines_survive_the_owners_death(daemons: Any, tmp_path: Path) -> None:
    """A line seen live at the owner is at the new owner after a takeover; the task, still
    running through it, reports the rest there: each line once."""
    owner = daemons.start(cpu=1, memory=1000, wait=False)
    others = [
        daemons.start(cpu=1, memory=1000, seeds=[owner.address], wait=False) for _ in range(2)
    ]
    daemons.joined(owner, *others)
    gate = tmp_path / "gate"
    with handoffd.connect(owner.address) as client:
        wait_for(
            lambda: [n.status for n in client.nodes().values()] == ["ALIVE"] * 3,
            timeout=30,
            what="three daemons joined",
        )
        dag = handoffd.DAG()
        dag.add_function(
            handoffd.Function(
                id="p", code=print_then_wait, extra_args=[str(gate)], node=others[0].name
            )
        )
        run = client.submit(dag)
        wait_for(
            lambda: "live line one" in run.logs(),
            timeout=60,
            what="the running task's line at the owner",
        )
    owner.kill()
    with handoffd.connect(others[1].address) as survivor:
        followed = survivor.run(run.id)
        wait_for(
            lambda: "live line one" in followed.logs(),
            timeout=60,
            what="the live line at the new owner",
        )
        gate.touch()
        assert followed.wait(60).state == "DONE"
        text = followed.logs()
    name = others[0].name
    assert text == f"[p@{name}] live line one\n[p@{name}] after the gate\n"


def print_wait_print_wait(gate1: str, gate2: str) -> str:
    import os
    import time

    deadline = time.monotonic() + 120  # bounded: a broken test cannot hang the worker forever
    print("before the owner died")
    while not os.path.exists(gate1) and time.monotonic() < deadline:
        time.sleep(0.01)
    print("while nobody noticed")
    while not os.path.exists(gate2) and time.monotonic() < deadline:
        time.sleep(0.01)
    return "ok"


def test_live_lines_sent_to_a_dead_owner_reach_the_new_one(daemons: Any, tmp_path: Path) -> None:
    """A line printed right after the owner was killed goes to it (nobody noticed its death yet)
    and is lost there; the executor sends the running attempt's live text again to the new
    owner, which keeps each piece once."""
    owner = daemons.start(cpu=1, memory=1000, wait=False)
    others = [
        daemons.start(cpu=1, memory=1000, seeds=[owner.address], wait=False) for _ in range(2)
    ]
    daemons.joined(owner, *others)
    gate1, gate2 = tmp_path / "gate1", tmp_path / "gate2"
    with handoffd.connect(owner.address) as client:
        wait_for(
            lambda: [n.status for n in client.nodes().values()] == ["ALIVE"] * 3,
            timeout=30,
            what="three daemons joined",
        )
        dag = handoffd.DAG()
        dag.add_function(
            handoffd.Function(
                id="p",
                code=print_wait_print_wait,
                extra_args=[str(gate1), str(gate2)],
                node=others[0].name,
            )
        )
        run = client.submit(dag)
        wait_for(
            lambda: "before the owner died" in run.logs(),
            timeout=60,
            what="the running task's first line at the owner",
        )
    owner.kill()
    gate1.touch()
    with handoffd.connect(others[1].address) as survivor:
        followed = survivor.run(run.id)
        wait_for(
            lambda: "while nobody noticed" in followed.logs(),
            timeout=60,
            what="the line sent to the dead owner, at the new owner",
        )
        gate2.touch()
        assert followed.wait(60).state == "DONE"
        text = followed.logs()
    name = others[0].name
    assert text == f"[p@{name}] before the owner died\n[p@{name}] while nobody noticed\n"
