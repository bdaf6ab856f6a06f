"""A dispatch's one-int calls as a start and an int column (protocol 9) between real processes:
an owner of 9 and a node of 8 (``HANDOFFD_TEST_PROTOCOL``: the owner sends it every payload as a
frame), the reverse, and two daemons of 9 run a spread run of ``f(i)`` functions with every
result exact and tasks on both nodes."""

from __future__ import annotations

import sys

import cloudpickle
import pytest

import handoffd
from handoffd.config import PROTOCOL_MIN
from handoffd.protocol.messages_columns import CALLS_SINCE
from handoffd.testing import DaemonCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(240)

EIGHT = {"HANDOFFD_TEST_PROTOCOL": f"{PROTOCOL_MIN}-{CALLS_SINCE - 1}"}


def triple(i: int) -> int:
    return 3 * i + 1


@pytest.mark.parametrize(
    ("owner_env", "node_env"),
    [({}, {}), ({}, EIGHT), (EIGHT, {})],
    ids=("9-and-9", "owner-9-node-8", "owner-8-node-9"),
)
def test_a_one_int_run_across_daemons_of_9_and_8(
    daemons: DaemonCluster, owner_env: dict[str, str], node_env: dict[str, str]
) -> None:
    owner = daemons.start(cpu=2, memory=2000, env=owner_env)
    node = daemons.start(cpu=2, memory=2000, seeds=[owner.address], env=node_env)
    count = 600
    dag = handoffd.DAG()
    for i in range(count):
        dag.add_function(handoffd.Function(id=f"f{i}", code=triple, extra_args=[i - 300]))
    with handoffd.connect(owner.address, timeout=10) as client:
        wait_for(
            lambda: sum(n.status == "ALIVE" for n in client.nodes().values()) == 2,
            30,
            0.1,
            what="2 daemons ALIVE",
        )
        run = client.submit(dag, policy="spread")
        assert run.wait(timeout=120).state == "DONE"
        assert run.results() == {f"f{i}": triple(i - 300) for i in range(count)}
        placed = run.placement()
    assert {owner.name, node.name} == set(placed.values())
