"""Minority fencing with real daemons, as root in network namespaces (daemon/fencing.py).

Three daemons, one per host namespace of a private segment (netns.py), joined by ``--seed`` to
host 0. Host 2 is cut off the segment: alone it reaches 1 of 3 members, so it refuses new runs
with a clear error (a client inside its namespace is told to retry on another node) and
``handoffctl nodes`` there shows it fenced, while hosts 0 and 1 keep running DAGs. After the heal
host 2 takes runs again. Skipped (with the reason) when namespaces are not available.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from netns import NetnsLab, NsDaemons, checked_lab, wait

_REASON = NetnsLab.unavailable()

pytestmark = [
    pytest.mark.netns,
    pytest.mark.timeout(180),
    pytest.mark.skipif(_REASON is not None, reason=f"netns tests skipped: {_REASON}"),
]

WAIT_S = 30.0

CLIENT_PY = textwrap.dedent(
    """
    import sys

    import handoffd


    def square(x):
        return x * x


    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="a", code=square, args=[], kwargs={"x": 7}))
    try:
        with handoffd.connect(sys.argv[1], timeout=10) as client:
            print("RESULT", client.execute(dag, timeout=30)["a"])
    except handoffd.errors.ConnectionError as exc:
        print("REFUSED", exc)
    """
)


class FencingDaemons(NsDaemons):
    def start(self, i: int, *extra: str) -> None:
        super().start(i, *extra, *(["--seed", self.addr(0)] if i else []))

    def health(self, host: int) -> dict[str, Any]:
        """Its own view of its health (``nodes --json``, asked inside its namespace)."""
        result = self.query(host, host, "--timeout", "2", "nodes", "--json", timeout=60)
        assert result.returncode == 0, result.stderr
        nodes = {n["name"]: n for n in json.loads(result.stdout)["nodes"]}
        return nodes[self.names[host]]["health"] or {}

    def submit(self, host: int, script: str) -> str:
        result = self.lab.exec(
            host, [sys.executable, script, self.addr(host)], timeout=90, env=self.env
        )
        return result.stdout + result.stderr


@pytest.fixture
def daemons(tmp_path: Any) -> Iterator[FencingDaemons]:
    with checked_lab(3) as lab:
        cluster = FencingDaemons(lab, str(tmp_path), "fence")
        try:
            for i in range(3):
                cluster.start(i)
            cluster.wait_started(WAIT_S)
            yield cluster
        finally:
            print(cluster.logs())


def test_a_node_cut_off_alone_refuses_runs_until_the_heal(
    daemons: FencingDaemons, tmp_path: Any
) -> None:
    script = str(tmp_path / "client.py")
    with open(script, "w") as f:
        f.write(CLIENT_PY)
    wait(lambda: daemons.health(2).get("quorum_base") == 3, WAIT_S, "host 2 knows all 3")
    assert "RESULT 49" in daemons.submit(2, script)

    daemons.lab.partition(2)
    fenced = wait(lambda: daemons.health(2).get("fenced"), WAIT_S, "host 2 fenced")
    assert fenced == (
        "this node is in a minority partition (1 of 3 reachable); retry on another node"
    )
    out = daemons.submit(2, script)
    assert "REFUSED" in out and "minority partition (1 of 3 reachable)" in out, out
    assert "RESULT 49" in daemons.submit(0, script)  # the majority keeps working
    assert not daemons.health(0).get("fenced")

    daemons.lab.heal(2)
    wait(lambda: not daemons.health(2).get("fenced"), WAIT_S, "host 2 unfenced after the heal")
    assert "RESULT 49" in daemons.submit(2, script)
    daemons.check_alive()
    assert "fenced: this node is in a minority partition" in daemons.log(2)
