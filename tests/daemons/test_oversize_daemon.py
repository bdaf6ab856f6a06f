"""A function whose code and arguments are past a node's ``max_frame_bytes`` (issue 19 item 7):
it runs there anyway, its argument kept by the owner and pulled by the node in chunks under its
limit (``store.chunks``; before helper chunk19 the run failed at once with ``frame_too_large``, and
before that its dispatch was dropped and counted lost every 3 s). Both ways, and on the owner
itself. An argument past ``max_value_bytes`` still fails the run at once, naming that limit
(``tests/daemons/test_chunked_values_daemon.py``)."""

from __future__ import annotations

import sys

import cloudpickle
import pytest

import handoffd
from handoffd.testing import DaemonCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LIMIT = 4 << 20


def measure(data: bytes) -> int:
    return len(data) + data[-1]


def _dag(node: str) -> handoffd.DAG:
    dag = handoffd.DAG()
    big = bytes(6 << 20)[:-1] + b"\x07"
    dag.add_function(handoffd.Function(id="m", code=measure, extra_args=[big], node=node))
    return dag


def test_an_argument_past_a_nodes_frame_limit_goes_by_reference() -> None:
    with DaemonCluster() as daemons:
        a = daemons.start(cpu=2)
        b = daemons.start(cpu=2, seeds=[a.address], extra=["--limit", f"max_frame_bytes={LIMIT}"])
        with handoffd.connect(a.address, timeout=30) as client:
            wait_for(lambda: len(client.nodes()) == 2, 30, what="2 nodes")
            # A's dispatch to B: the argument stays on A, B pulls it in chunks it can read.
            assert client.execute(_dag(b.name), timeout=60) == {"m": (6 << 20) + 7}
            # On the owner itself it runs (nothing is sent).
            assert client.execute(_dag(a.name), timeout=60) == {"m": (6 << 20) + 7}
        with handoffd.connect(b.address, timeout=30) as client:
            # B owns it: B keeps the argument, A pulls it.
            assert client.execute(_dag(a.name), timeout=60) == {"m": (6 << 20) + 7}
            assert client.execute(_dag(b.name), timeout=60) == {"m": (6 << 20) + 7}
        for d in (a, b):
            assert d.alive()
            assert "dispatch counted lost" not in d.log(), d.log()[-3000:]
            assert "Traceback" not in d.log(), d.log()[-3000:]
            assert "refused a dispatch of run" not in d.log(), d.log()[-3000:]
