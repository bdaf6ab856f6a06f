"""``handoffctl runs`` through a survivor while a run's owner changes (issue 19, race19), on real
daemons: the owner is SIGKILLed; until a new owner is up, the listing used to leave the run out
(it listed only runs a node owns); it now lists it from a survivor's replica, marked owner
changing (the old owner, the replicated counts), exactly once, and then the new owner's entry
only. The third daemon is SIGSTOPped meanwhile: the survivor, alone in its view, confirms the
deaths for a few seconds before it takes over (``ISOLATION_HOLD``), so the window is seconds long
on any machine, and is resumed once the survivor owns the run."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import cloudpickle
import pytest

import handoffd
from handoffd.cli import ctl
from handoffd.testing import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

cloudpickle.register_pickle_by_value(sys.modules[__name__])

TASKS = 600


def slow_square(i: int) -> int:
    time.sleep(0.25)
    return i * i


def _runs(capsys: Any, address: str) -> dict[str, Any]:
    code = ctl.main(["--address", address, "--timeout", "0.3", "runs", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)  # type: ignore[no-any-return]


def test_runs_through_a_survivor_lists_a_run_whose_owner_is_changing(
    daemons: Any, capsys: Any
) -> None:
    a = daemons.start(cpu=2, memory=2000)
    rest = [daemons.start(cpu=2, memory=2000, seeds=[a.address]) for _ in range(2)]
    with handoffd.connect(a.address) as client:
        wait_for(
            lambda: [n.status for n in client.nodes().values()] == ["ALIVE"] * 3,
            timeout=30,
            what="three daemons joined",
        )
        dag = handoffd.DAG()
        for i in range(TASKS):
            dag.add_function(handoffd.Function(id=f"t{i}", code=slow_square, extra_args=[i]))
        run = client.submit(dag)
        wait_for(lambda: run.status().counts.get("DONE", 0) >= 6, timeout=60, what="progress")
    listed = [r for r in _runs(capsys, rest[0].address)["runs"] if r["run_id"] == run.id]
    assert [(r["owner"], bool(r.get("owner_changing"))) for r in listed] == [(a.name, False)]
    os.kill(rest[1].pid, signal.SIGSTOP)
    try:
        a.kill()
        _through_the_takeover(capsys, a, rest, run)
    finally:
        os.kill(rest[1].pid, signal.SIGCONT)
    with handoffd.connect(rest[0].address) as reader:  # (the new owner's, through the survivor)
        follow = reader.run(run.id)
        assert follow.status().state == "RUNNING"
        follow.cancel()


def _through_the_takeover(capsys: Any, a: Any, rest: list[Any], run: Any) -> None:
    survivor = rest[0].address
    seen: list[list[dict[str, Any]]] = []
    silent = 0  # listings while the survivor still saw the owner alive (it did not answer)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        doc = _runs(capsys, survivor)
        entries = [r for r in doc["runs"] if r["run_id"] == run.id]
        if not entries and a.name in doc["unanswered"]:
            silent += 1  # (the listing says its runs are not listed)
            continue
        seen.append(entries)
        if entries and not entries[0].get("owner_changing") and entries[0]["owner"] != a.name:
            break
    # Listed in every answer since the owner was no longer seen alive, once each.
    assert all(len(entries) == 1 for entries in seen), [len(e) for e in seen]
    changing = [e[0] for e in seen if e[0].get("owner_changing")]
    assert changing, seen[-3:]
    first = changing[0]
    assert first["owner"] == a.name and first["state"] == "RUNNING"
    assert first["next_owner"] in {"", rest[0].name}  # (the other is stopped: not alive)
    assert sum(first["counts"].values()) == TASKS
    last = seen[-1][0]
    assert not last.get("owner_changing") and last["owner"] == rest[0].name
    print(f"{len(seen)} listings, {len(changing)} with the owner changing, {silent} silent")
