"""A big submission does not hold the daemon (issue 19, item 7): while a 100,000-task upload that
is already whole is being decoded and checked, small runs from another client keep being taken,
run and answered. Ordering only: a small run submitted after the big upload's last piece was
taken finishes before the big run is accepted. (Before, the whole upload was decoded and checked
on the event loop, so nothing submitted after its last piece was answered before it.) The
largest loop stall is printed by bench/bench_loop_stall.py, not asserted."""

from __future__ import annotations

import sys
import threading
from typing import Any

import cloudpickle
import pytest

import handoffd
from handoffd import client_upload
from handoffd.testing import DaemonCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TASKS = 100_000


def tiny(x: int) -> int:
    return x + 1


def test_small_runs_finish_while_a_big_submission_is_taken_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uploaded = threading.Event()  # the big upload's last piece was taken by the daemon
    original = client_upload.send

    def send(client: Any, frames: list[Any]) -> None:
        original(client, frames)
        if len(frames) > TASKS:
            uploaded.set()

    monkeypatch.setattr(client_upload, "send", send)
    with DaemonCluster() as daemons:
        d = daemons.start(cpu=2, memory=4000)
        big = handoffd.DAG()
        for i in range(TASKS):
            big.add_function(handoffd.Function(id=f"t{i}", code=abs, extra_args=[-i]))
        accepted = threading.Event()
        outcome: dict[str, Any] = {}

        def submit_big() -> None:
            try:
                with handoffd.connect(d.address, timeout=240) as client:
                    run = client.submit(big)
                    accepted.set()  # the owner holds all its tasks and runs them
                    outcome["counts"] = run.status().counts
                    wait_for(lambda: run.status().counts.get("DONE", 0) > 0, 120, what="tasks")
                    run.cancel()
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                outcome["error"] = exc
            finally:
                accepted.set()

        with handoffd.connect(d.address, timeout=60) as small:
            one = handoffd.DAG().add_function(handoffd.Function(id="s", code=tiny, extra_args=[1]))
            assert small.execute(one, timeout=60) == {"s": 2}  # warm: worker, imports
            thread = threading.Thread(target=submit_big, daemon=True)
            thread.start()
            assert uploaded.wait(240) or "error" in outcome, outcome
            during = 0  # small runs submitted after the last piece, done before RunAccepted
            after = 0
            while not accepted.is_set():
                assert small.execute(one, timeout=60) == {"s": 2}
                if accepted.is_set():
                    after += 1
                else:
                    during += 1
            thread.join(240)
        assert "error" not in outcome, outcome["error"]
        assert sum(outcome["counts"].values()) == TASKS, outcome["counts"]
        assert during >= 1, f"no small run finished while the big one was taken in ({after})"
        assert d.alive()
        assert "Traceback" not in d.log(), d.log()[-3000:]
