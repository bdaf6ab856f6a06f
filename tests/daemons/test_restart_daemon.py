"""A node killed and restarted under the same --name at a new address rejoins (issue 19): the
others see it ALIVE at its new address within a few probe intervals and place work there, whether
it comes back after they declared it DEAD, while they still suspect its old incarnation, or right
after the kill, before anyone suspects it (then a member may still hold the old process ALIVE and
heard from within 0.5 s: that is no second daemon with the name, daemon/names.py)."""

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


@pytest.mark.parametrize(
    "wait",
    ["dead", "suspected", "nothing"],
    ids=["after-dead", "while-suspected", "right-after-kill"],
)
def test_a_node_restarted_at_a_new_address_rejoins_and_gets_work(wait: str) -> None:
    with DaemonCluster() as daemons:
        a = daemons.start(cpu=1, memory=1000, wait=False)
        b = daemons.start(cpu=1, memory=1000, seeds=[a.address], wait=False)
        c = daemons.start(
            cpu=1, memory=1000, seeds=[a.address], name=f"c-{daemons.cluster}", wait=False
        )
        daemons.joined(a, b, c)
        with handoffd.connect(a.address, timeout=10) as client:

            def view() -> dict[str, tuple[str, str]]:
                return {k: (n.status, n.address) for k, n in client.nodes().items()}

            wait_for(lambda: [s for s, _ in view().values()] == ["ALIVE"] * 3, 30, what="joined")
            c.kill()
            if wait == "dead":
                wait_for(lambda: view()[c.name][0] == "DEAD", 30, what="c declared DEAD")
            elif wait == "suspected":
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

            def rejoined() -> bool:
                assert again.alive(), "the restart stopped: " + again.log()[-2000:]
                return view()[c.name] == ("ALIVE", again.address)

            wait_for(
                rejoined,
                30,
                what="the restarted node ALIVE at its new address",
            )
            print(f"rejoined in {time.monotonic() - started:.2f} s (wait={wait})")
            assert client.execute(pinned_dag(c.name), timeout=60) == {"there": 42}
        assert a.alive() and b.alive() and again.alive()
