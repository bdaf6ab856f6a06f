"""The run lists while a run's owner changes (issue 19, race19): a node holding a replica of a
run whose owner is not ALIVE lists it (``ReplicationIO.changing_runs``: ``handoffctl runs``'s
``ListOwnedRuns`` and the dashboard's ``GetNodeInfo``), as last replicated and marked owner
changing; the listings keep one entry per run, the owner's once it is up."""

from __future__ import annotations

import json
from typing import Any

from fake_port import envelope
from test_daemon_ports import dies, replica_of, standby_node

import handoffd.errors
from handoffd.cli import ctl_ops
from handoffd.cli.ctl_ops import _one_per_run
from handoffd.daemon.ops import NodeOps, OpsPort, RunTimes
from handoffd.observability.cluster import one_per_run
from handoffd.protocol import messages as m
from handoffd.protocol import messages_ops as ops


def _changing(replication: Any, unanswered: Any = ()) -> list[Any]:
    out: list[Any] = []
    replication.changing_runs(out.extend, unanswered=unanswered)
    return out


def test_a_replica_whose_owner_is_not_alive_is_listed_as_changing() -> None:
    port, replication, _, _ = standby_node()
    msg, frame = replica_of()
    replication.handle(msg, [frame], envelope("o"))
    assert _changing(replication) == []  # its owner is alive: it lists the run itself
    port.set_status("o", m.SUSPECT)
    (run,) = _changing(replication)
    assert (run.run_id, run.owner, run.term, run.next_owner) == ("r1", "o", 0, "s")
    assert run.replicated.state == "RUNNING" and run.replicated.counts["DONE"] == 1
    dies(port, replication, "o")
    assert [r.run_id for r in _changing(replication)] == ["r1"]
    replication.refusal = "fenced"  # the far side may own it: not ours to list
    assert _changing(replication) == []


def test_a_replica_of_an_owner_that_did_not_answer_a_listing_is_listed_though_alive() -> None:
    """Killed a moment ago, the owner is still ALIVE here; a listing it did not answer names it
    (``ListOwnedRuns.unanswered``): its runs are listed from our replica meanwhile (claims19)."""
    port, replication, _, _ = standby_node()
    msg, frame = replica_of()
    replication.handle(msg, [frame], envelope("o"))
    assert _changing(replication, frozenset({"x"})) == []  # (another node's silence)
    (run,) = _changing(replication, frozenset({"o"}))
    assert (run.run_id, run.owner, run.next_owner) == ("r1", "o", "s")
    assert run.replicated.state == "RUNNING" and run.replicated.counts["DONE"] == 1
    asked: list[Any] = []
    node_ops = NodeOps(
        OpsPort(
            "s",
            "s:1",
            "c",
            "0",
            reply=lambda conn, msg: asked.append(msg),
            send=lambda address, msg: None,
            state=lambda: "running",
            owned_runs=lambda: [],
            drain=lambda timeout: None,
            changing_runs=replication.changing_runs,
        ),
        RunTimes(),
    )
    node_ops.handle(ops.ListOwnedRuns(7), b"c")
    node_ops.handle(ops.ListOwnedRuns(8, ("o",)), b"c")
    node_ops.handle(ops.ListOwnedRuns(9, ("o",) * 10_000 + (None,)), b"c")  # (bad: ignored)
    assert [len(r.runs) for r in asked] == [0, 1, 1]
    assert asked[1].runs[0].changing and asked[1].runs[0].owner == "o"


class _Client:
    """A client of ``handoffctl runs``: node a owns r1 and is silent; b holds r1's replica."""

    def __init__(self) -> None:
        info = type("Info", (), {})
        self.members = {}
        for name in ("a", "b"):
            self.members[name] = info()
            self.members[name].status, self.members[name].address = "ALIVE", name
        self.asked: list[tuple[str, Any]] = []

    def nodes(self) -> dict[str, Any]:
        return self.members

    def _ask_node(self, address: str, make: Any) -> Any:
        msg = make(1)
        self.asked.append((address, msg.unanswered))
        if address == "a":
            raise handoffd.errors.ConnectionError("no answer in 0.3s")
        runs = (_owned("r1", "a", changing=True),) if "a" in msg.unanswered else ()
        return ops.OwnedRunList(1, runs)


def test_handoffctl_runs_asks_again_naming_the_nodes_that_did_not_answer(capsys: Any) -> None:
    client = _Client()
    assert ctl_ops.runs(client, as_json=True) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["run_id"], r["owner"], r["owner_changing"]) for r in doc["runs"]] == [
        ("r1", "a", True)
    ]
    assert list(doc["unanswered"]) == ["a"]
    assert client.asked == [("a", ()), ("b", ()), ("b", ("a",))]
    assert ctl_ops.runs(client, as_json=False) == 0
    out = capsys.readouterr()
    assert "owner changing: not answering" in out.out.replace("\n", " ")


def _ops(changing: list[Any], owned: list[tuple[str, Any]]) -> tuple[NodeOps, list[Any]]:
    replies: list[Any] = []
    port = OpsPort(
        name="s",
        address="s:1",
        cluster="c",
        version="0",
        reply=lambda conn, msg: replies.append(msg),
        send=lambda address, msg: None,
        state=lambda: "running",
        owned_runs=lambda: owned,
        drain=lambda timeout: None,
        changing_runs=lambda then, unanswered=(): then(changing),
    )
    return NodeOps(port, RunTimes()), replies


def test_list_owned_runs_adds_the_changing_ones_but_those_owned() -> None:
    port, replication, _, _ = standby_node()
    msg, frame = replica_of()
    replication.handle(msg, [frame], envelope("o"))
    dies(port, replication, "o")
    changing = _changing(replication)
    node_ops, replies = _ops(changing, [])
    node_ops.handle(ops.ListOwnedRuns(5), b"c")
    (listed,) = replies[0].runs
    assert (listed.run_id, listed.owner, listed.changing, listed.next_owner) == (
        "r1",
        "o",
        True,
        "s",
    )
    assert listed.state == "RUNNING" and sum(listed.counts.values()) == 2
    # Its takeover ended meanwhile: owned here, listed once, as ours.
    status = type("St", (), {"state": "RUNNING", "counts": {"DONE": 2}})()
    node_ops, replies = _ops(changing, [("r1", status)])
    node_ops.handle(ops.ListOwnedRuns(6), b"c")
    (listed,) = replies[0].runs
    assert (listed.owner, listed.changing) == ("s", False)


def _owned(run_id: str, owner: str, changing: bool = False) -> ops.OwnedRun:
    return ops.OwnedRun(run_id, "RUNNING", owner, {}, None, None, changing, "")


def test_handoffctl_runs_keeps_one_entry_per_run() -> None:
    listed = [
        _owned("r1", "a", changing=True),  # b's replica
        _owned("r1", "a", changing=True),  # c's
        _owned("r2", "a", changing=True),
        _owned("r2", "b"),  # its new owner is up
        _owned("r3", "c"),
    ]
    kept = _one_per_run(listed)
    assert [(r.run_id, r.owner, r.changing) for r in kept] == [
        ("r1", "a", True),
        ("r2", "b", False),
        ("r3", "c", False),
    ]


def test_the_dashboard_keeps_one_entry_per_run() -> None:
    def entry(run_id: str, owner: str, term: int, changing: bool) -> dict[str, Any]:
        return {"run_id": run_id, "owner": owner, "term": term, "owner_changing": changing}

    runs = [
        entry("r1", "a", 0, True),
        entry("r1", "a", 0, True),
        entry("r2", "a", 0, True),
        entry("r2", "b", 1, False),
    ]
    kept = {r["run_id"]: (r["owner"], r["owner_changing"]) for r in one_per_run(runs)}
    assert kept == {"r1": ("a", True), "r2": ("b", False)}
    assert len(one_per_run(runs)) == 2
