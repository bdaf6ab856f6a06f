"""A run followed through a surviving node while its owner's takeover is under way (issue 14,
problem 6), on real daemons: right after the owner is SIGKILLed, ``handoffctl --address B status
RUN`` answers with the run, not exit 3 naming the dead owner: owned by its new owner, or, while
the takeover is pending, as last replicated, marked ``owner_changing`` (status19); asked again, the
new owner's; results and logs come through the other survivor once the run ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import handoffd
from handoffd.testing import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def slow_value(seconds: float, value: int) -> int:
    print(f"working for {seconds}s")
    time.sleep(seconds)
    return value


def _ctl(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    repo = str(Path(__file__).resolve().parents[2])
    return subprocess.run(
        [sys.executable, "-m", "handoffd.cli.ctl", "--address", address, *args],
        env=dict(os.environ, PYTHONPATH=repo),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_status_results_and_logs_follow_the_run_through_survivors(daemons: Any) -> None:
    owner = daemons.start(cpu=1, memory=1000)
    b, c = (daemons.start(cpu=1, memory=1000, seeds=[owner.address]) for _ in range(2))
    with handoffd.connect(owner.address) as client:
        wait_for(
            lambda: [n.status for n in client.nodes().values()] == ["ALIVE"] * 3,
            timeout=30,
            what="three daemons joined",
        )
        dag = handoffd.DAG().add_function(
            handoffd.Function(id="slow", code=slow_value, extra_args=[6.0, 42], node=b.name)
        )
        run = client.submit(dag)
        wait_for(
            lambda: run.status().counts.get("RUNNING", 0) + run.status().counts.get("ASSIGNED", 0),
            timeout=30,
            what="the task dispatched",
        )
    owner.kill()
    # At once: the survivors may not even have noticed the death yet.
    out = _ctl(b.address, "status", run.id, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["run_id"] == run.id and doc["state"] in ("RUNNING", "DONE")
    if doc["owner_changing"]:  # the survivors hold the replica; the owner is not ALIVE to b
        assert doc["owner"] == owner.name and doc["next_owner"] in (b.name, c.name), doc
        deadline = time.monotonic() + 60
        while doc["owner_changing"] and time.monotonic() < deadline:
            out = _ctl(b.address, "status", run.id, "--json")
            assert out.returncode == 0, out.stdout + out.stderr
            doc = json.loads(out.stdout)
    assert doc["owner"] != owner.name and not doc["owner_changing"], doc
    assert doc["state"] in ("RUNNING", "DONE") and doc["term"] >= 1

    with handoffd.connect(c.address) as survivor:
        assert survivor.run(run.id).wait(60).state == "DONE"
    out = _ctl(c.address, "results", run.id, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["results"] == {"slow": 42}
    out = _ctl(c.address, "logs", run.id)
    assert out.returncode == 0 and f"[slow@{b.name}] working for 6.0s" in out.stdout
