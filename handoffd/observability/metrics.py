"""Prometheus metrics of one daemon (docs/observability.md lists them). A custom collector turns a
snapshot of counters the daemon keeps anyway (``snapshot.node_snapshot``, copied on the loop when
/metrics is scraped) into metric families: the hot loop keeps no prometheus object and pays
nothing between scrapes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

from handoffd.observability.latency import Buckets
from handoffd.observability.snapshot import rss_bytes

P = "handoffd_"
# The owner's task moves (RunState.move) exported as attempt events.
_OWNER_EVENTS = {
    "ASSIGNED": "dispatched",
    "DONE": "done",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
    "retried": "retried",
    "lost": "lost",
}


class NodeCollector:
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []  # no describe at registration: that would take a snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        node = s["node"]
        info = InfoMetricFamily(P + "build", "The daemon's version and node name.")
        info.add_metric([], {"version": s["version"], "node": node})
        yield info
        yield GaugeMetricFamily(
            P + "start_time_seconds", "Wall-clock time the daemon started.", value=s["started"]
        )
        owner = CounterMetricFamily(
            P + "owner_tasks",
            "Task attempt events on runs this node owned, by event: dispatched, done, failed "
            "(retries exhausted), retried (own error, retry left), lost (to the cluster), "
            "cancelled.",
            labels=["event"],
        )
        moves = s.get("owner_moves", {})
        for key, event in _OWNER_EVENTS.items():
            owner.add_metric([event], moves.get(key, 0))
        yield owner
        placed = CounterMetricFamily(
            P + "owner_dispatches_by_policy", "Attempts dispatched, by placement policy.",
            labels=["policy"],
        )  # fmt: skip
        for key, n in moves.items():
            if key.startswith("policy:"):
                placed.add_metric([key[7:]], n)
        yield placed
        tasks = GaugeMetricFamily(
            P + "owner_tasks_in_state",
            "Tasks of the runs this node owns (not yet released), by state: READY is queued.",
            labels=["state"],
        )
        for state, n in sorted(s.get("owner_tasks", {}).items()):
            tasks.add_metric([state], n)
        yield tasks
        ex = s.get("executor", {})
        attempts = CounterMetricFamily(
            P + "executed_tasks",
            "Tasks this node's executor accepted, refused, finished (done) or saw fail.",
            labels=["outcome"],
        )
        for outcome in ("accepted", "refused", "done", "failed"):
            attempts.add_metric([outcome], ex.get(outcome, 0))
        yield attempts
        yield GaugeMetricFamily(
            P + "executor_queued_tasks", "Tasks accepted here, not started yet.",
            value=s.get("executor_queued", 0),
        )  # fmt: skip
        yield GaugeMetricFamily(
            P + "executor_tasks", "Tasks accepted here whose outcome is not reported yet.",
            value=s.get("executor_running", 0),
        )  # fmt: skip
        workers = GaugeMetricFamily(
            P + "workers", "Worker processes, busy (running a job) or idle.", labels=["state"]
        )
        busy = s.get("workers_busy", 0)
        workers.add_metric(["busy"], busy)
        workers.add_metric(["idle"], max(0, s.get("workers", 0) - busy))
        yield workers
        yield GaugeMetricFamily(
            P + "worker_memory_bytes", "Resident memory of all worker processes.",
            value=sum(rss_bytes(pid) for pid in s.get("worker_pids", ())),
        )  # fmt: skip
        store = s["store"]
        yield GaugeMetricFamily(
            P + "store_bytes", "Result values held in memory.", value=store["memory_bytes"]
        )
        yield GaugeMetricFamily(
            P + "store_spilled_bytes",
            "Result values spilled to disk.",
            value=store["spilled_bytes"],
        )
        yield GaugeMetricFamily(P + "store_values", "Result values held.", value=store["values"])
        for direction in ("in", "out"):
            msgs = CounterMetricFamily(
                P + f"messages_{direction}",
                f"Messages {'decoded' if direction == 'in' else 'encoded'} by this node, by type.",
                labels=["type"],
            )
            for name, n in sorted(s[f"messages_{direction}"].items()):
                msgs.add_metric([name], n)
            yield msgs
        dropped = CounterMetricFamily(
            P + "dropped_messages",
            "Inbound messages or frames dropped, by reason (codec_*: malformed, admission_*: "
            "refused, transport_*: limits).",
            labels=["reason"],
        )
        for reason, n in sorted(s["dropped"].items()):
            dropped.add_metric([reason], n)
        yield dropped
        members = GaugeMetricFamily(
            P + "members", "Cluster members in this node's view, by status.", labels=["status"]
        )
        for status, n in s.get("members", {}).items():
            members.add_metric([status], n)
        yield members
        ms = s.get("membership", {})
        for key, help_ in (
            ("suspicions", "Members this node saw turn SUSPECT."),
            ("deaths", "Members this node saw declared DEAD."),
            ("refutations", "Suspicions of this node it refuted."),
            ("probes", "Failure-detector probes sent."),
            ("probes_failed", "Probes without an answer in time."),
        ):
            yield CounterMetricFamily(P + "membership_" + key, help_, value=ms.get(key, 0))
        health = s.get("health", {})
        for key, help_ in (
            ("suspicions_raised", "Members this node suspected after its own probe failed."),
            ("suspicions_wrong", "Suspicions this node raised that the member refuted."),
            ("confirmations", "Independent accusers heard for suspicions this node held."),
            ("suspected", "Times this node heard it was suspected or declared DEAD."),
            ("late_ticks", "Times this node's event loop ran a stall late."),
        ):
            yield CounterMetricFamily(P + "membership_" + key, help_, value=health.get(key, 0))
        yield GaugeMetricFamily(
            P + "local_health",
            "Lifeguard local health score (0 healthy; probe timeouts x 1 + score).",
            value=health.get("health", 0),
        )
        yield GaugeMetricFamily(
            P + "fenced",
            "1 while this node is in a minority partition (takes no runs, dispatches nothing).",
            value=1 if health.get("fenced") else 0,
        )
        yield GaugeMetricFamily(
            P + "quorum_reachable",
            "Members of the last known alive membership this node reaches (itself included).",
            value=health.get("reachable", 0),
        )
        yield GaugeMetricFamily(
            P + "quorum_base",
            "Size of the last known alive membership this node counts a quorum of.",
            value=health.get("base", 0),
        )
        yield CounterMetricFamily(
            P + "takeovers", "Runs this node took over as a standby.", value=s.get("takeovers", 0)
        )
        decisions = CounterMetricFamily(
            P + "placement_decisions",
            "Placement-core decisions in this process, by kernel and backend.",
            labels=["kernel", "backend"],
        )
        compiled = total = 0
        for key, n in sorted(s["decisions"].items()):
            kernel, _, backend = key.partition("|")
            decisions.add_metric([kernel, backend], n)
            total += n
            compiled += n if backend == "cython" else 0
        yield decisions
        if total:  # (no share before the first decision)
            yield GaugeMetricFamily(
                P + "placement_compiled_share",
                "Share of this process's placement-core decisions taken by the compiled core.",
                value=compiled / total,
            )
        for kind, cap in (("capacity", "Capacity"), ("free", "Free resources")):
            res = GaugeMetricFamily(
                P + f"resources_{kind}", f"{cap} of this node, by kind.", labels=["kind"]
            )
            for name, qty in sorted(s[kind].items()):
                res.add_metric([name], qty)
            yield res
        for key, name, help_ in (
            ("placement_seconds", "placement_seconds",
             "Time the owner's scheduler took per batch of events (placement pass included)."),
            ("dispatch_seconds", "dispatch_latency_seconds",
             "From an attempt's dispatch to its start on a worker."),
        ):  # fmt: skip
            data = s.get(key)
            if data is not None:
                buckets = Buckets.from_data(data)
                hist = HistogramMetricFamily(P + name, help_)
                hist.add_metric([], buckets.cumulative(), buckets.sum)
                yield hist


class Exporter:
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(snapshot))

    def render(self, accept: str) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


__all__ = ["Exporter", "NodeCollector"]
