"""A client moves to another node by itself when its node is fenced (handoffd.client_moves), with
real daemons, as root in network namespaces (netns.py).

Hosts 0-2 run daemons (joined by ``--seed`` to host 0); host 3 runs the client and reaches all
three. Host 2 is cut off from hosts 0 and 1 only (blackhole routes both ways inside their
namespaces), so it is fenced (1 of 3 reachable) while the client still reaches it. A client
given only host 2's address submits there: host 2 refuses, the client learns the other members
from it and the run goes to the majority, once (every execution is recorded in a file). Reading
the run through a client given only host 2's address is answered by the majority too. Skipped
(with the reason) when namespaces are not available.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from netns import IP, NetnsLab, NsDaemons, checked_lab, wait

_REASON = NetnsLab.unavailable()

pytestmark = [
    pytest.mark.netns,
    pytest.mark.timeout(240),
    pytest.mark.skipif(_REASON is not None, reason=f"netns tests skipped: {_REASON}"),
]

WAIT_S = 30.0
CLIENT_HOST = 3

MOVING_CLIENT_PY = textwrap.dedent(
    """
    import os
    import sys
    import time
    from pathlib import Path

    import handoffd


    def noted(i, where):
        Path(where, f"{i}-{os.getpid()}-{time.monotonic_ns()}").touch()
        return i * i


    address, where = sys.argv[1], sys.argv[2]
    dag = handoffd.DAG()
    for i in range(4):
        dag.add_function(
            handoffd.Function(id=f"t{i}", code=noted, kwargs={"i": i, "where": where})
        )
    with handoffd.connect(address, timeout=10) as client:
        run = client.submit(dag)
        print("OWNER", run.owner, flush=True)
        run.wait(60)
        print("RESULT", sorted(run.results().items()), flush=True)
    with handoffd.connect(address, timeout=10) as reader:  # only the fenced node's address
        status = reader.run(run.id).status()
        print("READ", status.state, status.owner, flush=True)
    """
)


def blackhole(lab: NetnsLab, a: int, b: int, action: str) -> None:
    """Drop every packet between hosts ``a`` and ``b`` (``add``), or stop dropping (``del``)."""
    for here, there in ((a, b), (b, a)):
        subprocess.run(
            [IP, "-n", lab.namespace(here), "route", action, "blackhole", f"{lab.address(there)}/32"],
            check=True, capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
        )  # fmt: skip


class MovingDaemons(NsDaemons):
    def start(self, i: int, *extra: str) -> None:
        super().start(i, *extra, *(["--seed", self.addr(0)] if i else []))

    def health(self, host: int) -> dict[str, Any]:
        """Host ``host``'s own view of its health, asked from the client host."""
        result = self.query(CLIENT_HOST, host, "--timeout", "2", "nodes", "--json")
        assert result.returncode == 0, result.stderr
        nodes = {n["name"]: n for n in json.loads(result.stdout)["nodes"]}
        return nodes[self.names[host]]["health"] or {}


@pytest.fixture
def daemons(tmp_path: Any) -> Iterator[MovingDaemons]:
    with checked_lab(4) as lab:
        cluster = MovingDaemons(lab, str(tmp_path), "moves")
        try:
            for i in range(3):
                cluster.start(i)
            cluster.wait_started(WAIT_S)
            yield cluster
        finally:
            print(cluster.logs())


def test_a_client_of_a_fenced_node_moves_its_run_to_the_majority(
    daemons: MovingDaemons, tmp_path: Any
) -> None:
    script, runs = str(tmp_path / "client.py"), tmp_path / "runs"
    runs.mkdir()
    os.chmod(runs, 0o777)
    with open(script, "w") as f:
        f.write(MOVING_CLIENT_PY)
    wait(lambda: daemons.health(2).get("quorum_base") == 3, WAIT_S, "host 2 knows all 3")

    blackhole(daemons.lab, 2, 0, "add")
    blackhole(daemons.lab, 2, 1, "add")
    fenced = wait(lambda: daemons.health(2).get("fenced"), WAIT_S, "host 2 fenced")
    assert "minority partition (1 of 3 reachable)" in fenced
    result = daemons.lab.exec(
        CLIENT_HOST,
        [sys.executable, script, daemons.addr(2), str(runs)],
        timeout=150,
        env=daemons.env,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    owner = next(line.split()[1] for line in out.splitlines() if line.startswith("OWNER"))
    assert owner in daemons.names[:2], out
    assert f"RESULT {[(f't{i}', i * i) for i in range(4)]}" in out, out
    assert "READ DONE" in out, out
    assert sorted(int(p.name.split("-")[0]) for p in runs.iterdir()) == [0, 1, 2, 3]

    blackhole(daemons.lab, 2, 0, "del")
    blackhole(daemons.lab, 2, 1, "del")
    wait(lambda: not daemons.health(2).get("fenced"), WAIT_S, "host 2 unfenced after the heal")
    daemons.check_alive()
    assert sorted(int(p.name.split("-")[0]) for p in runs.iterdir()) == [0, 1, 2, 3]
