"""CURVE on real sockets: only holders of the cluster key get a message through (the key files
themselves: tests/unit/test_keys.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import zmq
from zmq_nodes import Nodes, run

from handoffd.errors import AuthenticationError
from handoffd.testing import async_wait_for
from handoffd.transport.client import ControlClient
from handoffd.transport.keys import generate_key_file
from handoffd.transport.zmq_transport import ZmqTransport


def test_peers_with_the_key_talk_and_others_are_refused(tmp_path: Path) -> None:
    cluster, other = generate_key_file(tmp_path / "c"), generate_key_file(tmp_path / "o")

    async def body(nodes: Nodes) -> None:
        server = await nodes.start(curve=cluster)
        member = await nodes.start(curve=cluster)
        outsider = await nodes.start(curve=other)
        plain = await nodes.start()
        assert member.send(server.address, [b"member"])
        outsider.send(server.address, [b"outsider"])
        plain.send(server.address, [b"plain"])
        await async_wait_for(lambda: len(nodes.inbox[server.address]) == 1)
        # Refused peers never complete a handshake: their queued messages time out, unread.
        await async_wait_for(lambda: outsider.stats.reasons.get("connect_timeout") == 1)
        await async_wait_for(lambda: plain.stats.reasons.get("connect_timeout") == 1)
        assert [f for _, f in nodes.inbox[server.address]] == [[b"member"]]

    run(body)


def test_zap_refuses_a_client_key_that_is_not_the_cluster_key(tmp_path: Path) -> None:
    cluster = generate_key_file(tmp_path / "c")
    public, secret = zmq.curve_keypair()

    async def body(nodes: Nodes) -> None:
        server = await nodes.start(curve=cluster)
        ctx = zmq.Context()
        try:
            sock = ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.curve_publickey, sock.curve_secretkey = public, secret
            sock.curve_serverkey = cluster.public  # knows the server key, but is not a member
            sock.connect(f"tcp://{server.address}")
            sock.send(b"intruder")
            await async_wait_for(lambda: server.stats.reasons.get("auth_refused", 0) >= 1)
            assert nodes.inbox[server.address] == []
        finally:
            ctx.destroy(linger=0)

    run(body)


@pytest.mark.parametrize("server_key,client_key", [("c", None), (None, "c"), ("c", "o")])
def test_control_client_raises_authentication_error(
    tmp_path: Path, server_key: str | None, client_key: str | None
) -> None:
    keys = {"c": generate_key_file(tmp_path / "c"), "o": generate_key_file(tmp_path / "o")}

    async def body(nodes: Nodes) -> None:
        server = await nodes.start(curve=keys[server_key] if server_key else None)

        def connect() -> None:
            ControlClient(server.address, curve=keys[client_key] if client_key else None)

        with pytest.raises(AuthenticationError):
            await asyncio.to_thread(connect)
        assert nodes.inbox[server.address] == []

    run(body)


def test_control_client_with_the_key(tmp_path: Path) -> None:
    keys = generate_key_file(tmp_path / "c")

    async def body(nodes: Nodes) -> None:
        server = ZmqTransport("127.0.0.1", 0, curve=keys)
        nodes.transports.append(server)
        await server.start(lambda conn, frames, listening: server.reply(conn, [b"ok"] + frames))

        def talk() -> list[bytes]:
            with ControlClient(server.address, curve=keys) as client:
                return client.request([b"q"], timeout=5.0)

        assert await asyncio.to_thread(talk) == [b"ok", b"q"]

    run(body)
