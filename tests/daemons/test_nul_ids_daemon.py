"""A function id holding a NUL never reaches a worker on a real daemon: the owner's intake refuses
the run (``intake.check_submission``: no control character in a run or task id) whichever way it
is sent (one function, plain functions as columns, rows, a run submitted to wait on later), the
client hears why, and the daemon and its worker process go on with the next run."""

from __future__ import annotations

import os

import pytest

import handoffd
from handoffd.errors import ValidationError
from handoffd.testing import DaemonCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _pid_dag() -> handoffd.DAG:
    return handoffd.DAG().add_function(handoffd.Function(id="pid", code=os.getpid))


def _dags() -> dict[str, handoffd.DAG]:
    one = handoffd.DAG().add_function(handoffd.Function(id="a\x00b", code=abs, extra_args=[-1]))
    plain = handoffd.DAG()
    for task_id in ("x", "y\x00", "z"):
        plain.add_function(handoffd.Function(id=task_id, code=abs, extra_args=[-2]))
    rows = handoffd.DAG()  # (a cost and retries of its own: not plain, sent as rows)
    rows.add_function(handoffd.Function(id="r0", code=abs, extra_args=[-3], max_retries=1))
    rows.add_function(
        handoffd.Function(id="\x00r1", code=abs, args=["r0"], cost={"cpu": 0.5}, max_retries=1)
    )
    return {"one": one, "plain": plain, "rows": rows}


def test_a_nul_in_a_function_id_is_refused_and_the_worker_goes_on() -> None:
    with DaemonCluster() as daemons:
        d = daemons.start(cpu=1)
        with handoffd.connect(d.address, timeout=10) as client:
            worker = client.execute(_pid_dag(), timeout=60)["pid"]
            for shape, dag in _dags().items():
                with pytest.raises(ValidationError, match="control characters") as info:
                    client.execute(dag, timeout=60)
                assert info.value.kind == "invalid_function_id", shape
            with pytest.raises(ValidationError, match="control characters"):
                client.submit(_dags()["rows"])
            assert client.execute(_pid_dag(), timeout=60) == {"pid": worker}  # the same process
        assert d.alive()
