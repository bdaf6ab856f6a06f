"""Structured logs (issue 16): JSON lines carry the node, and the run, task and attempt ids where a
line is about one; --log-file writes the same lines to a file rotated past --log-max-mb."""

from __future__ import annotations

import json
import os
import sys

import cloudpickle
import pytest

import handoffd
from handoffd.testing import DaemonCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)


def _boom() -> None:
    raise ZeroDivisionError("logged with its ids")


def test_json_log_file_has_ids_and_rotates(daemons: DaemonCluster, tmp_path) -> None:
    path = str(tmp_path / "d.log")
    a = daemons.start(
        cpu=1,
        memory=500,
        extra=["--log-format", "json", "--log-file", path, "--log-max-mb", "0.0005", "--log-backups", "2"],
    )  # fmt: skip
    dag = handoffd.DAG().add_function(handoffd.Function(id="boom", code=_boom))
    with handoffd.connect(a.address, timeout=10) as client:
        run = client.submit(dag, max_retries=3)
        with pytest.raises(handoffd.TaskFailed):
            run.wait(timeout=60)

    def lines() -> list[dict]:
        out = []
        for name in (path, path + ".1", path + ".2"):
            if os.path.exists(name):
                with open(name) as f:
                    out += [json.loads(line) for line in f if line.strip()]
        return out

    wait_for(lambda: any(d.get("task") == "boom" for d in lines()), 30, what="a task line")
    docs = lines()
    assert all(d["node"] == a.name for d in docs)
    failed = [d for d in docs if d.get("task") == "boom"]
    assert {d["run"] for d in failed} == {run.id}
    attempts = {d["attempt"] for d in failed}  # the oldest may have rotated away
    assert len(attempts) >= 2 and attempts <= {1, 2, 3, 4}
    assert any(d.get("run") == run.id and "FAILED" in d["msg"] for d in docs)
    assert os.path.exists(path + ".1")  # 512 bytes per file: rotated
    assert not os.path.exists(path + ".3")
