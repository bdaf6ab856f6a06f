"""The converters of an ``execute``'s messages are built when the client connects
(``codec.compile_records``), not inside its first big call."""

from __future__ import annotations

from typing import Any

import pytest

from handoffd import client as client_module
from handoffd import client_conn
from handoffd.protocol import codec, schema

_EXCHANGE_TYPES = [cls.TYPE for cls in client_conn._EXCHANGE]


@pytest.fixture
def records_dropped() -> Any:
    """The exchange's converters dropped from the shared registry (put back after)."""
    kept = {t: schema._RECORDS.pop(t) for t in _EXCHANGE_TYPES if t in schema._RECORDS}
    yield
    for t in _EXCHANGE_TYPES:
        schema._RECORDS.pop(t, None)
    schema._RECORDS.update(kept)


def test_compile_records_builds_them_now(records_dropped: Any) -> None:
    codec.compile_records(client_conn._EXCHANGE)
    assert all(t in schema._RECORDS for t in _EXCHANGE_TYPES)
    made = {t: schema._RECORDS[t] for t in _EXCHANGE_TYPES}
    codec.compile_records(client_conn._EXCHANGE)  # once: looked up after
    assert all(schema._RECORDS[t] is made[t] for t in _EXCHANGE_TYPES)


class _Silent:
    """A connection that is never answered (the client only connects)."""

    def send(self, frames: list[Any]) -> None:
        pass

    def recv(self, timeout: float) -> None:
        return None

    def close(self) -> None:
        pass


def test_connecting_builds_the_execute_exchange_records(records_dropped: Any) -> None:
    class Connecting(client_module.Client):
        def _dial(self, address: str, timeout: float) -> Any:
            return _Silent()

    assert not any(t in schema._RECORDS for t in _EXCHANGE_TYPES)
    client = Connecting("127.0.0.1:1", allow_local_users=True)
    try:
        assert all(t in schema._RECORDS for t in _EXCHANGE_TYPES)
    finally:
        client._conn = None
