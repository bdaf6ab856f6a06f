"""The dashboard's view of the whole cluster, fetched by the HTTP threads as a client would:
``GetNodeInfo`` to every live member (its version, uptime, the runs it owns), ``GetTaskHistory`` to
a run's owner. Each node is asked over its own ZeroMQ connection with the daemon's key, so the
daemons answer these like any client request; results are cached briefly so that many open pages
cost the cluster no more than one."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from handoffd import errors
from handoffd.protocol import codec
from handoffd.protocol import messages as m
from handoffd.protocol.messages_observability import GetNodeInfo, GetTaskHistory, TaskHistoryReply
from handoffd.scheduler.history import document
from handoffd.transport.client import ControlClient

CLUSTER_TTL = 1.0  # seconds a cluster view is reused
RUN_TTL = 1.0
ASK_TIMEOUT = 2.0


class ClusterFetcher:
    """``members``: the local membership's list (called on the daemon's loop by the caller)."""

    def __init__(self, members: Callable[[], list[m.MemberState]], curve: Any) -> None:
        self._members = members
        self._curve = curve
        self._name = f"dashboard-{uuid.uuid4().hex[:8]}"
        self._conns: dict[str, ControlClient] = {}
        self._ids = iter(range(1, 1 << 62))
        self._lock = threading.Lock()  # one request at a time per connection: one for all
        self._cluster: tuple[float, dict[str, Any]] | None = None
        self._runs: dict[str, tuple[float, dict[str, Any]]] = {}

    def close(self) -> None:
        with self._lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()

    def _ask(self, address: str, make: Callable[[int], Any]) -> Any:
        """One request to ``address``; raises HandoffError on no answer."""
        conn = self._conns.get(address)
        if conn is None or conn.disconnected:
            if conn is not None:
                conn.close()
            conn = self._conns[address] = ControlClient(
                address, curve=self._curve, connect_timeout=ASK_TIMEOUT
            )
        msg = make(next(self._ids))
        conn.send(codec.encode(msg, sender=self._name))
        deadline = time.monotonic() + ASK_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            frames = conn.recv(left)
            if frames is None:
                break
            decoded = codec.decode(frames)
            if decoded is not None and getattr(decoded.msg, "request_id", None) == msg.request_id:
                return decoded.msg
        conn.close()
        self._conns.pop(address, None)
        raise errors.ConnectionError(f"{address} did not answer within {ASK_TIMEOUT}s")

    def cluster(self) -> dict[str, Any]:
        """{"nodes": [...], "runs": [...]} (see docs/observability.md)."""
        with self._lock:
            cached = self._cluster
            if cached is not None and time.monotonic() - cached[0] < CLUSTER_TTL:
                return cached[1]
            doc = self._fetch_cluster()
            self._cluster = (time.monotonic(), doc)
            return doc

    def _fetch_cluster(self) -> dict[str, Any]:
        now = time.time()
        nodes, runs = [], []
        for member in sorted(self._members(), key=lambda s: s.name):
            node: dict[str, Any] = {
                "name": member.name,
                "address": member.address,
                "status": m.STATUS_NAMES[member.status],
                "capacity": dict(member.capacity),
                "free": dict(member.free),
                "version": None,
                "uptime_s": None,
                "http_port": None,
            }
            if member.status in (m.ALIVE, m.SUSPECT):
                try:
                    info = self._ask(member.address, lambda rid: GetNodeInfo(rid))
                except (errors.HandoffError, OSError):
                    info = None
                if info is not None and hasattr(info, "runs"):
                    node.update(
                        version=info.version,
                        uptime_s=max(0.0, now - info.started),
                        http_port=info.http_port or None,
                    )
                    runs += [
                        {
                            "run_id": r.run_id,
                            "owner": member.name,
                            "state": r.state,
                            "counts": dict(r.counts),
                            "term": r.term,
                            "submitted": r.submitted or None,
                            "finished": r.finished or None,
                        }
                        for r in info.runs
                    ]
            nodes.append(node)
        runs.sort(key=lambda r: -(r["submitted"] or 0.0))
        return {"time": now, "nodes": nodes, "runs": runs}

    def cancel(self, run_id: str) -> bool:
        """Cancel the run at its owner; False when no node owns it."""
        return self._to_owner(run_id, lambda rid: m.CancelRun(rid, run_id)) is not None

    def _to_owner(self, run_id: str, make: Callable[[int], Any]) -> Any:
        """The owner's answer to a request about ``run_id`` (None: nobody knows the run)."""
        cluster = self.cluster()
        with self._lock:
            owners = [r["owner"] for r in cluster["runs"] if r["run_id"] == run_id]
            by_name = {n["name"]: n["address"] for n in cluster["nodes"]}
            addresses = [by_name[o] for o in owners if o in by_name] + [
                n["address"] for n in cluster["nodes"] if n["status"] in ("ALIVE", "SUSPECT")
            ]
            for address in addresses:
                try:
                    reply = self._ask(address, make)
                    if isinstance(reply, m.RunMoved):
                        reply = self._ask(reply.owner_address, make)
                except (errors.HandoffError, OSError):
                    continue
                if getattr(reply, "state", "UNKNOWN") != "UNKNOWN":
                    return reply
            return None

    def run(self, run_id: str) -> dict[str, Any] | None:
        """The run's task history document (``Run.tasks`` format), None when nobody knows it."""
        with self._lock:
            cached = self._runs.get(run_id)
            if cached is not None and time.monotonic() - cached[0] < RUN_TTL:
                return cached[1]
        reply = self._to_owner(run_id, lambda rid: GetTaskHistory(rid, run_id))
        doc = document(reply) if isinstance(reply, TaskHistoryReply) else None
        with self._lock:
            if doc is not None:
                self._runs[run_id] = (time.monotonic(), doc)
                if len(self._runs) > 64:
                    oldest = min(self._runs, key=lambda k: self._runs[k][0])
                    del self._runs[oldest]
            return doc


def compact(doc: dict[str, Any]) -> dict[str, Any]:
    """The live part of a run document, for server-sent events: task states and attempts without
    transitions, and the tracebacks of failed attempts only."""
    tasks = []
    for t in doc["tasks"]:
        tasks.append(
            {
                "id": t["id"],
                "state": t["state"],
                "node": t["node"],
                "deps": t["deps"],
                "attempts": [
                    [
                        a["attempt"],
                        a["node"],
                        a["pid"],
                        a["state"],
                        a["dispatched"],
                        a["started"],
                        a["ended"],
                    ]
                    for a in t["history"]
                ],
                "errors": [
                    {
                        "attempt": a["attempt"],
                        "node": a["node"],
                        "type": a["exc_type"],
                        "message": a["message"],
                        "traceback": a["traceback"],
                    }
                    for a in t["history"]
                    if a["exc_type"]
                ],
            }
        )
    return {k: v for k, v in doc.items() if k != "tasks"} | {"tasks": tasks}


__all__ = ["ClusterFetcher", "compact"]
