"""Remote node operations through ``handoffctl`` against real daemons: ``nodes`` with version
and uptime, ``runs`` asking every owner, ``drain NODE`` mid-run with no task lost or run twice,
``stop NODE`` of another node, and a mismatched ``--cluster`` warned on both sides, once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import handoffd
from handoffd.testing import wait_for

pytestmark = pytest.mark.timeout(240)

CTL = [sys.executable, "-m", "handoffd.cli.ctl"]

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def ctl(address: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CTL, *args, "--address", address], capture_output=True, text=True, timeout=timeout
    )


def ctl_json(address: str, *args: str) -> Any:
    out = ctl(address, *args, "--json")
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return json.loads(out.stdout)


def test_nodes_show_version_and_uptime_and_runs_ask_every_owner(pair: Any, tmp_path: Path) -> None:
    a, b = pair
    doc = ctl_json(a.address, "nodes")
    by_name = {n["name"]: n for n in doc["nodes"]}
    assert set(by_name) == {a.name, b.name}
    for node in by_name.values():
        assert node["version"] == handoffd.__version__ and node["state"] == "running"
        assert 0 < node["uptime_s"] < 600 and node["warnings"] == []
    text = ctl(a.address, "nodes")
    assert text.returncode == 0 and "VERSION" in text.stdout and "UPTIME" in text.stdout
    dag = tmp_path / "one.py"
    dag.write_text(
        "import handoffd\ndag = handoffd.DAG().add_function(handoffd.Function(id='x', code=abs, extra_args=[-3]))\n"
    )
    ran = [ctl_json(node.address, "submit", str(dag), "--no-wait")["run_id"] for node in (a, b)]
    with handoffd.connect(a.address) as client:
        for run_id in ran:
            client.run(run_id).wait(60)
    doc = ctl_json(b.address, "runs")
    runs = {r["run_id"]: r for r in doc["runs"]}
    assert {runs[ran[0]]["owner"], runs[ran[1]]["owner"]} == {a.name, b.name}
    for run_id in ran:
        r = runs[run_id]
        assert r["state"] == "DONE" and r["counts"]["DONE"] == 1
        assert r["submitted"] is not None and r["finished"] >= r["submitted"]
    assert doc["unanswered"] == {}


RECORDER = """
import os, time
import handoffd

LOG = {log!r}

def work(i):
    with open(os.path.join(LOG, f"{{i}}-{{os.getpid()}}-{{time.monotonic_ns()}}"), "w"):
        pass
    time.sleep(0.4)
    return i

def build_dag():
    dag = handoffd.DAG()
    for i in range(16):
        dag.add_function(handoffd.Function(id=f"w{{i}}", code=work, extra_args=[i]))
    dag.add_function(
        handoffd.Function(id="total", code=lambda *xs: sum(xs), args=[f"w{{i}}" for i in range(16)])
    )
    return dag
"""


def test_drain_a_node_mid_run_loses_no_task_and_runs_none_twice(
    daemons: Any, tmp_path: Path
) -> None:
    a = daemons.start(cpu=2, wait=False)
    b = daemons.start(cpu=2, seeds=[a.address], wait=False)
    daemons.joined(a, b)
    log = tmp_path / "attempts"
    log.mkdir()
    dag = tmp_path / "recorder.py"
    dag.write_text(textwrap.dedent(RECORDER.format(log=str(log))))
    run_id = ctl_json(a.address, "submit", str(dag), "--no-wait", "--policy", "spread")["run_id"]
    with handoffd.connect(a.address) as client:
        # b has started some of the run's tasks: drain it now, mid-run.
        wait_for(
            lambda: (
                client.run(run_id).status().placement
                and any(node == b.name for node in client.run(run_id).status().placement.values())
            ),
            60,
            interval=0.05,
            what="a task placed on b",
        )
        drained = ctl(a.address, "drain", b.name, "--json")
        assert drained.returncode == 0, drained.stderr
        assert json.loads(drained.stdout)["state"] == "drained"
        assert b.process.wait(60) == 0  # its daemon exited by itself
        status = client.run(run_id).wait(120)
        assert status.state == "DONE"
        assert client.run(run_id).results()["total"] == sum(range(16))
        assert client.nodes()[b.name].status == "LEFT"
    attempts: dict[str, int] = {}
    for entry in os.listdir(log):
        task = entry.split("-")[0]
        attempts[task] = attempts.get(task, 0) + 1
    assert attempts == {str(i): 1 for i in range(16)}, attempts  # each ran exactly once


def test_stop_another_node_by_name(pair: Any) -> None:
    a, b = pair
    out = ctl(a.address, "stop", b.name, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"node": b.name, "address": b.address, "state": "stopped"}
    assert b.process.wait(60) == 0
    missing = ctl(a.address, "stop", "nobody")
    assert missing.returncode == 2 and "no node named 'nobody'" in missing.stderr


def test_a_mismatched_cluster_is_warned_on_both_sides_once(daemons: Any) -> None:
    a = daemons.start()
    daemons.cluster = daemons.cluster + "-other"
    b = daemons.start(seeds=[a.address])
    a_line = f"peer {b.name} at {b.address} is in cluster {daemons.cluster!r}"
    b_line = f"peer {a.name} is in cluster"
    wait_for(lambda: a_line in a.log(), 30, what=f"a's warning\n{daemons.logs()}")
    wait_for(lambda: b_line in b.log(), 30, what=f"b's warning\n{daemons.logs()}")
    time.sleep(1.5)  # b keeps trying its seed meanwhile: the warnings stay one per peer
    for d, needle in ((a, f"peer {b.name} "), (b, f"peer {a.name} ")):
        assert d.log().count(needle) == 1, d.log()
    doc = ctl_json(b.address, "nodes")
    (me,) = doc["nodes"]
    assert len(me["warnings"]) == 1 and "--cluster" in me["warnings"][0]
    text = ctl(b.address, "nodes")
    assert f"warning: {b.name}: peer {a.name} is in cluster" in text.stderr


def test_a_node_refused_by_a_keyed_peer_says_so_on_both_sides_once(
    daemons: Any, tmp_path: Path
) -> None:
    key = str(tmp_path / "cluster.key")
    assert subprocess.run([*CTL, "keygen", key], capture_output=True, timeout=60).returncode == 0
    keyed = daemons.start(extra=["--key-file", key])
    keyless = daemons.start(seeds=[keyed.address])  # its local key: the handshake fails
    out_line = f"peer at {keyed.address} refused the connection"
    in_line = "refused a connection from 127.0.0.1"
    wait_for(lambda: out_line in keyless.log(), 30, what=f"the refused side\n{daemons.logs()}")
    wait_for(lambda: in_line in keyed.log(), 30, what=f"the refusing side\n{daemons.logs()}")
    time.sleep(1.5)  # the keyless node retries its seed meanwhile: still one line each
    assert keyless.log().count(out_line) == 1, keyless.log()
    assert keyed.log().count(in_line) == 1, keyed.log()
    doc = ctl_json(keyless.address, "nodes")
    (me,) = doc["nodes"]
    assert any(w.startswith(out_line) and "--key-file" in w for w in me["warnings"]), me
