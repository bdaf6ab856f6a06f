"""Big submissions go up in pieces (issue 19) to a real daemon started with low limits on what it
takes whole: a 50,000-task DAG (body and frame count past them) and a DAG with a 6 MiB argument (a
frame past max_frame_bytes) go through; one past max_upload_bytes is refused at once naming it."""

from __future__ import annotations

import sys

import cloudpickle
import pytest

import handoffd
from handoffd.errors import ValidationError
from handoffd.testing import DaemonCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

LIMITS = [
    "max_body_bytes=1048576",
    "max_frames=10000",
    "max_frame_bytes=4194304",
    "max_upload_bytes=67108864",
]


def measure(data: bytes) -> int:
    return len(data) + data[-1]


def test_submissions_past_the_whole_message_limits_go_up_in_pieces() -> None:
    with DaemonCluster() as daemons:
        d = daemons.start(cpu=2, extra=[a for limit in LIMITS for a in ("--limit", limit)])
        with handoffd.connect(d.address, timeout=20) as client:
            big_arg = bytes(6 << 20)[:-1] + b"\x07"
            dag = handoffd.DAG()
            dag.add_function(handoffd.Function(id="m", code=measure, extra_args=[big_arg]))
            assert client.execute(dag, timeout=120) == {"m": (6 << 20) + 7}

            many = handoffd.DAG()
            for i in range(50_000):
                many.add_function(handoffd.Function(id=f"t{i}", code=abs, extra_args=[-i]))
            run = client.submit(many)  # accepted: the owner holds all 50,000 tasks
            status = run.status()
            assert sum(status.counts.values()) == 50_000, status.counts
            wait_for(lambda: run.status().counts.get("DONE", 0) > 0, 60, what="tasks run")
            run.cancel()

            too_big = handoffd.DAG()
            too_big.add_function(
                handoffd.Function(id="x", code=measure, extra_args=[bytes(80 << 20)])
            )
            with pytest.raises(ValidationError, match="max_upload_bytes=67108864") as info:
                client.execute(too_big, timeout=60)
            assert info.value.kind == "upload_refused"
            assert client.execute(dag, timeout=120) == {"m": (6 << 20) + 7}  # still serving
        assert d.alive()
        assert "Traceback" not in d.log(), d.log()[-3000:]
