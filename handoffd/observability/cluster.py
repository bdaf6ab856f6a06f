"""The dashboard's view of the whole cluster, fetched by the HTTP threads as a client would:
``GetNodeInfo`` to every live member (its version, uptime, the runs it owns), ``GetTaskHistory`` and
``GetTaskOutput`` to a run's owner. Each node is asked over its own ZeroMQ connection with the daemon's key, so the
daemons answer these like any client request; results are cached briefly so that many open pages
cost the cluster no more than one."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgpack

from handoffd import errors
from handoffd.protocol import codec
from handoffd.protocol import messages as m
from handoffd.protocol.messages_code import GetTaskOutput, TaskOutputReply
from handoffd.protocol.messages_observability import (
    GetMetrics,
    GetNodeInfo,
    GetTaskHistory,
    MetricsReply,
    TaskHistoryReply,
)
from handoffd.scheduler.history import Frozen, frozen_tasks, summary
from handoffd.transport.client import ControlClient

CLUSTER_TTL = 1.0  # seconds a cluster view is reused
RUN_TTL = 1.0
ASK_TIMEOUT = 2.0
# Characters of task output in one answer to a page (the owner keeps up to 256 Ki per task, a
# run page shows one task's at a time; the rest is asked for again from ``next``).
OUTPUT_CHARS = 256 * 1024
OUTPUT_CACHE = 64  # (run, task, since, seen) answers kept for RUN_TTL


class ClusterFetcher:
    """Asks ``home`` (the daemon this HTTP port belongs to) for its members and metrics, and every
    member for what it owns; ``curve``: the daemon's key."""

    def __init__(self, home: str, curve: Any) -> None:
        self.home = home
        self._curve = curve
        self._name = f"dashboard-{uuid.uuid4().hex[:8]}"
        self._conns: dict[str, ControlClient] = {}
        self._ids = iter(range(1, 1 << 62))
        self._lock = threading.Lock()  # one request at a time per connection: one for all
        self._cluster: tuple[float, dict[str, Any]] | None = None
        self._runs: dict[str, _RunView] = {}
        self._outputs: dict[tuple[str, str, int, str], tuple[float, dict[str, Any] | None]] = {}

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

    def metrics(self) -> dict[str, Any]:
        """The home daemon's /metrics snapshot (``observability.snapshot``)."""
        with self._lock:
            reply = self._ask(self.home, lambda rid: GetMetrics(rid))
        if not isinstance(reply, MetricsReply):
            raise errors.HandoffError(f"{self.home} sent no metrics")
        return msgpack.unpackb(reply.snapshot, raw=False, strict_map_key=False)  # type: ignore[no-any-return]

    def _members(self) -> list[m.MemberState]:
        reply = self._ask(self.home, lambda rid: m.ListNodes(rid))
        return list(reply.members) if isinstance(reply, m.NodeList) else []

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
                            "owner": r.owner if r.changing else member.name,
                            "state": r.state,
                            "counts": dict(r.counts),
                            "term": r.term,
                            "submitted": r.submitted or None,
                            "finished": r.finished or None,
                            "owner_changing": r.changing,
                            "next_owner": r.next_owner or None,
                        }
                        for r in info.runs
                    ]
            nodes.append(node)
        runs = one_per_run(runs)
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

    def output(
        self, run_id: str, task_id: str, since: int = 0, seen: str = ""
    ) -> dict[str, Any] | None:
        """The output entries of ``run_id``'s task ``task_id`` (every task's when "") numbered
        ``since`` or later, at most OUTPUT_CHARS of text, from the run's owner (docs/observability.md
        has the document); None when nobody knows the run. Answers are reused for RUN_TTL (many
        open pages cost the owner one request), per ``seen``: what the asker knew of the task (a
        page sends its state and attempts), so that a page that saw the task move is never
        answered from before the move (its output reaches the owner with that move)."""
        key = (run_id, task_id, since, seen)
        with self._lock:
            cached = self._outputs.get(key)
            if cached is not None and time.monotonic() - cached[0] < RUN_TTL:
                return cached[1]
        reply = self._to_owner(run_id, lambda rid: GetTaskOutput(rid, run_id, task_id, since, 0.0))
        doc = None if not isinstance(reply, TaskOutputReply) else output_document(reply, task_id)
        with self._lock:
            self._outputs[key] = (time.monotonic(), doc)
            while len(self._outputs) > OUTPUT_CACHE:
                del self._outputs[next(iter(self._outputs))]
        return doc

    def run(self, run_id: str) -> _RunView | None:
        """The run's task history (``Run.tasks`` format, merged from the owner's answers: after
        the first, only the tasks that moved since the last one); None when nobody knows it."""
        with self._lock:
            view = self._runs.get(run_id)
            # A large run is asked for less often: what moved in it costs its owner per task.
            if view is not None and time.monotonic() - view.fetched < view.ttl():
                return view
        since = max(0.0, view.now - OVERLAP_S) if view is not None else 0.0
        reply = self._to_owner(run_id, lambda rid: GetTaskHistory(rid, run_id, since, True))
        if not isinstance(reply, TaskHistoryReply):
            return view  # the owner did not answer this time: what we had
        with self._lock:
            if view is None or (reply.owner, reply.term) != (view.owner, view.term):
                if since:  # another owner now: its history from the start
                    reply = self._to_owner(
                        run_id, lambda rid: GetTaskHistory(rid, run_id, 0.0, True)
                    )
                    if not isinstance(reply, TaskHistoryReply):
                        return view
                view = _RunView(reply.owner, reply.term)
                self._runs[run_id] = view
                if len(self._runs) > 64:
                    oldest = min(self._runs, key=lambda k: self._runs[k].fetched)
                    del self._runs[oldest]
            view.merge(reply)
            return view


OVERLAP_S = 1.0  # asked again: tasks that moved within this long before the last answer
TASKS_PER_S = 1000  # a run page is refreshed at most every len(tasks) / this seconds


class _RunView:
    """One run as the dashboard knows it: every task's frozen history (``scheduler.history``
    tuples, as packed by the owner), and per task the version at which it last changed (an event
    stream sends each client only what changed since it last looked). The JSON shapes are built
    only when asked, from the tuples: a large run costs this process little per refresh."""

    def __init__(self, owner: str, term: int) -> None:
        self.owner, self.term = owner, term
        self.tasks: dict[str, Frozen] = {}
        self.changed: dict[str, int] = {}
        self.version = 0
        self.now = 0.0
        self.fetched = 0.0
        self.header: dict[str, Any] = {}

    def merge(self, reply: TaskHistoryReply) -> None:
        self.version += 1
        for t in frozen_tasks(reply):
            if self.tasks.get(t[0]) != t:
                self.tasks[t[0]] = t
                self.changed[t[0]] = self.version
        self.now = reply.now
        self.fetched = time.monotonic()
        started = min((a[3] for t in self.tasks.values() for a in t[3] if a[3]), default=0.0)
        self.header = {
            "run_id": reply.run_id,
            "state": reply.state,
            "owner": reply.owner,
            "term": reply.term,
            "submitted": reply.submitted or None,
            "started": started or None,
            "finished": reply.finished or None,
            "total": reply.total or len(self.tasks),
        }

    def ttl(self) -> float:
        return max(RUN_TTL, len(self.tasks) / TASKS_PER_S)

    def document(self) -> dict[str, Any]:
        """The ``Run.tasks`` document (``handoffctl tasks --json``)."""
        return self.header | {"tasks": [summary(t) for t in self.tasks.values()]}

    def since(self, version: int) -> list[Frozen]:
        return [self.tasks[t] for t, v in self.changed.items() if v > version]


def output_document(reply: TaskOutputReply, task_id: str) -> dict[str, Any]:
    """The JSON of a ``TaskOutputReply``, its text bounded by OUTPUT_CHARS: entries past the bound
    are left for the next request (``more``; ``next`` says from where); a single entry larger than
    the bound keeps its newest characters, with a line saying how many were cut."""
    entries: list[dict[str, Any]] = []
    size, next_seq, more = 0, reply.next, False
    for e in reply.entries:
        text = e.text
        if size + len(text) > OUTPUT_CHARS:
            if entries:  # the page asks again from this one
                next_seq, more = e.seq, True
                break
            cut = len(text) - OUTPUT_CHARS
            text = f"[{cut} characters cut: `handoffctl logs RUN TASK` shows all]\n" + text[cut:]
        entries.append(
            {"seq": e.seq, "task": e.task_id, "attempt": e.attempt, "node": e.node, "text": text}
        )
        size += len(text)
    return {
        "run_id": reply.run_id,
        "task": task_id or None,
        "state": reply.state,
        "entries": entries,
        "next": next_seq,
        "more": more,
    }


def compact(header: dict[str, Any], changed: list[Frozen], full: bool) -> dict[str, Any]:
    """The live part of a run, for server-sent events: the run's header and the tasks that
    changed (all of them when ``full``): state, node, deps, each attempt as [attempt, node, pid,
    state, dispatched, started, ended], and the errors of failed attempts."""
    tasks = [
        {
            "id": task_id,
            "state": state,
            "node": node or None,
            "deps": deps,
            "attempts": [[a[0], a[1], a[6], a[2], a[3], a[4], a[5]] for a in rows],
            "errors": [
                {"attempt": a[0], "node": a[1], "type": a[9], "message": a[10], "traceback": a[11]}
                for a in rows
                if a[9]
            ],
        }
        for task_id, state, node, rows, _transitions, deps in changed
    ]
    return header | {"full": full, "tasks": tasks}


__all__ = ["ClusterFetcher", "compact", "output_document"]


def one_per_run(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs listed by the nodes, one entry per run: a run whose owner is changing is listed
    by each node holding a replica of it (``owner_changing``), and once a new owner is up by it
    too; the owner's entry wins, else the changing entry of the highest term."""
    best: dict[str, dict[str, Any]] = {}
    for r in runs:
        known = best.get(r["run_id"])
        if known is None or _rank(r) > _rank(known):
            best[r["run_id"]] = r
    return list(best.values())


def _rank(r: dict[str, Any]) -> tuple[bool, int]:
    return (not r.get("owner_changing"), r["term"])
