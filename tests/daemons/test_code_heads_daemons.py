"""A function's code once a run (protocol 6, ``SubmitColumns.heads``) between real processes: a
client of 6 and a daemon of 5 (``HANDOFFD_TEST_PROTOCOL``), and the reverse, run a DAG of several
codes (module functions, closures, a lambda; many functions sharing one code) with the right
results; an owner killed mid-run hands its run, snapshotted with heads, to a standby that runs
every task (none twice on the surviving nodes) to the right results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import handoffd
from handoffd.config import PROTOCOL_MAX, PROTOCOL_MIN
from handoffd.daemon.owner_submit import OFF_LOOP_TASKS
from handoffd.protocol.messages_submit import HEADS_SINCE, _reads_heads
from handoffd.testing import DaemonCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(240)


def _square(x: int, *rest: int) -> int:
    return x * x + sum(rest)


def _scaled(k: int) -> Any:
    def scaled(x: int, *rest: int) -> int:
        return k * x + sum(rest)

    return scaled


def mixed(n: int) -> tuple[handoffd.DAG, dict[str, int]]:
    """``n`` functions of four codes (two closures of one code object over different constants,
    so two heads), every fifth one consuming the one before it; and what each returns."""
    codes = [_square, _scaled(3), _scaled(7), lambda x, *rest: -x + sum(rest)]
    dag, want = handoffd.DAG(), {}
    for i in range(n):
        code = codes[i % len(codes)]
        deps = [f"f{i - 1}"] if i % 5 == 4 else []
        dag.add_function(handoffd.Function(id=f"f{i}", code=code, args=deps, extra_args=[i]))
        want[f"f{i}"] = code(*[want[d] for d in deps], i)  # (results first, then literals)
    return dag, want


def test_a_client_of_6_runs_a_dag_of_several_codes_on_a_daemon_of_5(
    daemons: DaemonCluster,
) -> None:
    daemons.env["HANDOFFD_TEST_PROTOCOL"] = f"{PROTOCOL_MIN}-{HEADS_SINCE - 1}"
    daemon = daemons.start(cpu=2)
    dag, want = mixed(40)
    with handoffd.connect(daemon.address, timeout=30) as client:
        assert client.execute(dag) == want
        assert client._daemon_max() == HEADS_SINCE - 1 and not _reads_heads(5)
        assert client.submit(dag).results() == want


_OLD_CLIENT = """
import json, sys
sys.path.insert(0, {here!r})
import handoffd
from handoffd.protocol.messages_submit import _reads_heads
from test_code_heads_daemons import mixed
dag, want = mixed(40)
with handoffd.connect({address!r}, timeout=30) as client:
    got = client.execute(dag)
    print(json.dumps({{"same": got == want, "heads": _reads_heads(client._daemon_max()),
                      "daemon_max": client._daemon_max()}}))
"""


def test_a_client_of_5_runs_a_dag_of_several_codes_on_a_daemon_of_6(
    daemons: DaemonCluster,
) -> None:
    daemon = daemons.start(cpu=2)
    here = str(Path(__file__).parent)
    script = _OLD_CLIENT.format(here=here, address=daemon.address)
    env = dict(os.environ, HANDOFFD_TEST_PROTOCOL=f"{PROTOCOL_MIN}-{HEADS_SINCE - 1}")
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    said = json.loads(out.stdout.strip().splitlines()[-1])
    assert said == {"same": True, "heads": False, "daemon_max": PROTOCOL_MAX}
    dag, want = mixed(40)  # and this client of 6, with heads, on the same daemon
    with handoffd.connect(daemon.address, timeout=30) as client:
        assert client.execute(dag) == want and _reads_heads(client._daemon_max())


def _counted(path: str, code: Any) -> Any:
    def run(x: int, *rest: int) -> int:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:  # (one write in append mode: lines from parallel workers never interleave)
            os.write(fd, f"{x} {os.getppid()}\n".encode())
        finally:
            os.close(fd)
        time.sleep(0.01)
        return code(x, *rest)  # type: ignore[no-any-return]

    return run


def test_a_takeover_from_a_snapshot_with_heads_runs_each_task_once(
    daemons: DaemonCluster, tmp_path: Path
) -> None:
    first = daemons.start(cpu=2, memory=2000)
    rest = [daemons.start(cpu=2, memory=2000, seeds=[first.address]) for _ in range(2)]
    path = str(tmp_path / "ran")
    codes = [_counted(path, _square), _counted(path, _scaled(3)), _counted(path, _scaled(7))]
    n = OFF_LOOP_TASKS + 200  # (built off the loop: its snapshot's specs go as columns, heads)
    dag, want = handoffd.DAG(), {}
    for i in range(n):
        code = codes[i % 3]
        dag.add_function(handoffd.Function(id=f"f{i}", code=code, extra_args=[i]))
        want[f"f{i}"] = [_square, _scaled(3), _scaled(7)][i % 3](i)
    with handoffd.connect(first.address, timeout=10) as client:
        wait_for(
            lambda: [n.status for n in client.nodes().values()] == ["ALIVE"] * 3,
            timeout=30,
            what="three daemons joined",
        )
        assert _reads_heads(client._daemon_max())
        run = client.submit(dag)
        status = run.status()
        assert status.owner == first.name
        # (2 standbys: a member SUSPECT for a moment under load is left out at the submit and
        # chosen again when it is ALIVE: ``members_changed`` re-chooses them)
        wait_for(lambda: len(run.status().standbys) == 2, 30, 0.05, what="2 standbys")
        wait_for(lambda: run.status().counts.get("DONE", 0) >= 0.3 * n, 60, 0.01, what="30 %")
        first.kill()
        final = run.wait(timeout=120)
        assert final.state == "DONE" and final.owner != first.name and final.term == 1
        assert run.results() == want
    survivors = {d.pid for d in rest}
    ran: dict[int, list[int]] = {}
    for line in Path(path).read_text().splitlines():
        task, parent = map(int, line.split())
        ran.setdefault(task, []).append(parent)
    assert sorted(ran) == list(range(n))  # every task ran
    # (a worker's parent is its daemon: the survivors ran tasks, so the check below is real)
    assert sum(parent in survivors for parents in ran.values() for parent in parents) >= n // 3
    twice = {t: p for t, p in ran.items() if sum(parent in survivors for parent in p) > 1}
    assert not twice, f"ran more than once on the surviving nodes: {twice}"
