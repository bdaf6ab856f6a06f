"""A node runs with the dispatch timings of its configuration (``--timings`` / [timings])."""

from __future__ import annotations

import pytest

from handoffd.config import DispatchConfig
from handoffd.testing import ThreadedCluster

pytestmark = pytest.mark.timeout(120)


def test_a_node_uses_its_configured_dispatch_timings() -> None:
    dispatch = DispatchConfig(
        ack_timeout=11.0,
        lost_probe_interval=12.0,
        result_fetch_timeout=13.0,
        takeover_answer_timeout=14.0,
    )
    with ThreadedCluster([{"cpu": 1}], dispatch=dispatch) as cluster:
        (node,) = cluster.nodes

        def seen() -> tuple[float, float, float, float]:
            return (
                node.scheduler._lost.ack_timeout,
                node.scheduler._lost.probe_interval,
                node.owner.results._fetch_timeout,
                node.replication.takeovers.answer_timeout,
            )

        assert cluster.run(seen) == (11.0, 12.0, 13.0, 14.0)
