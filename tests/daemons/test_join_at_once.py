"""Daemons started at the same moment form one cluster (a user starting every machine at once):
all seeded with the first, which is started last, so the others' joins go to an address nobody
listens on yet. Every daemon must come to list every other ALIVE, and a run submitted to any of
them must reach every node. ``DaemonCluster.joined`` is the wait the tests that start daemons side
by side rely on: it must not return while one daemon's view is short."""

from __future__ import annotations

import sys

import cloudpickle
import pytest

import handoffd
from handoffd.testing import free_port

pytestmark = pytest.mark.timeout(180)

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _where(name: str) -> str:
    return name


def test_daemons_started_at_once_with_their_seed_last_form_one_cluster(daemons):
    seed = f"127.0.0.1:{free_port()}"
    others = [daemons.start(cpu=1, seeds=[seed], wait=False) for _ in range(3)]
    first = daemons.start(cpu=1, port=int(seed.rpartition(":")[2]), wait=False)
    group = [first, *others]
    # Generous for a loaded machine: the protocol joins within a seed retry (1 s) and a few
    # gossip rounds (0.1 s) of the last daemon listening.
    daemons.joined(*group, timeout=60)
    dag = handoffd.DAG()
    for d in group:
        dag.add_function(
            handoffd.Function(id=d.name, code=_where, extra_args=[d.name], node=d.name)
        )
    for d in group:
        with handoffd.connect(d.address, timeout=60) as client:
            assert client.execute(dag, timeout=60) == {x.name: x.name for x in group}


def test_joined_waits_for_every_daemons_view(daemons):
    """Two daemons that never heard of each other: each lists only itself, so ``joined`` times
    out naming the first whose view is short; each on its own is a whole cluster of one."""
    a = daemons.start(cpu=1, wait=False)
    b = daemons.start(cpu=1, wait=False)
    daemons.started(a, b)  # (joined's short timeout below is for the views only)
    with pytest.raises(TimeoutError, match=f"daemon {a.name} sees"):
        daemons.joined(a, b, timeout=3)
    daemons.joined(a, timeout=30)
    daemons.joined(b, timeout=30)
