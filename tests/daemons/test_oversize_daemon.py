"""A function whose code and arguments are past a node's ``max_frame_bytes`` (issue 19 item 7): the
run fails at once naming the function, the size, the limit and the flag, instead of its dispatch
being dropped and counted lost every 3 s until the run gave up a minute later. Both ways: the
executing node refuses what it cannot read (``daemon/oversize.refuse``), and an owner does not
send what is past its own limit (``owner_refusal``). The same argument runs where it need not
travel (on the owner itself)."""

from __future__ import annotations

import sys

import cloudpickle
import pytest

import handoffd
from handoffd.errors import HandoffError
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


def test_an_argument_past_a_nodes_frame_limit_fails_the_run_at_once() -> None:
    with DaemonCluster() as daemons:
        a = daemons.start(cpu=2)
        b = daemons.start(cpu=2, seeds=[a.address], extra=["--limit", f"max_frame_bytes={LIMIT}"])
        with handoffd.connect(a.address, timeout=30) as client:
            wait_for(lambda: len(client.nodes()) == 2, 30, what="2 nodes")
            # A's dispatch to B: B cannot read it and says so.
            with pytest.raises(HandoffError) as info:
                client.execute(_dag(b.name), timeout=60)
            text = str(info.value)
            assert "frame_too_large" in text and "'m'" in text, text
            assert f"max_frame_bytes={LIMIT}" in text and b.name in text, text
            assert "--limit max_frame_bytes=BYTES" in text, text
            # On the owner itself it runs (nothing is sent).
            assert client.execute(_dag(a.name), timeout=60) == {"m": (6 << 20) + 7}
        with handoffd.connect(b.address, timeout=30) as client:
            # B owns it: B does not send A what is past its own limit.
            with pytest.raises(HandoffError) as info:
                client.execute(_dag(a.name), timeout=60)
            assert f"max_frame_bytes={LIMIT} of node {b.name!r}" in str(info.value)
            assert client.execute(_dag(b.name), timeout=60) == {"m": (6 << 20) + 7}
        for d in (a, b):
            assert d.alive()
            assert "dispatch counted lost" not in d.log(), d.log()[-3000:]
            assert "Traceback" not in d.log(), d.log()[-3000:]
        assert "refused a dispatch of run" in b.log()
