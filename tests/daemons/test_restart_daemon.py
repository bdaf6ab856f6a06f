"""A node killed and restarted under the same --name at a new address rejoins (issue 19): the
others see it ALIVE at its new address within a few probe intervals and place work there, whether
it comes back after they declared it DEAD or while they still suspect its old incarnation."""

from __future__ import annotations

import sys
import time

import cloudpickle
import pytest

import handoffd
from handoffd.testing import DaemonCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def where(x: int) -> int:
    return x + 1


def pinned_dag(node: str) -> handoffd.DAG:
    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="there", code=where, extra_args=[41], node=node))
    return dag


@pytest.mark.parametrize("wait_dead", [True, False], ids=["after-dead", "while-suspected"])
def test_a_node_restarted_at_a_new_address_rejoins_and_gets_work(wait_dead: bool) -> None:
    with DaemonCluster() as daemons:
        a = daemons.start(cpu=1, memory=1000)
        b = daemons.start(cpu=1, memory=1000, seeds=[a.address])
        c = daemons.start(cpu=1, memory=1000, seeds=[a.address], name=f"c-{daemons.cluster}")
        with handoffd.connect(a.address, timeout=10) as client:

            def view() -> dict[str, tuple[str, str]]:
                return {k: (n.status, n.address) for k, n in client.nodes().items()}

            wait_for(lambda: [s for s, _ in view().values()] == ["ALIVE"] * 3, 30, what="joined")
            c.kill()
            if wait_dead:
                wait_for(lambda: view()[c.name][0] == "DEAD", 30, what="c declared DEAD")
            else:
                # Suspected (or already DEAD) by both: a restart that reaches a member still
                # holding the old incarnation ALIVE and heard from within 0.5 s is taken for a
                # second daemon with the name, and the newcomer stops (daemon/names.py). Under
                # load, b's view lagged that long after the kill (CI at f4e95d8; 5 of 6 runs with
                # 3 CPU hogs, the same on fdd4ab8).
                with handoffd.connect(b.address, timeout=10) as client_b:
                    wait_for(
                        lambda: (
                            view()[c.name][0] != "ALIVE"
                            and client_b.nodes()[c.name].status != "ALIVE"
                        ),
                        30,
                        what="c suspected by a and b",
                    )
            again = daemons.start(cpu=1, memory=1000, seeds=[b.address], name=c.name)
            assert again.address != c.address
            started = time.monotonic()
            wait_for(
                lambda: view()[c.name] == ("ALIVE", again.address),
                30,
                what="the restarted node ALIVE at its new address",
            )
            print(f"rejoined in {time.monotonic() - started:.2f} s (wait_dead={wait_dead})")
            assert client.execute(pinned_dag(c.name), timeout=60) == {"there": 42}
        assert a.alive() and b.alive() and again.alive()
