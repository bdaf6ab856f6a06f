"""What one short ``execute`` costs the client, counted (issue 13, W3): the requests it sends and
the socket calls it makes, on a one-node cluster reached through the local socket."""

from __future__ import annotations

from typing import Any

import pytest

import handoffd
from handoffd import client as client_module
from handoffd.protocol import codec
from handoffd.testing import ThreadedCluster
from handoffd.transport import local_socket
from handoffd.transport.local_socket import LocalClient

pytestmark = pytest.mark.timeout(120)


def echo(i: int) -> int:
    return i


def one_task(i: int) -> handoffd.DAG:
    return handoffd.DAG().add_function(handoffd.Function(id="one", code=echo, extra_args=[i]))


class CountingSocket:
    """The LocalClient's socket, counting the calls that cross the kernel."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.calls: dict[str, int] = {"sendmsg": 0, "recv_into": 0}

    def sendmsg(self, *args: Any) -> int:
        self.calls["sendmsg"] += 1
        return self.sock.sendmsg(*args)  # type: ignore[no-any-return]

    def recv_into(self, *args: Any) -> int:
        self.calls["recv_into"] += 1
        return self.sock.recv_into(*args)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def test_a_one_node_clusters_execute_is_one_request_and_one_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The relisting interval (1 s) is longer than any loaded machine takes for these calls.
    monkeypatch.setattr(client_module, "_ALONE_RELIST", 3600.0, raising=False)
    with ThreadedCluster([{"cpu": 1}], transport="zmq") as cluster:
        with handoffd.connect(cluster.address, timeout=10) as client:
            conn = client._conn
            assert isinstance(conn, LocalClient)
            assert client.execute(one_task(0)) == {"one": 0}  # lists the cluster once
            sent: list[str] = []  # the requests, by type, as the client sends them
            real_send = conn.send

            def counting_send(frames: Any) -> Any:
                sent.append(type(codec.decode([bytes(f) for f in frames]).msg).__name__)
                return real_send(frames)

            monkeypatch.setattr(conn, "send", counting_send)
            takes: list[int] = []
            real_take = local_socket.take

            def counting_take(buf: bytearray, *args: Any) -> Any:
                if buf is conn._buf:  # the client's (the daemon's listener reads here too)
                    takes.append(len(buf))
                return real_take(buf, *args)

            monkeypatch.setattr(local_socket, "take", counting_take)
            wholes: list[int] = []  # reads that were one reply exactly (parsed without take)
            real_whole = local_socket._whole

            def counting_whole(data: Any, n: int) -> Any:
                if data is conn._scratch:  # the client's (the daemon's listener cuts too)
                    wholes.append(n)
                return real_whole(data, n)

            monkeypatch.setattr(local_socket, "_whole", counting_whole)
            sock = CountingSocket(conn._sock)
            monkeypatch.setattr(conn, "_sock", sock)
            for i in range(1, 6):
                assert client.execute(one_task(i)) == {"one": i}
            assert sent == ["SubmitAndWait"] * 5  # no ListNodes before each
            assert sock.calls["sendmsg"] == 5  # each request whole in one call
            # Replies are parsed only once bytes came: never an empty buffer's parse per wait.
            assert all(size > 0 for size in takes) and all(n > 0 for n in wholes)
            assert 5 <= len(takes) + len(wholes) <= 2 * sock.calls["recv_into"]
            assert len(wholes) <= sock.calls["recv_into"] and len(takes) <= sock.calls["recv_into"]


def test_a_client_alone_lists_the_cluster_again_after_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "_ALONE_RELIST", 3600.0, raising=False)
    with ThreadedCluster([{"cpu": 1}]) as cluster:
        with handoffd.connect(cluster.address, timeout=10) as client:
            listed: list[int] = []
            real_nodes = client.nodes

            def counting_nodes() -> Any:
                listed.append(1)
                return real_nodes()

            client.nodes = counting_nodes  # type: ignore[method-assign]
            for i in range(4):
                assert client.execute(one_task(i)) == {"one": i}
            assert len(listed) == 1  # a one-node cluster: not once per execute
            # Once the interval passed, a submission lists it again (a node that joined since
            # is learned for failover).
            assert client._alone_listed is not None
            client._alone_listed -= 2 * client_module._ALONE_RELIST
            assert client.execute(one_task(9)) == {"one": 9}
            assert len(listed) == 2


def test_a_client_that_knows_two_nodes_never_lists_before_executing() -> None:
    with ThreadedCluster([{"cpu": 1}, {"cpu": 1}]) as cluster:
        with handoffd.connect(cluster.address, timeout=10) as client:
            assert client.execute(one_task(0)) == {"one": 0}  # learns the other node
            assert len(client._known) == 2
            listed: list[int] = []
            real_nodes = client.nodes

            def counting_nodes() -> Any:
                listed.append(1)
                return real_nodes()

            client.nodes = counting_nodes  # type: ignore[method-assign]
            for i in range(3):
                assert client.execute(one_task(i)) == {"one": i}
            assert listed == []
