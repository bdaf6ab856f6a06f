"""Two live daemons started with one --name (issue 19): the newcomer is told by a member that
sees both, stops with exit code 2 and says why; the running one keeps running and logs it."""

from __future__ import annotations

import pytest

import handoffd
from handoffd.testing import DaemonCluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_a_second_daemon_with_a_running_nodes_name_is_refused_on_both_sides() -> None:
    with DaemonCluster() as daemons:
        a = daemons.start(cpu=1)
        b = daemons.start(cpu=1, seeds=[a.address], name=f"b-{daemons.cluster}")
        with handoffd.connect(a.address, timeout=10) as client:
            wait_for(
                lambda: [n.status for n in client.nodes().values()] == ["ALIVE"] * 2,
                30,
                what="two daemons joined",
            )
            # Another cluster object for the twin: its own workdir, so b's log file stays b's.
            with DaemonCluster(cluster=daemons.cluster) as others:
                twin = others.start(cpu=1, seeds=[a.address], name=b.name, wait=False)
                assert twin.process.wait(30) == 2
                said = f"another daemon named {b.name!r} is running at {b.address}"
                assert said in twin.log(), twin.log()[-3000:]
            assert client.nodes()[b.name].address == b.address
        wait_for(lambda: "was started with our name" in b.log(), 30, what="b told of the twin")
        assert a.alive() and b.alive()
