"""``Client._ask_node`` (``handoffctl nodes``/``runs``, a run's moves) asks another daemon on a
connection of its own and then goes on with the connection it had to its own daemon: that one
knows its daemon's protocol range, so the next big submission still goes as columns
(``SubmitColumns``), not as records (a new connection knows no range and sends records)."""

from __future__ import annotations

from typing import Any

import pytest

from handoffd import client as client_module
from handoffd.protocol import codec
from handoffd.protocol import messages as m
from handoffd.protocol.codec import Rows
from handoffd.protocol.messages_submit import SubmitColumns, as_sent

pytestmark = pytest.mark.timeout(60)


class Conn:
    """A daemon's end answering every request with an empty ``NodeList``."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.replies: list[list[Any]] = []
        self.closed = False

    def send(self, frames: list[Any]) -> None:
        assert not self.closed
        decoded = codec.decode([bytes(f) for f in frames])
        assert decoded is not None
        reply = m.NodeList(decoded.msg.request_id, ())
        self.replies.append(codec.encode(reply, sender=self.address))

    def recv(self, timeout: float) -> list[Any] | None:
        return self.replies.pop(0) if self.replies else None

    def close(self) -> None:
        self.closed = True


def _client() -> tuple[Any, list[Conn]]:
    dialed: list[Conn] = []

    class FakeClient(client_module.Client):
        def _dial(self, address: str, timeout: float) -> Any:
            dialed.append(Conn(address))
            return dialed[-1]

    client = FakeClient("127.0.0.1:1", allow_local_users=True)
    return client, dialed


def _sent_form(client: Any) -> type:
    rows = Rows([(f"t{i}", (), {"cpu": 1.0}, "variadic", *(None,) * 5, 0) for i in range(3)])
    rows = Rows([r[:6] + (False,) + r[7:] for r in rows])
    request = m.SubmitRun(1, "r", rows, 3, "binpack", None, ())
    return type(as_sent(request, client._daemon_max()))


def test_asking_another_node_keeps_the_home_connection_and_its_range() -> None:
    client, dialed = _client()
    client._ask_node("127.0.0.1:1", lambda rid: m.ListNodes(rid))  # (home: learns its range)
    home, before = client._conn, len(dialed)
    assert client._daemon_max() == codec.RANGE[1] and _sent_form(client) is SubmitColumns
    client._ask_node("127.0.0.1:2", lambda rid: m.ListNodes(rid))
    assert [c.address for c in dialed[before:]] == ["127.0.0.1:2"]
    assert dialed[-1].closed and not home.closed
    assert client._conn is home and client.address == "127.0.0.1:1"
    assert _sent_form(client) is SubmitColumns  # (a new connection would send records)


def test_a_node_that_cannot_be_reached_leaves_the_home_connection() -> None:
    client, dialed = _client()
    client._ask_node("127.0.0.1:1", lambda rid: m.ListNodes(rid))
    home = client._conn

    class Silent(Conn):
        def send(self, frames: list[Any]) -> None:
            pass

    client._dial = lambda address, timeout: Silent(address)  # type: ignore[method-assign]
    with pytest.raises(Exception):  # noqa: B017,PT011 - whichever error says it did not answer
        client._ask_node("127.0.0.1:3", lambda rid: m.ListNodes(rid), 0.05)
    assert client._conn is home and not home.closed and client.address == "127.0.0.1:1"
