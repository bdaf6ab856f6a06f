"""ZmqTransports on 127.0.0.1 random ports for test_transport_zmq and test_curve: each test's
transports are tracked and closed, and its body is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from handoffd.transport.zmq_transport import ZmqTransport


class Nodes:
    """Tracks every transport and client a test makes, and closes them all."""

    def __init__(self) -> None:
        self.transports: list[ZmqTransport] = []
        self.inbox: dict[str, list[tuple[bytes, list[bytes]]]] = {}
        self.listening: dict[str, list[bool]] = {}  # per message: came in on the ROUTER

    async def start(self, handler: Any = None, **kwargs: Any) -> ZmqTransport:
        transport = ZmqTransport("127.0.0.1", 0, **kwargs)
        self.transports.append(transport)
        inbox = self.inbox.setdefault(transport.address, [])
        directions = self.listening.setdefault(transport.address, [])

        def record(conn: bytes, frames: list[bytes], listening: bool) -> None:
            inbox.append((conn, frames))
            directions.append(listening)

        await transport.start(handler or record)
        return transport

    async def close(self) -> None:
        for transport in self.transports:
            await transport.close()


def run(body: Callable[[Nodes], Awaitable[None]]) -> None:
    async def main() -> None:
        nodes = Nodes()
        try:
            await asyncio.wait_for(body(nodes), 60)
        finally:
            await nodes.close()

    asyncio.run(main())
