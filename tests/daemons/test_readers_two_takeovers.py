"""Readers follow a run through two takeovers in a row (issue 19, item 6), on real daemons: the
owner is SIGKILLed, then the node that took over is SIGKILLed too, or SIGSTOPped until it is
declared DEAD and then resumed. Readers on the survivors (``client.run(RUN_ID)`` and its
``status`` polled, a ``wait`` and the results, the logs) never get ``UnknownRun`` and every result
is right.

The client's follow grace is cut to 0.5 s here: a takeover then outlasts it, as a 20,000-task
one outlasts the real 30 s on a machine at load 15-20 (bench/repro_takeover_readers.py). Before,
the grace counted from the first "known" answer and a ``wait`` never heard "known" at all, so a
reader got ``UnknownRun`` in the middle of the takeover; now it is counted from the last node that
said the run exists."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from takeover_runs import released_square, submit_under_way, three_daemons

import handoffd
from handoffd import client_conn, client_run
from handoffd.testing import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

cloudpickle.register_pickle_by_value(sys.modules[__name__])

TASKS = 120


def slow_square(i: int, release: str) -> int:
    print(f"task {i}")
    return released_square(i, release)


@pytest.mark.parametrize("second", ["kill", "stop"])
def test_a_reader_follows_a_run_through_two_takeovers(
    daemons: Any, monkeypatch: pytest.MonkeyPatch, second: str, tmp_path: Path
) -> None:
    monkeypatch.setattr(client_conn, "_FOLLOW_GRACE", 0.5)
    monkeypatch.setattr(client_run, "FOLLOW_GRACE", 0.5)
    a, rest = three_daemons(daemons)
    by_name = {d.name: d for d in (a, *rest)}
    release = tmp_path / "release"
    run, _ = submit_under_way(a.address, slow_square, TASKS, 4, str(release))
    a.kill()

    problems: list[str] = []
    terms: list[int] = []
    finished = threading.Event()

    def poll_status(address: str) -> None:
        """``handoffctl status`` in a loop, through one survivor, until the run ends."""
        with handoffd.connect(address, timeout=5.0) as reader:
            while not finished.is_set():
                try:
                    status = reader.run(run.id).status()
                except handoffd.ConnectionError:
                    continue  # the node it follows was stopped: the next call goes elsewhere
                except handoffd.HandoffError as exc:
                    problems.append(f"status via {address}: {type(exc).__name__}: {exc}")
                    return
                if status.state == "UNKNOWN":
                    problems.append(f"status via {address}: UNKNOWN")
                    return
                terms.append(status.term)
                time.sleep(0.05)

    pollers = [threading.Thread(target=poll_status, args=(d.address,)) for d in rest]
    for poller in pollers:
        poller.start()
    outcome: list[Any] = []

    def follow() -> None:
        try:
            with handoffd.connect(rest[0].address, timeout=5.0) as reader:
                followed = reader.run(run.id)
                final = followed.wait(240)
                outcome.append((final, followed.results(), followed.logs("t0")))
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            outcome.append(exc)

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        with handoffd.connect(rest[1].address, timeout=5.0) as watcher:
            wait_for(
                lambda: watcher.run(run.id).status().term >= 1,
                timeout=60,
                what="the first takeover",
            )
            first = watcher.run(run.id).status()
            new_owner = by_name[first.owner]
            survivor = next(d for d in rest if d is not new_owner)
            # The survivor holds the new owner's replica before the second fault hits.
            wait_for(
                lambda: survivor.name in watcher.run(run.id).status().standbys,
                timeout=60,
                what="the new owner's standby",
            )
            done_before = first.counts.get("DONE", 0)
            wait_for(
                lambda: watcher.run(run.id).status().counts.get("DONE", 0) > done_before,
                timeout=60,
                what="progress under the new owner",
            )
        if second == "kill":
            new_owner.kill()
        else:
            os.kill(new_owner.pid, signal.SIGSTOP)
            try:
                wait_for(
                    lambda: f"took over at term {first.term + 1}" in survivor.log(),
                    timeout=60,
                    what="the survivor's takeover",
                )
            finally:
                os.kill(new_owner.pid, signal.SIGCONT)
        # The last fault is made: the tasks left end at once (the run still needs the survivor's
        # takeover, term 2, to end at all).
        release.touch()
        follower.join(260)
    finally:
        finished.set()
        for poller in pollers:
            poller.join(60)
    assert not follower.is_alive(), "the reader hung"
    assert len(outcome) == 1
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    final, results, logs = outcome[0]
    assert final.state == "DONE" and final.counts.get("DONE") == TASKS, final
    assert final.term >= 2
    assert results == {f"t{i}": i * i for i in range(TASKS)}
    assert "task 0" in logs
    assert not problems, problems
    assert max(terms) >= 2
