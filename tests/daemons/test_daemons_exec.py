"""Distributed execution on real daemons (subprocesses on loopback): handoffctl exit codes,
a node killed mid-run, a worker process killed mid-task, concurrent runs sharing nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import cloudpickle
import pytest

import handoffd
from handoffd.testing import wait_for

pytestmark = pytest.mark.timeout(240)

CTL = [sys.executable, "-m", "handoffd.cli.ctl"]

# The daemons' workers have no copy of this file: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def submit(address: str, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        CTL + ["--address", address, "submit", path, *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def write(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_submit_exit_codes_0_1_2(shared_pair, tmp_path):
    a, _ = shared_pair
    ok = write(
        tmp_path,
        "ok.py",
        """
        import handoffd

        def square(x):
            return x * x

        def build_dag():
            dag = handoffd.DAG()
            for i in range(4):
                dag.add_function(handoffd.Function(id=f"s{i}", code=square, extra_args=[i]))
            dag.add_function(handoffd.Function(id="total", code=lambda *xs: sum(xs), args=[f"s{i}" for i in range(4)]))
            return dag
    """,
    )
    out = submit(a.address, ok, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["state"] == "DONE" and doc["results"]["total"] == 14
    assert set(doc["placement"]) == {"s0", "s1", "s2", "s3", "total"}
    output = tmp_path / "results.json"
    out = submit(a.address, ok, "--output", str(output))
    assert out.returncode == 0 and json.loads(output.read_text())["total"] == 14

    failing = write(
        tmp_path,
        "failing.py",
        """
        import handoffd
        dag = handoffd.DAG().add_function(handoffd.Function(id="boom", code=lambda: {}["missing"]))
    """,
    )
    out = submit(a.address, failing, "--max-retries", "1")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "KeyError" in out.stdout and "boom" in out.stdout

    for body, needle in [
        ("import handoffd\ndef broken(:\n", "syntax error"),
        ("import handoffd\nx = 1\n", "neither a module-level `dag`"),
        (
            "import handoffd\ndag = handoffd.DAG().add_function(handoffd.Function(id='a', code=len, args=['zz']))\n",
            "missing_dependency",
        ),
        (
            "import handoffd\ndag = handoffd.DAG().add_function(handoffd.Function(id='a', code=len, cost={'cpu': 99}))\n",
            "no live node",
        ),
    ]:
        bad = write(tmp_path, "bad.py", body)
        out = submit(a.address, bad)
        assert out.returncode == 2, (body, out.stdout, out.stderr)
        assert needle in out.stderr, (needle, out.stderr)
    assert submit(a.address, str(tmp_path / "nope.py")).returncode == 2


def test_node_killed_mid_run_the_run_completes(daemons, tmp_path):
    a = daemons.start(cpu=2)
    b = daemons.start(cpu=2, seeds=[a.address])
    c = daemons.start(cpu=2, seeds=[a.address])
    marker = tmp_path / "started"
    # The tasks end only once the victim is dead: one that ended on it before the kill would keep
    # it in the final placement rightly (its value already held), which at high load happened when
    # the first wave ended before the test saw four starts.
    release = tmp_path / "release"
    with handoffd.connect(a.address) as client:
        wait_for(
            lambda: len([n for n in client.nodes().values() if n.status == "ALIVE"]) == 3,
            timeout=30,
            what="3 daemons",
        )
        dag = handoffd.DAG()
        for i in range(12):
            dag.add_function(
                handoffd.Function(
                    id=f"w{i}",
                    code=_gated_square,
                    extra_args=[i, str(marker), str(release)],
                    node=None,
                )
            )
        dag.add_function(
            handoffd.Function(id="sum", code=lambda *xs: sum(xs), args=[f"w{i}" for i in range(12)])
        )
        run = client.submit(dag, policy="spread")
        wait_for(
            lambda: marker.exists() and len(marker.read_text().split()) >= 4,
            timeout=60,
            what="tasks started",
        )
        victim = b if any(p == b.name for p in _running_on(run)) else c
        victim.kill()
        release.touch()
        run.wait(120)
        results = run.results()
        placement = run.placement()
    assert results["sum"] == sum(i * i for i in range(12))
    assert all(results[f"w{i}"] == i * i for i in range(12))
    assert victim.name not in set(placement.values())


def _running_on(run) -> list[str]:
    try:
        return list(run.status().placement.values())
    except Exception:  # noqa: BLE001
        return []


def _gated_square(i, marker, release):
    import os
    import time

    with open(marker, "a") as f:
        f.write(f"{i}\n")
    deadline = time.monotonic() + 90.0  # bounded: the test touches the file right after its kill
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    return i * i


def _die_once(marker):
    import os
    import signal

    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


def test_worker_process_killed_mid_task_is_retried(shared_pair, tmp_path):
    a, _ = shared_pair
    marker = str(tmp_path / "died")
    with handoffd.connect(a.address) as client:
        dag = handoffd.DAG().add_function(
            handoffd.Function(id="fragile", code=_die_once, extra_args=[marker])
        )
        assert client.execute(dag, max_retries=1) == {"fragile": "survived"}
        # with no retries the crash is the run's failure, named as such
        os.unlink(marker)
        with pytest.raises(handoffd.TaskFailed) as info:
            client.execute(dag, max_retries=0)
        assert info.value.exc_type == "WorkerCrashed"


def _hold_whole_node(log, tag):
    import os
    import time

    start = time.time()
    time.sleep(0.4)
    with open(log, "a") as f:
        f.write(f"{tag} {os.getppid()} {start} {time.time()}\n")
    return tag


def test_four_whole_node_runs_on_two_nodes_run_two_per_node(shared_pair, tmp_path):
    a, b = shared_pair
    log = str(tmp_path / "log")
    results: dict[int, object] = {}
    placements: dict[int, str] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            with handoffd.connect(a.address if i % 2 else b.address) as client:
                dag = handoffd.DAG().add_function(
                    handoffd.Function(
                        id="job", code=_hold_whole_node, extra_args=[log, i], cost={"cpu": 2}
                    )
                )
                run = client.submit(dag)
                run.wait(120)
                results[i] = run.results()["job"]
                placements[i] = run.placement()["job"]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors
    assert results == {i: i for i in range(4)}
    per_node: dict[str, list[int]] = {}
    for i, node in placements.items():
        per_node.setdefault(node, []).append(i)
    assert sorted(len(v) for v in per_node.values()) == [2, 2], placements
    # never two whole-node tasks at once on one node
    spans: dict[str, list[tuple[float, float]]] = {}
    for line in open(log).read().splitlines():
        tag, parent, start, end = line.split()
        spans.setdefault(placements[int(tag)], []).append((float(start), float(end)))
    for node, intervals in spans.items():
        intervals.sort()
        for (_s1, e1), (s2, _e2) in zip(intervals, intervals[1:], strict=False):
            assert s2 >= e1 - 0.01, (node, intervals)
