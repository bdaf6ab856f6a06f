"""The answer to ``GetNodeInfo`` (the dashboard's cluster page): this daemon's version, start time,
HTTP port and the runs it owns, with their times. Built on the daemon's loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from handoffd import __version__
from handoffd.observability.snapshot import node_snapshot
from handoffd.protocol.messages_observability import MetricsReply, NodeInfoReply, RunInfo

if TYPE_CHECKING:
    from handoffd.daemon.node import Node

MAX_RUNS = 200  # the newest runs listed per node


def node_info(node: Node, request_id: int, changing: Sequence[Any] = ()) -> NodeInfoReply:
    """``changing``: the runs whose owner is changing that the node holds replicas of
    (``ReplicationIO.changing_runs``), listed after those it owns (as last replicated)."""
    runs: list[RunInfo] = []
    scheduler = node.scheduler
    owned: set[str] = set()
    if scheduler is not None:
        owned = set(scheduler.runs())
        for run_id in scheduler.runs()[-MAX_RUNS:]:
            h = scheduler.run_times(run_id)
            live = scheduler.run_state(run_id)
            if live is not None:  # counts only: a status would build the placement too
                runs.append(RunInfo(run_id, live.state, live.counts(), live.term, h[0], h[1]))
                continue
            st = scheduler.run_status(run_id)
            if st is not None:
                runs.append(RunInfo(run_id, st.state, dict(st.counts), st.term, h[0], h[1]))
    for c in changing:
        if c.run_id in owned:
            continue  # (its takeover ended meanwhile: listed above)
        state, counts = "UNKNOWN", {}
        if c.replicated is not None:
            state, counts = c.replicated.state, dict(c.replicated.counts)
        runs.append(
            RunInfo(
                run_id=c.run_id,
                state=state,
                counts=counts,
                term=c.term,
                submitted=0.0,
                finished=0.0,
                changing=True,
                owner=c.owner,
                next_owner=c.next_owner,
            )
        )
    http = node.http
    return NodeInfoReply(
        request_id,
        node.name,
        __version__,
        node.started_wall,
        http.port if http is not None else 0,
        tuple(runs),
    )


def metrics_reply(node: Node, request_id: int) -> MetricsReply:
    return MetricsReply(request_id, msgpack.packb(node_snapshot(node), use_bin_type=True))


__all__ = ["metrics_reply", "node_info"]
