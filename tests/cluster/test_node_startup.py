"""Node start-up: how a node reaches peers that are not listening yet."""

from __future__ import annotations

import pytest
import zmq

from handoffd.daemon.node import PEER_RECONNECT_S
from handoffd.testing import ThreadedCluster

pytestmark = pytest.mark.timeout(120)


def test_peer_sockets_retry_a_refused_connection_at_the_node_cap():
    """A seed that does not listen yet is retried every PEER_RECONNECT_S[1] at most (ZeroMQ's own
    doubling up to 2 s joined daemons started together 0.15-0.26 s late)."""
    with ThreadedCluster([{"cpu": 1}, {"cpu": 1}], transport="zmq") as cluster:
        a, b = cluster.nodes

        def options() -> tuple[int, int]:
            sock = a._transport._peers[b.address].sock
            return sock.getsockopt(zmq.RECONNECT_IVL), sock.getsockopt(zmq.RECONNECT_IVL_MAX)

        assert cluster.run(options) == (
            int(PEER_RECONNECT_S[0] * 1000),
            int(PEER_RECONNECT_S[1] * 1000),
        )
