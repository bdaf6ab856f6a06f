"""mDNS discovery with python-zeroconf: announce ourselves, resolve same-cluster peers.

Service ``_handoff._tcp.local.``; TXT carries name, cluster, protocol version and port. zeroconf
only bootstraps: it never notices a crash (a SIGKILLed service stays listed for its TTL), so a
removal is reported as ``PeerGone`` - a hint for SWIM to probe soon, never a death (DESIGN 5).

Network rules (security issue 11): mDNS is bound to exactly one interface, the daemon's own host
address, with no wildcard listener, and zeroconf sees only packets from the daemon's own network
(127.0.0.0/8 for a loopback host, else the host interface's subnet): see mdns_gate. A peer is
reported only when the records it was resolved from were sent from the address they advertise.
Without a cluster key, mDNS runs on loopback only (``mdns_refusal``): on a LAN anyone could
announce a peer, and only a key makes the transport refuse a peer that cannot prove membership.
On one machine each node gets its own 127.0.0.N (sharing 127.0.0.1 makes lookups slow and flaky).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import re
import socket
from typing import Any

from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from handoffd.discovery import OnDiscovery, PeerGone, PeerSeen
from handoffd.discovery.mdns_gate import GatedZeroconf, own_network
from handoffd.protocol.versions import RANGE, compatible, describe

log = logging.getLogger("handoffd.discovery")

SERVICE_TYPE = "_handoff._tcp.local."  # type label "_handoff" is 8 bytes (<= 15)
RESOLVE_TIMEOUT_MS = 3000
_LOGGED_MAX = 256  # distinct peers we warn about; past that, only the counters grow
_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


def instance_name(name: str, cluster: str) -> str:
    """A DNS-safe service label unique per (node, cluster), at most 63 bytes."""
    label = _UNSAFE.sub("-", f"{name}-{cluster}").strip("-") or "node"
    if len(label) > 63:  # keep it unique: a digest of the full identity replaces the tail
        digest = hashlib.sha1(f"{name}\0{cluster}".encode()).hexdigest()[:12]
        label = f"{label[:50]}-{digest}"
    return label


def check_mdns_host(host: str) -> ipaddress.IPv4Address:
    """Refuse to bind mDNS anywhere but a concrete IPv4 address of this host (never 'all')."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"mDNS host {host!r} is not an IP address: pass the daemon's own IPv4 --host "
            "(mDNS is bound to exactly that interface)"
        ) from None
    if ip.version != 4:
        raise ValueError(f"mDNS host {host}: only IPv4 works for mDNS here (IPv6 ::1 does not)")
    if ip.is_unspecified or ip.is_multicast:
        raise ValueError(
            f"mDNS host {host}: refusing a wildcard/multicast bind; mDNS binds only the daemon's "
            "own host address"
        )
    if not ip.is_loopback:
        # Binding (no traffic is sent) only succeeds for an address this host owns.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((host, 0))
            except OSError as exc:
                raise ValueError(
                    f"mDNS host {host} is not an address of this machine ({exc.strerror})"
                ) from None
    return ip


def mdns_refusal(host: str, *, keyed: bool) -> str | None:
    """Why a daemon on ``host`` must not run mDNS (None: it may). Without a cluster key discovery
    stays on loopback: a LAN peer's announcement cannot be checked by anything but its source
    address, and only the key (CURVE) stops the daemon from admitting whoever answers."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        return None  # not an address: check_mdns_host says so precisely
    if keyed or loopback:
        return None
    return (
        f"mDNS off: {host} is not a loopback address and the cluster has no key, and without a key "
        "discovery runs on loopback only (anyone on the network could announce a peer). Join peers "
        "with --seed HOST:PORT, or give every node --key-file KEY to discover them by mDNS."
    )


class MdnsDiscovery:
    """Announce this node and report same-cluster peers as PeerSeen / PeerGone.

    ``keyed``: the cluster has a key (required for a non-loopback host). ``network``: the hosts
    allowed to talk mDNS with us (default ``own_network(host)``; tests narrow it)."""

    def __init__(
        self,
        name: str,
        cluster: str,
        host: str,
        port: int,
        on_event: OnDiscovery,
        *,
        keyed: bool = False,
        network: str | None = None,
    ) -> None:
        check_mdns_host(host)
        refusal = mdns_refusal(host, keyed=keyed)
        if refusal is not None:
            raise ValueError(refusal)
        if not 0 < port < 65536:
            raise ValueError(f"mDNS: port {port} is not a port number")
        self.network = (
            ipaddress.IPv4Network(network, strict=False) if network else own_network(host)
        )
        if ipaddress.IPv4Address(host) not in self.network:
            raise ValueError(f"mDNS: host {host} is not in its own network {self.network}")
        self.name = name
        self.cluster = cluster
        self.host = host
        self.port = port
        self._on_event = on_event
        self._instance = instance_name(name, cluster)
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{self._instance}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(host)],
            port=port,
            properties={
                "name": name,
                "cluster": cluster,
                "version": describe(*RANGE),  # the protocol range, "2" or "2-3"
                "port": str(port),
            },
            server=f"{self._instance}.local.",
        )
        self._zc: AsyncZeroconf | None = None
        self._gate: GatedZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._resolving: set[asyncio.Task[None]] = set()
        # service name -> (peer node name, the address its records came from), for PeerGone
        self._peers: dict[str, tuple[str, str]] = {}
        self._warned_versions: set[str] = set()
        self._warned: set[str] = set()  # peers we warned about (bounded)
        self.ignored_other_cluster = 0
        self.ignored_spoofed = 0  # resolved peers whose records did not come from their address
        self.ignored_goodbyes = 0  # goodbyes not sent from the peer's address

    @property
    def dropped_foreign(self) -> int:
        """Datagrams from outside ``network``, dropped before zeroconf parsed them."""
        return self._gate.dropped if self._gate is not None else 0

    async def start(self) -> None:
        """Register (waiting for the announcements) and start browsing."""
        self._gate = GatedZeroconf(self.host, self.network)  # interfaces: host + group only
        self._zc = AsyncZeroconf(zc=self._gate)  # interfaces: the gate's own sockets
        try:
            announced = await self._zc.async_register_service(
                self._info, cooperating_responders=True
            )
            await announced  # or the registration (and later the goodbye) is cut short
            self._browser = AsyncServiceBrowser(
                self._zc.zeroconf, [SERVICE_TYPE], handlers=[self._on_change]
            )
        except BaseException:
            await self._zc.async_close()
            self._zc = None
            raise
        log.info(
            "mDNS: %s announced on %s as %s (peers from %s only)",
            self.name,
            self.host,
            self._instance,
            self.network,
        )

    async def close(self) -> None:
        """Send the goodbye, then close zeroconf (idempotent)."""
        zc, self._zc = self._zc, None
        if zc is None:
            return
        for task in list(self._resolving):
            task.cancel()
        for task in list(self._resolving):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        try:
            if self._browser is not None:
                await self._browser.async_cancel()
                self._browser = None
            goodbye = await zc.async_unregister_service(self._info)
            await goodbye
        finally:
            await zc.async_close()

    # ---------------------------------------------------------------------------- browsing

    def _on_change(self, **kwargs: Any) -> None:
        service: str = kwargs["name"]
        change: ServiceStateChange = kwargs["state_change"]
        if service == self._info.name:
            return
        if change is ServiceStateChange.Removed:
            known = self._peers.pop(service, None)
            if known is not None:
                peer, address = known
                # A goodbye counts only from the peer itself; no goodbye noted means the record
                # expired (the peer stopped refreshing it), a hint worth passing on too.
                book = self._gate.book if self._gate is not None else None
                sender = book.take("bye", kwargs["service_type"], service) if book else None
                if sender is None or sender == address:
                    self._emit(PeerGone(peer))
                else:
                    self.ignored_goodbyes += 1
                    self._warn_once(
                        f"goodbye:{peer}",
                        "mDNS: ignoring a goodbye for peer %s at %s sent from %s (counted, logged "
                        "once per peer)",
                        peer,
                        address,
                        sender,
                    )
            return
        task = asyncio.get_running_loop().create_task(
            self._resolve(kwargs["service_type"], service)
        )
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)

    def _source(self, *key: str) -> str | None:
        return self._gate.book.source(*key) if self._gate is not None else None

    async def _resolve(self, service_type: str, service: str) -> None:
        zc = self._zc
        if zc is None:
            return
        info = AsyncServiceInfo(service_type, service)
        if not await info.async_request(zc.zeroconf, RESOLVE_TIMEOUT_MS):
            log.debug("mDNS: %s did not resolve", service)
            return
        txt = {k.decode(): (v or b"").decode(errors="replace") for k, v in info.properties.items()}
        if txt.get("cluster") != self.cluster:
            self.ignored_other_cluster += 1
            return
        peer = txt.get("name")
        if not peer or peer == self.name:
            return
        version = txt.get("version", "")
        if not _compatible_text(version):
            if version not in self._warned_versions:
                self._warned_versions.add(version)
                log.warning(
                    "mDNS: ignoring %s: it speaks protocol %s, this node %s (upgrade handoffd "
                    "on the older one)",
                    peer,
                    version,
                    describe(*RANGE),
                )
            return
        addresses = info.parsed_addresses(IPVersion.V4Only)
        if not addresses or not info.port:
            return
        sender = self._sent_by_advertised(service, info.server, addresses)
        if sender is None:
            self._ignore_spoofed(peer, service, info.server, addresses)
            return
        address = f"{sender}:{info.port}"
        if self._peers.get(service) != (peer, sender):
            log.info("mDNS: found peer %s at %s", peer, address)
        self._peers[service] = (peer, sender)
        self._emit(PeerSeen(peer, address))

    def _sent_by_advertised(
        self, service: str, server: str | None, addresses: list[str]
    ) -> str | None:
        """The address the service's SRV, TXT and A records all came from, if it is one of the
        addresses it advertises; else None (someone announced a peer at another address)."""
        sender = self._source("srv", service)
        if sender is None or sender not in addresses or server is None:
            return None
        if self._source("txt", service) != sender or self._source("a", server, sender) != sender:
            return None
        return sender

    def _ignore_spoofed(
        self, peer: str, service: str, server: str | None, addresses: list[str]
    ) -> None:
        self.ignored_spoofed += 1
        a_from = sorted({self._source("a", server or "", a) or "?" for a in addresses})
        self._warn_once(
            peer,
            "mDNS: ignoring peer %s: it advertises %s but its records came from srv=%s txt=%s "
            "a=%s; a peer must announce itself from the address it advertises (counted, logged "
            "once per peer)",
            peer,
            ",".join(addresses),
            self._source("srv", service),
            self._source("txt", service),
            ",".join(a_from),
        )

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key in self._warned or len(self._warned) >= _LOGGED_MAX:
            return
        self._warned.add(key)
        log.warning(message, *args)

    def _emit(self, event: PeerSeen | PeerGone) -> None:
        try:
            self._on_event(event)
        except Exception:  # noqa: BLE001 - a callback bug must not kill zeroconf's handler
            log.exception("mDNS discovery callback failed on %s", event)


def _compatible_text(version: str) -> bool:
    """Whether a TXT ``version`` ("2", or a range "2-3") overlaps our protocol range."""
    lo, _, hi = version.partition("-")
    try:
        return compatible(int(lo), int(hi or lo))
    except ValueError:
        return False
