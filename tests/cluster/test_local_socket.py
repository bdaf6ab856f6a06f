"""Clients on the daemon's machine talk over its local Unix socket (transport/local_socket.py):
the same requests and answers as over ZeroMQ, refused to anyone ZeroMQ would refuse."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

import handoffd
from handoffd import errors
from handoffd.testing import ThreadedCluster, wait_for
from handoffd.transport.client import ControlClient
from handoffd.transport.keys import generate_key_file
from handoffd.transport.local_socket import LocalClient, LocalRefused

pytestmark = pytest.mark.timeout(120)


def flaky(marker: str) -> str:
    """Fails on its first attempt, succeeds on the next (the marker file remembers)."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)  # the worker dies: the executor reports it, the owner retries
    return "second try"


def fails() -> None:
    raise ValueError("always")


def sleeps(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def test_a_client_on_the_daemons_host_uses_the_local_socket_through_failures_and_retries(
    tmp_path: Path,
):
    with ThreadedCluster([{"cpu": 1}], transport="zmq") as cluster:
        with handoffd.connect(cluster.address, timeout=10) as client:
            assert isinstance(client._conn, LocalClient)
            marker = str(tmp_path / "tried")
            dag = handoffd.DAG().add_function(
                handoffd.Function(id="f", code=flaky, extra_args=[marker])
            )
            assert client.execute(dag, max_retries=2) == {"f": "second try"}
            bad = handoffd.DAG().add_function(handoffd.Function(id="g", code=fails))
            with pytest.raises(errors.TaskFailed, match="always"):
                client.execute(bad, max_retries=0)
            assert isinstance(client._conn, LocalClient)  # the same connection all along


def test_a_run_cancelled_while_its_task_runs_ends_cancelled_over_the_local_socket():
    with ThreadedCluster([{"cpu": 1}], transport="zmq") as cluster:
        with handoffd.connect(cluster.address, timeout=10) as client:
            assert isinstance(client._conn, LocalClient)
            dag = handoffd.DAG().add_function(
                handoffd.Function(id="s", code=sleeps, extra_args=[60])
            )
            run = client.submit(dag)
            wait_for(lambda: run.status().state == "RUNNING", 30, what="the task running")
            run.cancel()
            with pytest.raises(errors.RunCancelled):
                run.wait(timeout=30)


def test_another_key_is_refused_on_the_local_socket_and_zeromq_says_why(tmp_path: Path):
    other = tmp_path / "other.key"
    keys = generate_key_file(other)
    with ThreadedCluster([{"cpu": 1}], transport="zmq") as cluster:
        address = str(cluster.nodes[0].address)
        with pytest.raises(LocalRefused):
            LocalClient(address, keys.secret, connect_timeout=5)
        with pytest.raises(errors.AuthenticationError):
            handoffd.connect(address, key_file=str(other), timeout=2)


def test_a_malformed_message_closes_only_that_connection():
    with ThreadedCluster([{"cpu": 1}], transport="zmq") as cluster:
        address = str(cluster.nodes[0].address)
        with handoffd.connect(address, timeout=10) as client:
            conn = client._conn
            assert isinstance(conn, LocalClient)
            conn._sock.sendall(b"\0\0\0\0")  # a message of no frames
            assert conn.recv(10) is None and conn.disconnected
            client._conn = None  # the next request dials again
            assert client.nodes()  # answered on a new local connection
            assert isinstance(client._conn, LocalClient)


def test_the_local_socket_can_be_turned_off(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HANDOFFD_LOCAL_SOCKET", "0")
    with ThreadedCluster([{"cpu": 1}], transport="zmq") as cluster:
        with handoffd.connect(cluster.address, timeout=10) as client:
            assert isinstance(client._conn, ControlClient)
            dag = handoffd.DAG().add_function(
                handoffd.Function(id="s", code=sleeps, extra_args=[0])
            )
            assert client.execute(dag) == {"s": "slept"}


def echo_big(data: bytes, n: int) -> bytes:
    return data[:16] * n


def test_big_requests_and_results_cross_the_local_socket_whole():
    """Megabytes each way: the daemon's loop reads them in slices and writes what the socket
    takes, the rest when it is writable again."""
    blob = os.urandom(3 << 20)
    with ThreadedCluster([{"cpu": 1}], transport="zmq") as cluster:
        with handoffd.connect(cluster.address, timeout=30) as client:
            assert isinstance(client._conn, LocalClient)
            dag = handoffd.DAG().add_function(
                handoffd.Function(id="b", code=echo_big, extra_args=[blob, 1 << 19])
            )
            assert client.execute(dag, timeout=60) == {"b": blob[:16] * (1 << 19)}


def test_a_send_to_a_daemon_that_stopped_reading_gives_up_with_a_connection_error(
    monkeypatch: pytest.MonkeyPatch,
):
    """A daemon whose loop hangs (it accepted and proved the key, then reads nothing): the
    client's send fails after SEND_STALL instead of blocking its thread for ever."""
    import socket
    import threading

    from handoffd.transport import local_socket

    monkeypatch.setattr(local_socket, "SEND_STALL", 0.5)
    secret, address = os.urandom(40), f"stalled-{os.getpid()}:1"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(local_socket.socket_name(address))
    server.listen(1)
    held: list[socket.socket] = []

    def serve() -> None:
        conn, _ = server.accept()
        held.append(conn)
        ours = os.urandom(local_socket.NONCE)
        conn.sendall(ours)
        got = local_socket._recv_exact(conn, local_socket.NONCE + local_socket.PROOF)
        conn.sendall(local_socket._proof(secret, b"server", got[: local_socket.NONCE], ours))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        client = LocalClient(address, secret, connect_timeout=0.2)
        with pytest.raises(errors.ConnectionError, match="cannot send"):
            client.send([os.urandom(32 << 20)])
        assert client.disconnected
        client.close()
    finally:
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def big_send_buffer() -> int:
    """What ``local_socket.SEND_BUFFER`` gets from this kernel (capped at wmem_max)."""
    from handoffd.transport.local_socket import SEND_BUFFER

    with open("/proc/sys/net/core/wmem_max") as f:
        return min(SEND_BUFFER, int(f.read()))


def test_a_request_waits_only_for_its_answer_not_for_room_to_send(monkeypatch: pytest.MonkeyPatch):
    """The client's socket has no timeout of Python's (which polls before every call on a socket
    with one: two system calls more per request) and never waits in a send (MSG_DONTWAIT, a full
    buffer polled for by the client itself): a send with room is one system call, and the send
    stall is still bounded (the test above). Whether the kernel has room
    is its business (CI's kernel refused the first write of every request once, here none is
    refused): what the client owes is no poll unless a write was refused, and one write a
    message when the kernel takes it whole."""
    with ThreadedCluster([{"cpu": 1}], transport="zmq") as cluster:
        with handoffd.connect(cluster.address, timeout=10) as client:
            conn = client._conn
            assert isinstance(conn, LocalClient)
            assert conn._sock.gettimeout() is None
            assert conn._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) >= big_send_buffer()
            events: list[str] = []
            room, sock, send = conn._room, conn._sock, conn.send

            class CountingRoom:
                def poll(self, timeout: int) -> list[tuple[int, int]]:
                    events.append("poll")
                    return room.poll(timeout)  # type: ignore[no-any-return]

            class CountingSocket:
                def sendmsg(self, parts: list[bytes], anc: Any = (), flags: int = 0) -> int:
                    assert flags & socket.MSG_DONTWAIT, "a send that may wait in the kernel"
                    try:
                        sent = sock.sendmsg(parts, anc, flags)
                    except BlockingIOError:
                        events.append("refused")
                        raise
                    total = sum(memoryview(part).nbytes for part in parts)
                    events.append("wrote" if sent == total else "short")
                    return sent

                def __getattr__(self, name: str) -> object:
                    return getattr(sock, name)

            def counting_send(frames: list[bytes]) -> None:
                events.append("send")
                send(frames)

            monkeypatch.setattr(conn, "_room", CountingRoom())
            monkeypatch.setattr(conn, "_sock", CountingSocket())
            monkeypatch.setattr(conn, "send", counting_send)
            dag = handoffd.DAG().add_function(
                handoffd.Function(id="f", code=sleeps, extra_args=[0.0])
            )
            for _ in range(3):
                assert client.execute(dag) == {"f": "slept"}
            monkeypatch.undo()
    sends: list[list[str]] = []
    for event in events:
        if event == "send":
            sends.append([])
        else:
            sends[-1].append(event)
    assert len(sends) >= 3, events
    for steps in sends:
        # Room for the whole message: one write; a write past the first only after a short one
        # (the kernel took part: its buffer was nearly full) or a refused one.
        for i, step in enumerate(steps):
            assert step != "wrote" or i == len(steps) - 1, events
            assert step != "poll" or (i and steps[i - 1] == "refused"), events  # answers one
        assert steps[-1] == "wrote", events
