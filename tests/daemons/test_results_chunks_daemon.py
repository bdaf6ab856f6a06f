"""Big results reach the client in chunks (issue 19, helper results19): the owner answers
``FetchResults`` with the values that fit the client's chunk and lists the others, which the
client pulls with ``FetchResultChunks``. Real daemons whose ``max_frame_bytes`` is 1 MiB: a
result made on the other node (pulled by the owner, kept there for the client), one the owner's
store spilled to disk (read by range) and a small one (whole) are all read right, and no frame
the client receives is bigger than a chunk. Before, each value came whole in one frame (a value
past the client's 1 GiB frame limit was dropped and ``results()`` hung). A result past the
client's ``max_result_bytes`` is refused with an error naming it."""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterator
from typing import Any

import cloudpickle
import pytest

import handoffd
from handoffd.errors import HandoffError
from handoffd.testing import DaemonCluster, wait_for
from handoffd.transport import client as zmq_client
from handoffd.transport import local_socket

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LIMITS = ["--limit", f"max_frame_bytes={1 << 20}"]
REMOTE = 20 << 20  # made on B: A pulls it, then the client reads it from A
SPILLED = 12 << 20  # made on A, whose store keeps 4 MB in memory: read from disk by range
CHUNK = 2 << 20  # what the client asks per chunk (client_results.CHUNK_BYTES)


def make(size: int, seed: int) -> bytes:
    block = bytes((seed * 31 + i) % 251 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def digest(data: bytes) -> tuple[int, int]:
    return len(data), zlib.crc32(data)


@pytest.fixture
def largest_frame(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The largest frame this process's client connections received, whatever the transport."""
    seen = [0]
    for cls in (local_socket.LocalClient, zmq_client.ControlClient):
        original = cls.recv

        def recv(self: Any, timeout: float, _original: Any = original) -> Any:
            frames = _original(self, timeout)
            if frames:
                seen[0] = max(seen[0], *(len(f) for f in frames))
            return frames

        monkeypatch.setattr(cls, "recv", recv)
    yield seen


def _cluster(daemons: DaemonCluster) -> tuple[Any, Any]:
    a = daemons.start(cpu=2, memory=2000, extra=[*LIMITS, "--store-memory", "4"])
    b = daemons.start(cpu=2, memory=2000, seeds=[a.address], extra=LIMITS)
    return a, b


@pytest.mark.parametrize("transport", ["local socket", "zeromq"])
def test_big_results_come_in_chunks_no_frame_past_one(
    transport: str, largest_frame: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    if transport == "zeromq":  # the client dials ZeroMQ even to a daemon on its machine
        monkeypatch.setenv(local_socket.ENV, "0")
    with DaemonCluster() as daemons:
        a, b = _cluster(daemons)
        with handoffd.connect(a.address, timeout=60) as client:
            wait_for(lambda: len(client.nodes()) == 2, 30, what="2 nodes")
            dag = handoffd.DAG()
            dag.add_function(
                handoffd.Function(id="remote", code=make, extra_args=[REMOTE, 1], node=b.name)
            )
            dag.add_function(
                handoffd.Function(id="spilled", code=make, extra_args=[SPILLED, 2], node=a.name)
            )
            dag.add_function(handoffd.Function(id="small", code=make, extra_args=[1000, 3]))
            run = client.submit(dag)
            assert run.wait(timeout=120).state == "DONE"
            kind = type(client._connection()).__name__
            assert kind == ("LocalClient" if transport == "local socket" else "ControlClient")
            largest_frame[0] = 0  # the outcome's frames aside: what results() reads
            out = run.results()
            assert digest(out["remote"]) == digest(make(REMOTE, 1))
            assert digest(out["spilled"]) == digest(make(SPILLED, 2))
            assert out["small"] == make(1000, 3)
            assert run.result("remote") == make(REMOTE, 1)  # read again, from A's copy
            # execute(): its outcome carries no value past a chunk either.
            one = handoffd.DAG()
            one.add_function(
                handoffd.Function(id="big", code=make, extra_args=[REMOTE, 5], node=b.name)
            )
            assert client.execute(one, timeout=120) == {"big": make(REMOTE, 5)}
            # A chunk and its envelope: nothing near a whole value.
            assert 0 < largest_frame[0] <= CHUNK + 4096, largest_frame[0]
        for d in (a, b):
            assert d.alive()
            assert "Traceback" not in d.log(), d.log()[-3000:]


def test_a_result_past_the_clients_limit_is_refused_naming_it() -> None:
    limit = 8 << 20
    with DaemonCluster() as daemons:
        a, b = _cluster(daemons)
        with handoffd.connect(a.address, timeout=60) as client:
            wait_for(lambda: len(client.nodes()) == 2, 30, what="2 nodes")
            dag = handoffd.DAG()
            dag.add_function(
                handoffd.Function(id="big", code=make, extra_args=[REMOTE, 4], node=b.name)
            )
            run = client.submit(dag)
            assert run.wait(timeout=120).state == "DONE"
            client.max_result_bytes = limit
            with pytest.raises(HandoffError) as info:
                run.results()
            text = str(info.value)
            assert f"max_result_bytes={limit}" in text and "'big'" in text, text
            assert f"is {REMOTE + 9} bytes pickled" in text, text
            # Raised, the same client reads it.
            client.max_result_bytes = 2 * REMOTE
            assert run.result("big") == make(REMOTE, 4)
        assert a.alive() and "Traceback" not in a.log()
