"""The limits on what one client can make a daemon hold, configured with ``--limit`` on a real
daemon: each refusal reaches the client at once as an error naming the limit and the flag."""

from __future__ import annotations

import sys
import time
from typing import Any

import cloudpickle
import pytest
import zmq

import handoffd
from handoffd.errors import ValidationError
from handoffd.protocol import codec
from handoffd.protocol import messages as m
from handoffd.testing import DaemonCluster
from handoffd.transport.base import split_address, tcp_endpoint

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def nap(x: int) -> int:
    time.sleep(2.0)
    return x


def chain(n: int, sleep: bool = False) -> handoffd.DAG:
    dag = handoffd.DAG()
    for i in range(n):
        code = nap if sleep else int
        dag.add_function(handoffd.Function(id=f"t{i}", code=code, extra_args=[i]))
    return dag


def test_tasks_runs_and_ids_beyond_the_configured_limits_are_refused_with_the_limit() -> None:
    limits = ["max_tasks_per_run=3", "max_runs_per_client=2", "max_id_chars=32"]
    extra = [arg for limit in limits for arg in ("--limit", limit)]
    with DaemonCluster() as daemons:
        d = daemons.start(cpu=2, extra=extra)
        with handoffd.connect(d.address, timeout=10) as client:
            with pytest.raises(ValidationError, match="max_tasks_per_run=3") as info:
                client.submit(chain(4))
            assert info.value.kind == "too_many_tasks"
            assert client.execute(chain(3), timeout=60) == {"t0": 0, "t1": 1, "t2": 2}
            first = client.submit(chain(1, sleep=True))
            second = client.submit(chain(1, sleep=True))
            with pytest.raises(ValidationError, match="max_runs_per_client=2") as info:
                client.submit(chain(1))
            assert info.value.kind == "too_many_runs"
            assert (
                first.wait(timeout=60).state == "DONE" and second.wait(timeout=60).state == "DONE"
            )
            assert client.execute(chain(1), timeout=60) == {"t0": 0}  # finished runs free a place
        # A run id the client library would never make, sent raw: refused, with the rule.
        ctx: zmq.Context[Any] = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        try:
            from handoffd.transport.auth import client_curve

            curve = client_curve(d.address, key_file=None).curve
            assert curve is not None
            sock.curve_secretkey, sock.curve_publickey = curve.secret, curve.public
            sock.curve_serverkey = curve.public
            sock.connect(tcp_endpoint(*split_address(d.address)))
            rows, payloads = chain(1).wire_tasks()
            for run_id, words in (("x" * 33, "max_id_chars=32"), ("a\nb", "control characters")):
                request = m.SubmitRun(7, run_id, codec.Rows(rows), 0, "binpack", None)
                sock.send_multipart(codec.encode(request, sender="raw", frames=payloads))
                assert sock.poll(30_000), "no answer to a submission with a bad run id"
                decoded = codec.decode(sock.recv_multipart())
                assert decoded is not None and isinstance(decoded.msg, m.RunRejected)
                assert decoded.msg.error.kind == "ValidationError"
                assert words in decoded.msg.error.message, decoded.msg.error
        finally:
            sock.close(0)
            ctx.term()
        assert d.alive()
