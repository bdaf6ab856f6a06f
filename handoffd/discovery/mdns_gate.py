"""zeroconf on sockets we bind ourselves, behind a gate on the packet's source address.

python-zeroconf's multicast mode always opens a ``0.0.0.0:5353`` listener (``new_listen_socket``,
whatever ``interfaces`` says). On Linux such a socket receives every unicast datagram sent to any
address of the machine on port 5353, and (IP_MULTICAST_ALL is on by default) LAN multicast for the
mDNS group as soon as any program joined it on the LAN card. zeroconf parses and answers all of it:
a "loopback only" daemon answered LAN queries and connected to whatever a forged LAN response
advertised (security issue 11, finding 1). So zeroconf is started in unicast mode with no
interfaces, which makes it open no socket at all, and is then handed two sockets of ours:

* the group socket, bound to ``224.0.0.251:5353`` (so unicast to any address never reaches it),
  member of the group only on the interface of the daemon's host address, with
  IP_MULTICAST_ALL off (so it gets no multicast from another interface, whoever joined there);
* the respond socket, bound to ``host:5353`` (announcements go out from here, and peers' unicast
  replies come back here). Answers to queries read on the group socket are sent from this one
  too, so every packet we send carries the host address as its source.

Every datagram then passes the gate before zeroconf parses it: its source must be on the daemon's
own network (127.0.0.0/8 for a loopback host, else the subnet of the interface owning the host
address); anything else is dropped and counted, so nothing from outside is ever answered or cached.
For the datagrams that pass, the gate notes which address sent which record (``SourceBook``):
discovery acts on a peer only when the records it resolved came from the address they advertise.

This relies on zeroconf internals (``AsyncEngine._async_wrap_socket`` and the listener it
creates; ``Zeroconf.start`` creating the engine's transports), hence the version pin in
pyproject.toml; tests/daemons/test_security_mdns.py checks the hook is really in place.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import sys
from collections import OrderedDict
from typing import Any, cast

import ifaddr
from zeroconf import (
    DNSAddress,
    DNSIncoming,
    DNSPointer,
    DNSService,
    DNSText,
    IPVersion,
    Zeroconf,
)
from zeroconf._engine import AsyncEngine
from zeroconf._listener import AsyncListener
from zeroconf._transport import _WrappedTransport, make_wrapped_transport

log = logging.getLogger("handoffd.discovery")

MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353
IP_MULTICAST_ALL = 49  # linux/in.h; not exported by the socket module
LOOPBACK_NET = ipaddress.IPv4Network("127.0.0.0/8")
_LOGGED_MAX = 256  # distinct sources/peers we log about; past that, only counters grow


def own_network(host: str) -> ipaddress.IPv4Network:
    """The network whose hosts may talk mDNS with a daemon on ``host``: 127.0.0.0/8 for a loopback
    host, else the subnet of the interface that owns ``host``."""
    ip = ipaddress.IPv4Address(host)
    if ip.is_loopback:
        return LOOPBACK_NET
    for adapter in ifaddr.get_adapters():
        for address in adapter.ips:
            if address.is_IPv4 and address.ip == host:
                return ipaddress.IPv4Network(f"{host}/{address.network_prefix}", strict=False)
    raise ValueError(f"mDNS host {host} is not the address of any interface of this machine")


def open_sockets(host: str) -> tuple[socket.socket, socket.socket]:
    """The (group, respond) socket pair described in the module docstring."""
    group = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    respond = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for sock in (group, respond):
            # Several daemons (each on its own 127.0.0.N) share port 5353 on one machine.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if sys.platform.startswith("linux"):
            group.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        group.bind((MDNS_GROUP, MDNS_PORT))
        group.setsockopt(
            socket.IPPROTO_IP,
            socket.IP_ADD_MEMBERSHIP,
            socket.inet_aton(MDNS_GROUP) + socket.inet_aton(host),
        )
        respond.bind((host, MDNS_PORT))
        respond.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(host))
        respond.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)  # RFC 6762 11
        respond.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)  # peers on this host
    except OSError as exc:
        group.close()
        respond.close()
        raise OSError(
            exc.errno, f"mDNS on {host}: cannot open port {MDNS_PORT}: {exc.strerror}"
        ) from exc
    return group, respond


class SourceBook:
    """Which address sent each record discovery may act on: ``(kind, name[, detail]) -> source``.

    Bounded (oldest forgotten first): a flood of names evicts entries, which only makes discovery
    ignore a peer until it announces again, never accept one."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._sources: OrderedDict[tuple[str, ...], str] = OrderedDict()

    def note(self, records: list[Any], source: str) -> None:
        for record in records:
            key = record_key(record)
            if key is None:
                continue
            self._sources.pop(key, None)
            self._sources[key] = source
            if len(self._sources) > self.limit:
                self._sources.popitem(last=False)

    def source(self, *key: str) -> str | None:
        return self._sources.get(tuple(k.lower() for k in key))

    def take(self, *key: str) -> str | None:
        """``source(*key)``, forgotten once read (a goodbye is acted on, or not, once)."""
        return self._sources.pop(tuple(k.lower() for k in key), None)

    def __len__(self) -> int:
        return len(self._sources)


def record_key(record: Any) -> tuple[str, ...] | None:
    if isinstance(record, DNSPointer):
        # Only goodbyes (TTL 0): the service's own announcement may refresh the PTR before the
        # removal is handled, so the goodbye's sender is kept under a key of its own.
        return ("bye", record.key, record.alias.lower()) if record.ttl == 0 else None
    if isinstance(record, DNSService):
        return ("srv", record.key)
    if isinstance(record, DNSText):
        return ("txt", record.key)
    if isinstance(record, DNSAddress) and len(record.address) == 4:
        return ("a", record.key, socket.inet_ntoa(record.address))
    return None


class GatedZeroconf(Zeroconf):  # interfaces=[]: zeroconf binds nothing itself
    """A Zeroconf that reads and sends only through ``open_sockets(host)``, behind the gate."""

    def __init__(self, host: str, network: ipaddress.IPv4Network) -> None:
        self.host = host
        self.network = network
        self.book = SourceBook()
        self.dropped = 0  # datagrams from outside ``network``, never parsed
        self._drop_logged: set[str] = set()
        self._own_sockets: tuple[socket.socket, socket.socket] | None = open_sockets(host)
        try:
            # Unicast mode with no interfaces: zeroconf opens no socket of its own (its multicast
            # mode always adds a 0.0.0.0:5353 listener); start() hands it ours instead.
            super().__init__(
                interfaces=[], unicast=True, ip_version=IPVersion.V4Only, use_asyncio=True
            )
        except BaseException:
            for sock in self._own_sockets or ():
                sock.close()
            raise

    def start(self) -> None:
        """Called at the end of Zeroconf.__init__: swap in an engine over our sockets."""
        if self._own_sockets is not None:
            group, respond = self._own_sockets
            self._own_sockets = None
            # Our sockets are multicast ones; zeroconf reads ``unicast`` only when it rescans
            # interfaces (async_update_interfaces), which discovery never asks for.
            self.unicast = False
            self.engine = _GatedEngine(self, group, [respond])
        super().start()

    def admits(self, source: str) -> bool:
        """Whether a datagram from ``source`` may reach zeroconf; counts and logs the rest."""
        try:
            if ipaddress.IPv4Address(source) in self.network:
                return True
        except ValueError:
            pass
        self.dropped += 1
        if source not in self._drop_logged and len(self._drop_logged) < _LOGGED_MAX:
            self._drop_logged.add(source)
            log.warning(
                "mDNS on %s: dropping packets from %s (outside %s; counted, logged once)",
                self.host,
                source,
                self.network,
            )
        return False


class _GateListener(AsyncListener):
    """zeroconf's datagram protocol, behind the gate, noting the source of every response."""

    def datagram_received(self, data: bytes, addrs: Any) -> None:
        zc = cast(GatedZeroconf, self.zc)
        source = addrs[0]
        if not zc.admits(source):
            return
        if len(data) > 2 and data[2] & 0x80:  # QR set: a response
            # Noted before zeroconf applies the records: it may call discovery back (a removal)
            # from inside its own processing. One extra parse per response; discovery traffic is
            # a few packets a second.
            msg = DNSIncoming(data, (source, addrs[1]))
            if msg.valid:
                zc.book.note(msg.answers(), source)
        super().datagram_received(data, addrs)


class _GroupListener(_GateListener):
    """Reads the group socket. A socket bound to the group address has no source address of its
    own (the kernel picks one per route, 127.0.0.1 on loopback), so its answers go out of the
    respond socket instead: peers check that what we advertise is where we send from."""

    def handle_query_or_defer(
        self, msg: Any, addr: str, port: int, transport: Any, v6_flow_scope: Any
    ) -> None:
        senders = self.zc.engine.senders
        if senders:
            super().handle_query_or_defer(msg, addr, port, senders[0], v6_flow_scope)


class _GatedEngine(AsyncEngine):
    __slots__ = ()

    async def _async_wrap_socket(self, sock: socket.socket, is_sender: bool) -> _WrappedTransport:
        # zeroconf 0.154's steps with our listener class: the listener must be in place before
        # the transport reads its first datagram, so it cannot be swapped in afterwards.
        assert self.loop is not None
        listener = _GateListener if is_sender else _GroupListener
        # AsyncListener implements the datagram protocol without inheriting from it.
        transport, protocol = await self.loop.create_datagram_endpoint(  # type: ignore[type-var]
            lambda: listener(self.zc), sock=sock
        )
        datagram_transport = cast(asyncio.DatagramTransport, transport)
        reader = make_wrapped_transport(datagram_transport)
        self.protocols.append(cast(AsyncListener, protocol))
        self.readers.append(reader)
        if is_sender:
            self.senders.append(make_wrapped_transport(datagram_transport))
        return reader
