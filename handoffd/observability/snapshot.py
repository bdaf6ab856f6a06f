"""What /metrics and the dashboard read of a daemon, copied on the daemon's loop (the HTTP thread
never touches live state): a plain dict of numbers and small dicts. It reads counters the parts
keep anyway; only a task count by state walks the live runs, and only when asked."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from handoffd import __version__
from handoffd._core import api
from handoffd.protocol import messages as m
from handoffd.protocol.messages import MESSAGES

if TYPE_CHECKING:
    from handoffd.daemon.node import Node


def node_snapshot(node: Node) -> dict[str, Any]:
    """Everything /metrics exports, as plain data; call on the node's loop."""
    snap: dict[str, Any] = {
        "node": node.name,
        "version": __version__,
        "started": node.started_wall,
        "now": time.time(),
    }
    codec = node.codec.stats
    snap["messages_in"] = {_type_name(t): n for t, n in codec.decoded_by_type.items()}
    snap["messages_out"] = {_type_name(t): n for t, n in codec.encoded_by_type.items()}
    dropped = {f"codec_{k}": v for k, v in codec.dropped.items()}
    dropped.update({f"admission_{k}": v for k, v in node.drops.counts.items()})
    transport = getattr(node._transport, "stats", None)
    if transport is not None:
        dropped.update({f"transport_{k}": v for k, v in transport.reasons.items()})
    snap["dropped"] = dropped
    membership = node.membership
    if membership is not None:
        by_status = dict.fromkeys(m.STATUS_NAMES, 0)
        for member in membership.members():
            by_status[m.STATUS_NAMES[member.status]] += 1
        snap["members"] = by_status
        c = membership.counters
        snap["membership"] = {
            "refutations": c.refutations,
            "probes": c.probes,
            "probes_failed": c.probes_failed,
            "suspicions": node.suspicions,
            "deaths": node.deaths,
        }
        snap["health"] = node.health_view()  # Lifeguard's score, suspicions, fencing
    scheduler = node.scheduler
    if scheduler is not None:
        snap["owner_moves"] = dict(scheduler.counters)
        states: dict[str, int] = {}
        for run_id in scheduler.runs():
            run = scheduler.run_state(run_id)
            if run is None:
                continue
            for state, n in run.counts().items():
                states[state] = states.get(state, 0) + n
        snap["owner_tasks"] = states
    if node.owner is not None:
        snap["placement_seconds"] = node.owner.placement_seconds.to_data()
        snap["dispatch_seconds"] = node.owner.dispatch_seconds.to_data()
    if node.replication is not None:
        snap["takeovers"] = len(node.replication.takeover_seconds)
    executor = node.executor
    if executor is not None:
        ex = executor.state
        snap["executor"] = dict(ex.counters)
        snap["executor_queued"] = len(ex.local)
        snap["executor_running"] = ex.running_count()
    pool = node.pool
    if pool is not None:
        snap["workers"] = pool.workers
        snap["workers_busy"] = pool.busy
        snap["worker_pids"] = pool.worker_pids()
    store = node.store.stats
    snap["store"] = {
        "memory_bytes": store.in_memory_bytes,
        "spilled_bytes": store.spilled_bytes,
        "values": store.values,
        "spills": store.spills,
    }
    snap["decisions"] = {f"{k}|{b}": n for (k, b), n in api.decisions().items()}
    snap["free"] = dict(node.ledger.free)
    snap["capacity"] = dict(node.ledger.capacity)
    return snap


def _type_name(type_id: int) -> str:
    cls = MESSAGES.get(type_id)
    return cls.__name__ if cls is not None else str(type_id)


def rss_bytes(pid: int) -> int:
    """A process's resident memory (Linux /proc; 0 when unknown)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


try:
    import os

    _PAGE = os.sysconf("SC_PAGE_SIZE")
except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux
    _PAGE = 4096


__all__ = ["node_snapshot", "rss_bytes"]
