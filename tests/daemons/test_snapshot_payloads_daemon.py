"""A run whose arguments are bigger than a frame survives its owner (issue 19, helper snap19).

Three real daemons with ``max_frame_bytes`` 1 MiB; a run owned by A with two 6 MiB arguments: one
of a task pinned to B that waits for a gate file (so the run is mid-way when A dies), one of a
task after it, never dispatched before A dies. Before, the run's snapshot (every payload inside
one frame) was past the standbys' frame limit and dropped there: the standbys never had the run,
and once A was killed the client got ``UnknownRun ... not known to the cluster``. Now the snapshot
leaves the big payloads out, the standbys pull them from A in chunks (each says so in its log),
and after A is killed -9 the new owner puts them back: the run ends DONE with the right results.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest

import handoffd
from handoffd.testing import Daemon, DaemonCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

FRAME = 1 << 20
SIZE = 6 << 20
LIMITS = ["--limit", f"max_frame_bytes={FRAME}"]
_HOLDS = re.compile(r"standby holds its (\d+) big payloads")


def holds(log: str, at_least: int) -> bool:
    """The standby said it holds ``at_least`` big payloads. At least: in a process that imported
    many test modules (the whole suite in one pytest worker) the client's package of local
    modules is itself past the 512 KiB line, one more big payload (CI at 3e307c6)."""
    return any(int(n) >= at_least for n in _HOLDS.findall(log))


HELD, PACKAGE = 2, 1  # the two arguments; the code package


@contextlib.contextmanager
def three() -> Iterator[tuple[Daemon, Daemon, Daemon, handoffd.Client]]:
    """Three daemons with the small frame limit, and a client that knows all three."""
    with DaemonCluster() as daemons:
        a = daemons.start(cpu=2, extra=LIMITS, wait=False)
        b = daemons.start(cpu=2, seeds=[a.address], extra=LIMITS, wait=False)
        c = daemons.start(cpu=2, seeds=[a.address], extra=LIMITS, wait=False)
        daemons.joined(a, b, c)
        with handoffd.connect([a.address, b.address, c.address], timeout=60) as client:
            yield a, b, c, client


def make(size: int, seed: int) -> bytes:
    block = bytes((seed * 31 + i) % 251 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def gated(data: bytes, gate: str) -> int:
    import os
    import time

    deadline = time.monotonic() + 120  # (bounded: the test fails, not hangs)
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.05)
    return zlib.crc32(data)


def after(before: int, data: bytes) -> int:
    return before ^ zlib.crc32(data)


def test_a_run_with_arguments_past_the_frame_limit_survives_its_owner(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    first, second = make(SIZE, 1), make(SIZE, 2)
    with three() as (a, b, c, client):
        dag = handoffd.DAG()
        dag.add_function(
            handoffd.Function(id="f", code=gated, extra_args=[first, gate], node=b.name)
        )
        dag.add_function(handoffd.Function(id="g", code=after, args=["f"], extra_args=[second]))
        run = client.submit(dag)
        assert run.status().owner == a.name
        # Both standbys hold the run and both of its payloads (pulled from A in chunks).
        # (Without them, A is killed all the same: what that cost is the run, UnknownRun.)
        try:
            wait_for(lambda: holds(b.log(), HELD) and holds(c.log(), HELD), 60, 0.1, what="held")
        except TimeoutError:
            pass
        assert run.status().state == "RUNNING"
        a.kill()  # SIGKILL
        killed = time.monotonic()
        Path(gate).touch()
        status = run.wait(timeout=120)
        took = time.monotonic() - killed
        assert status.state == "DONE", status
        assert status.owner in (b.name, c.name)
        expect = zlib.crc32(first)
        assert run.results() == {"f": expect, "g": expect ^ zlib.crc32(second)}, took
        for d in (b, c):
            log = d.log()
            assert holds(log, HELD), log[-3000:]
            assert "never reached this standby" not in log, log[-3000:]
            assert "Traceback" not in log, log[-3000:]
        assert any("took over" in d.log() for d in (b, c))


def uses_module(gate: str) -> str:
    import os
    import time

    deadline = time.monotonic() + 120
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.05)
    import shippedmod  # from the run's code package, extracted on this node

    return shippedmod.VALUE


def also_uses_module(before: str) -> str:
    import shippedmod

    return before + "/" + shippedmod.VALUE + f"/{len(shippedmod.blob())}"


def test_a_code_package_past_the_frame_limit_reaches_nodes_and_standbys(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    project = tmp_path / "project"
    project.mkdir()
    (project / "blob.bin").write_bytes(os.urandom(3 << 19))  # (zipped: as big)
    (project / "shippedmod.py").write_text(
        "import os\nVALUE = 'shipped'\n"
        "def blob():\n"
        "    with open(os.path.join(os.path.dirname(__file__), 'blob.bin'), 'rb') as f:\n"
        "        return f.read()\n"
    )
    with three() as (a, b, c, client):
        dag = handoffd.DAG()
        dag.add_function(
            handoffd.Function(id="f", code=uses_module, extra_args=[gate], node=b.name)
        )
        dag.add_function(handoffd.Function(id="g", code=also_uses_module, args=["f"]))
        run = client.submit(dag, working_dir=str(project))
        assert run.status().owner == a.name
        try:  # (as above: A is killed all the same)
            wait_for(
                lambda: holds(b.log(), PACKAGE) and holds(c.log(), PACKAGE), 60, 0.1, what="held"
            )
        except TimeoutError:
            pass
        a.kill()
        Path(gate).touch()
        status = run.wait(timeout=120)
        assert status.state == "DONE", status
        assert run.results() == {"f": "shipped", "g": f"shipped/shipped/{3 << 19}"}
        for d in (b, c):
            log = d.log()
            assert holds(log, PACKAGE) and "Traceback" not in log, log[-3000:]
            assert "not stored" not in log and "no peer could send" not in log, log[-3000:]
