"""The netns tests' resident handoffctl (resident_ctl.py) answers as the program does, stays one
process across calls, and is killed by a call's timeout and by the lab's close."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from netns import NetnsLab, NsDaemons, checked_lab, wait

_REASON = NetnsLab.unavailable()

pytestmark = [
    pytest.mark.netns,
    pytest.mark.timeout(120),
    pytest.mark.skipif(_REASON is not None, reason=f"netns tests skipped: {_REASON}"),
]


def test_resident_ctl_answers_as_handoffctl_does_and_is_killed_by_a_timeout_and_the_lab(
    tmp_path: Any,
) -> None:
    with checked_lab(1) as lab:
        hosts = NsDaemons(lab, str(tmp_path), "rc", cpu=1, memory=1000)
        # Nothing listens yet: the command itself would wait its --timeout, the call gives up
        # first and kills the process.
        with pytest.raises(subprocess.TimeoutExpired):
            hosts.query(0, 0, "--timeout", "30", "nodes", timeout=1.0)
        assert hosts.resident[0].process is None and lab.processes == []
        hosts.start(0)
        hosts.wait_started()
        # The next call starts another one, which answers as the program does.
        fresh = hosts.handoffctl(0, 0, "nodes", "--json")
        resident = hosts.query(0, 0, "nodes", "--json")
        process = hosts.resident[0].process
        assert fresh.returncode == resident.returncode == 0, (fresh.stderr, resident.stderr)
        view = json.loads(resident.stdout)["nodes"]
        assert [n["name"] for n in view] == [n["name"] for n in json.loads(fresh.stdout)["nodes"]]
        assert view[0]["name"] == hosts.names[0] and view[0]["status"] == "ALIVE", view
        # The polls' reads from that daemon alone say what ``nodes --json`` says of it.
        assert hosts.read(0, "members") == {n["name"]: n["status"] for n in view}
        health = hosts.read(0, "health")
        stable = ("fenced", "reachable", "quorum_base", "local_health_max")
        assert {k: health[k] for k in stable} == {k: view[0]["health"][k] for k in stable}
        assert health["quorum_base"] == health["reachable"] == 1 and not health["fenced"]
        # A usage error: the program's exit code and message, and the same process after it.
        wrong = ["nodes", "--no-such-flag"]
        fresh, resident = hosts.handoffctl(0, 0, *wrong), hosts.query(0, 0, *wrong)
        assert resident.returncode == fresh.returncode == 2
        assert "--no-such-flag" in resident.stderr and resident.stderr == fresh.stderr
        assert hosts.query(0, 0, "status", "--json").returncode == 0
        assert hosts.resident[0].process is process and process.poll() is None
    wait(lambda: process.poll() is not None, 10, "the resident handoffctl killed by the lab")
