"""The pure parts of observability (issue 16): the HTTP token, the hot-loop histogram, and the
Prometheus collector over a snapshot (parsed back with prometheus-client's own parser)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from handoffd.observability.latency import Buckets
from handoffd.observability.metrics import Exporter
from handoffd.observability.tokens import http_token, token_ok


def test_token_is_derived_from_the_key_and_checked() -> None:
    a, b = http_token(b"A" * 40), http_token(b"B" * 40)
    assert a != b and len(a) == 40 and a == http_token(b"A" * 40)
    assert token_ok(a, None, a) and not token_ok(a, None, b, "") and not token_ok(a)
    assert token_ok(None)  # no key, no token needed


def test_buckets_are_cumulative_with_inf() -> None:
    h = Buckets((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 3.0):
        h.observe(v)
    assert h.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert h.count == 4 and abs(h.sum - 3.65) < 1e-9
    c = h.copy()
    h.observe(0.2)
    assert c.count == 4


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from((0.0, 5e-5, 1e-4, 0.01, 10.0, float("inf"))) | st.floats(0.0, 20.0),
        max_size=30,
    )
)
def test_a_batch_of_observations_counts_as_each_one(values: list[float]) -> None:
    each, batch = Buckets(), Buckets()
    for v in values:
        each.observe(v)
    batch.observe_all(values)
    assert batch.counts == each.counts and batch.count == each.count
    assert batch.sum == each.sum or abs(batch.sum - each.sum) <= 1e-9 * max(1.0, each.sum)


def _snapshot(done: int) -> dict:
    hist = Buckets()
    hist.observe(0.002)
    return {
        "node": "n1",
        "version": "0.1.0",
        "started": 1000.0,
        "now": 1010.0,
        "messages_in": {"TasksReported": done},
        "messages_out": {"DispatchTasks": done},
        "dropped": {"codec_malformed_msgpack": 2},
        "members": {"ALIVE": 2, "SUSPECT": 0, "DEAD": 1, "LEFT": 0},
        "membership": {
            "suspicions": 1,
            "deaths": 1,
            "refutations": 0,
            "probes": 9,
            "probes_failed": 1,
        },
        "health": {
            "fenced": "this node is in a minority partition (1 of 3 reachable); retry elsewhere",
            "reachable": 1,
            "base": 3,
            "health": 3,
            "suspicions_raised": 4,
            "suspicions_wrong": 2,
            "confirmations": 0,
            "late_ticks": 7,
            "suspected": 1,
        },
        "owner_moves": {
            "ASSIGNED": done + 1,
            "DONE": done,
            "retried": 1,
            "policy:binpack": done + 1,
        },
        "owner_tasks": {"DONE": done, "READY": 3},
        "placement_seconds": hist.to_data(),
        "dispatch_seconds": hist.to_data(),
        "takeovers": 1,
        "executor": {"accepted": done, "refused": 0, "done": done, "failed": 1},
        "executor_queued": 2,
        "executor_running": 1,
        "workers": 2,
        "workers_busy": 1,
        "worker_pids": [],
        "store": {"memory_bytes": 10, "spilled_bytes": 0, "values": 1, "spills": 0},
        "decisions": {"place|compiled": 5},
        "free": {"cpu": 1.0},
        "capacity": {"cpu": 2.0},
    }


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_collector_exports_the_snapshot_and_every_name_is_prefixed() -> None:
    state = {"done": 5}
    exporter = Exporter(lambda: _snapshot(state["done"]))
    body, ctype = exporter.render("text/plain")
    assert ctype.startswith("text/plain")
    first = _samples(body.decode())
    assert all(name.startswith("handoffd_") for name, _ in first)
    assert first[("handoffd_owner_tasks_total", (("event", "done"),))] == 5
    assert first[("handoffd_owner_tasks_total", (("event", "retried"),))] == 1
    assert first[("handoffd_messages_in_total", (("type", "TasksReported"),))] == 5
    assert first[("handoffd_members", (("status", "DEAD"),))] == 1
    assert first[("handoffd_placement_seconds_count", ())] == 1
    assert first[("handoffd_workers", (("state", "idle"),))] == 1
    assert first[("handoffd_dropped_messages_total", (("reason", "codec_malformed_msgpack"),))] == 2
    # the node's own view of its health (Lifeguard) and whether it is fenced
    assert first[("handoffd_local_health", ())] == 3
    assert first[("handoffd_membership_suspicions_wrong_total", ())] == 2
    assert first[("handoffd_membership_late_ticks_total", ())] == 7
    assert first[("handoffd_fenced", ())] == 1
    assert first[("handoffd_quorum_reachable", ())] == 1
    state["done"] = 9
    second = _samples(exporter.render("")[0].decode())
    assert second[("handoffd_owner_tasks_total", (("event", "done"),))] == 9


def test_the_grafana_dashboard_uses_only_exported_metrics() -> None:
    import json
    import re
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "handoffd.json"
    dashboard = json.loads(path.read_text())
    exported = {
        family.name
        for family in text_string_to_metric_families(
            Exporter(lambda: _snapshot(1)).render("")[0].decode()
        )
    }
    suffixes = ("_total", "_bucket", "_count", "_sum", "_info")
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"handoffd_[a-z_]+", target["expr"]))
    assert used, "no metric in the dashboard"
    for name in used:
        base = next((name[: -len(s)] for s in suffixes if name.endswith(s)), name)
        assert name in exported or base in exported, f"{name} is not exported"
