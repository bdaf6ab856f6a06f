"""The client's encoding of a submission, in process, for instruction counts (callgrind).

Builds the peer benchmark's DAG (``--shape w1``: N independent no-ops ``noop(i)``; ``w2``: layers
of 100, each task three parents of the layer before, as ``bench/_peers/handoffd_runner.py``
builds them; the functions of ``bench/_peers`` shipped by value, as there), then runs once, under
``operator.call`` (so ``valgrind --tool=callgrind --collect-atstart=no
--toggle-collect=_operator_call`` counts only it), the client's ``execute(dag)`` up to the bytes
handed to the socket: the real ``Client`` code (validation, payloads, the ``SubmitColumns`` or
records, the codec, the upload's cut into pieces when the message is big), on a connection that
keeps the frames its first ``send`` gets and stops the call there. A warm-up submission of the
same function first (the code cache warm, as in the benchmark's measured rounds).
``--daemon-max 3`` plays a daemon older than ``SubmitColumns`` (the records path).

Prints the shape, the tasks, the frames and bytes sent and the process CPU time of the part (a
check, not the figure); the figure is callgrind's total of two runs of different N, subtracted,
over their difference::

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=_operator_call \\
        --callgrind-out-file=/tmp/cg.%p .venv/bin/python bench/client_encode.py --tasks 4000
"""

from __future__ import annotations

import argparse
import itertools
import operator
import os
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class _Sent(BaseException):
    """Raised by the fake connection's send: the call stops with its frames kept."""


class _Connection:
    def __init__(self, daemon_max: int) -> None:
        self.daemon_max = daemon_max
        self.frames: list[Any] = []

    def send(self, frames: list[Any]) -> None:
        self.frames = list(frames)
        raise _Sent

    def close(self) -> None:
        pass


def fake_client(daemon_max: int) -> Any:
    """A ``Client`` whose connection is a ``_Connection`` (no socket, no daemon): two known
    addresses, so a submission lists no nodes first."""
    from handoffd.client import Client
    from handoffd.client_results import default_limit
    from handoffd.client_threads import ThreadConnections

    client: Any = object.__new__(Client)
    client._threads = ThreadConnections("127.0.0.1:1")
    client._learned = threading.Lock()
    client._key_file = None
    client._curve = None
    client._local_key = None
    client._network = None
    client.timeout = 5.0
    client.max_result_bytes = default_limit()
    client._name = "client-bench"
    client._ids = itertools.count(1)
    client._known = ["127.0.0.1:1", "127.0.0.1:2"]
    client._unreachable = {}
    client._stored = set()
    client._alone_listed = None
    client._ran = {}
    client._conn = _Connection(daemon_max)
    return client


def dag_of(shape: str, n: int) -> Any:
    from _peers.common import add3, layered, noop, seed_value, tid

    import handoffd

    dag = handoffd.DAG()
    if shape == "w1":
        for i in range(n):
            dag.add_function(handoffd.Function(id=f"n{i}", code=noop, extra_args=[i]))
        return dag
    width = 100
    first, parents, _ = layered(n // width, width, seed=2)
    for j, v in enumerate(first):
        dag.add_function(handoffd.Function(id=tid(0, j), code=seed_value, extra_args=[v]))
    for layer in range(1, len(parents)):
        for j, (a, b, c) in enumerate(parents[layer]):
            deps = [tid(layer - 1, a), tid(layer - 1, b), tid(layer - 1, c)]
            dag.add_function(handoffd.Function(id=tid(layer, j), code=add3, args=deps))
    return dag


def send_of(client: Any, dag: Any) -> list[Any]:
    """The frames ``client.execute(dag)`` hands to its connection first."""
    try:
        client.execute(dag)
    except _Sent:
        return client._conn.frames  # type: ignore[no-any-return]
    raise AssertionError("execute returned without sending")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--shape", choices=("w1", "w2"), default="w1")
    parser.add_argument("--daemon-max", type=int, default=99, help="the daemon's protocol top")
    args = parser.parse_args()
    import cloudpickle
    from _peers.common import ship_by_value

    ship_by_value(cloudpickle)
    client = fake_client(args.daemon_max)
    send_of(client, dag_of(args.shape, 200))  # warm: the code cache, the imports
    dag = dag_of(args.shape, args.tasks)
    start = time.process_time()
    try:
        operator.call(client.execute, dag)
    except _Sent:
        pass
    seconds = time.process_time() - start
    frames = client._conn.frames
    size = sum(len(f) for f in frames)
    print(
        f"{args.shape}: {args.tasks} tasks, {len(frames)} frames, {size} B first sent, "
        f"{seconds * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
